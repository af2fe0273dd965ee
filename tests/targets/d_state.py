"""A Python process with a thread in uninterruptible sleep (state D) for
argv[1] seconds (tests/targets/d_state.c, MA_TEST_LIBDIR): prints
'READY tid' once that thread is in D, then runs its main loop, which
prints 'ALIVE n' on each line read from stdin.
"""
import ctypes
import os
import sys
import time

lib = ctypes.CDLL(os.path.join(os.environ["MA_TEST_LIBDIR"],
                               "libma_d_state.so"))
lib.ma_d_state_start.argtypes = [ctypes.c_double]


def main():
    tid = lib.ma_d_state_start(float(sys.argv[1]))
    path = "/proc/%d/task/%d/stat" % (os.getpid(), tid)
    while open(path).read().rsplit(")", 1)[1].split()[0] != "D":
        time.sleep(0.01)
    print("READY %d" % tid, flush=True)
    n = 0
    for _ in sys.stdin:  # MARK: main_loop
        n += 1
        print("ALIVE %d" % n, flush=True)


if __name__ == "__main__":
    main()
