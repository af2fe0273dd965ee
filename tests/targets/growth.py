"""Growth workload: a cache that is never evicted, plus short-lived garbage.

Every 2 ms fill_cache() stores a new 64 KiB bytes object (the leak) and
make_garbage() builds and drops a 256 KiB bytearray and a list of small
strings.  Every line it prints 'cache N' with the entries stored so far,
so that the test knows exactly how much the leaking line allocated during
any window.  Prints READY first.
"""
import sys
import threading
import time

ENTRY = 64 * 1024
CACHE = {}


def fill_cache(i):
    CACHE[i] = bytes(ENTRY)  # MARK: cache_fill


def make_garbage(i):
    tmp = bytearray(256 * 1024)  # MARK: garbage
    words = [str(i + k) for k in range(100)]
    return len(tmp) + len(words)


def main():
    print("READY", flush=True)
    i = 0
    last = 0.0
    while True:
        fill_cache(i)
        make_garbage(i)
        i += 1
        now = time.monotonic()
        if now - last > 0.05:
            print("cache", len(CACHE), flush=True)
            last = now
        time.sleep(0.002)


if __name__ == "__main__":
    sys.exit(main())
