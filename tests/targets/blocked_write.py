"""Target for memattach on a thread asleep in a write (hazard 11).

The main thread writes 1 MiB at once into a pipe nobody reads yet: the
kernel takes 64 KiB and the write sleeps.  Stopped there, the write would
return those 64 KiB (a short write the program never sees untracked).  A
second thread waits for a line on stdin, then reads the pipe to its end.
Prints 'READY <main tid>' just before the write, then 'WROTE <n> READ <m>':
what os.write returned and what the reader got.  main() holds a 3 MiB
bytearray in its local 'hold' meanwhile.

With the argument 'alone', the process has one thread: it writes the 1 MiB
to its stderr, which the test reads when it wants the write to go on,
then prints 'WROTE <n>' and ends at a line on stdin.
"""
import os
import sys
import threading

SIZE = 1 << 20
r, w = os.pipe()
got = []


def drain():
    sys.stdin.buffer.readline()
    n = 0
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        n += len(b)
    got.append(n)


def write_all():
    return os.write(w, b"x" * SIZE)  # MARK: write


def alone():
    print("READY", threading.get_native_id(), flush=True)
    n = os.write(2, b"x" * SIZE)  # MARK: write_alone
    print("WROTE", n, flush=True)
    sys.stdin.readline()
    return 0


def main():
    if sys.argv[1:] == ["alone"]:
        return alone()
    # the largest object, a local of the writing thread's frame: the heap
    # census names its thread (test_heap)
    hold = bytearray(3 << 20)
    t = threading.Thread(target=drain, name="drainer")
    t.start()
    print("READY", threading.get_native_id(), flush=True)
    n = write_all()  # MARK: main_calls_write
    os.close(w)
    t.join()
    print("WROTE", n, "READ", got[0], flush=True)
    del hold
    return 0


if __name__ == "__main__":
    sys.exit(main())  # MARK: module_calls_main
