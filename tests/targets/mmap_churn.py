"""Maps and unmaps memory directly, at a steady rate: each 64 KiB anonymous
mmap goes past pymalloc and malloc, so that a tracking session sends an
mmap and a munmap record through its ring for each (aggregated tracking's
main traffic).  Prints READY; each "go SECONDS" on stdin runs the churn
(RATE mappings a second) for that long and prints DONE; "quit" ends it.
"""
import mmap
import sys
import time

RATE = 5000


def churn(seconds):
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for _ in range(RATE // 100):
            m = mmap.mmap(-1, 65536)  # MARK: map
            m[0] = 1
            m.close()
        time.sleep(0.01)


def main():
    print("READY", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        churn(float(words[1]))
        print("DONE", flush=True)


if __name__ == "__main__":
    main()
