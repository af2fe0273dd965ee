"""Two sites that grow at known different rates, and one of many blocks.

Every tick (20 ms) grow_fast() keeps a new 32 KiB bytes object, grow_slow()
a new 8 KiB one (a quarter of the rate), and many_small() 20 small tuples
(more blocks than both, few bytes).  Every 0.5 s it prints
'ticks N T' (ticks so far, its monotonic clock), so that a test knows the
real rates whatever the machine's load.  Prints READY first.
"""
import sys
import time

FAST = 32 * 1024
SLOW = 8 * 1024
KEEP = []


def grow_fast():
    KEEP.append(bytes(FAST))  # MARK: fast


def grow_slow():
    KEEP.append(bytes(SLOW))  # MARK: slow


def many_small(i):
    KEEP.extend([(i, k) for k in range(20)])  # MARK: small


def main():
    print("READY", flush=True)
    i = 0
    last = 0.0
    while True:
        grow_fast()
        grow_slow()
        many_small(i)
        i += 1
        now = time.monotonic()
        if now - last >= 0.5:
            print("ticks", i, now, flush=True)
            last = now
        time.sleep(0.02)


if __name__ == "__main__":
    sys.exit(main())
