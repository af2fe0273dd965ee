"""Two sites that grow at known different rates, and one of many blocks.

Every tick (20 ms) grow_fast() keeps a new 32 KiB bytes object and
many_small() 20 small tuples (more blocks than both, few bytes), in the
main thread; a second thread's grow_slow() keeps a new 8 KiB one at the
same pace (a quarter of the rate).  Every 0.5 s the main thread prints
'ticks N T' (ticks so far, its monotonic clock), so that a test knows the
real rates whatever the machine's load.  Prints 'READY slow_tid=TID' first
(the second thread's kernel thread ID).
"""
import sys
import threading
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


def slow_loop():
    while True:
        grow_slow()
        time.sleep(0.02)


def main():
    slow = threading.Thread(target=slow_loop, name="slow", daemon=True)
    slow.start()
    while not slow.native_id:
        time.sleep(0.001)
    print("READY slow_tid=%d" % slow.native_id, flush=True)
    i = 0
    last = 0.0
    while True:
        grow_fast()
        many_small(i)
        i += 1
        now = time.monotonic()
        if now - last >= 0.5:
            print("ticks", i, now, flush=True)
            last = now
        time.sleep(0.02)


if __name__ == "__main__":
    sys.exit(main())
