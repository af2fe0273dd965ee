"""The benchmark's target programs (issue 12: a benchmark that one object
lifetime cannot game).  Run by bench/workload_bench.py, or by hand:

  python3 bench/workload.py WORKLOAD [THREADS]

WORKLOAD is one of
  churn   tests/targets/churn.py's loop: small dicts, lists, tuples and
          strings that die within a few allocations;
  spread  every iteration makes one small object (a dict holding a string
          and a list: 3-4 allocator calls) and keeps it for L iterations,
          L log-uniform over 1 .. 10**6, so lifetimes measured in
          allocations spread over six decades (about 72,000 objects live
          per thread once the first 10**6 iterations have passed);
  large   buffers of 128 KiB .. 1 MiB (malloc's mmap path when started
          with glibc.malloc.mmap_threshold=131072, as the bench does: else
          glibc raises its threshold after the first free), each kept for
          1 .. 64 iterations (log-uniform), plus a few small objects;
  growth  the churn loop, and 1 MiB per second of 4 KiB bytes objects kept
          for ever (a leak at a known rate);
  cache   a large live set that turns over: an in-memory cache of
          MA_BENCH_CACHE_MIB MiB (default 1024) of small records (a dict
          with a string and a list, as spread's), built before READY, then
          every iteration replaces one record chosen at random, so that
          lifetimes are exponential with a mean of the cache's size in
          records (millions of allocations) and, tracked, the blocks
          allocated since the attach become most of the heap: the largest
          live tables (aggregated) and the fullest free filter (sampled).
Every thread counts iterations; the main thread prints "it N" (the sum over
threads) every 100 ms, and READY first: bench/attach_bench.py's reader.
The random choices come from a seeded generator per thread, so two runs do
the same work.  Not a test.
"""
import math
import os
import random
import sys
import threading
import time

COUNTS = []
LEAK = []


def churn(slot):
    n = 0
    while True:
        d = {"a": [n, n + 1], "b": str(n)}
        t = (d, [d] * 3)
        n += 1
        if n % 1000 == 0:
            COUNTS[slot] = n
        del d, t


def spread(slot):
    """A timing wheel of 2**20 buckets: bucket (n + L) % 2**20 holds what
    dies at iteration n + L; each iteration drops its bucket.  Lifetimes
    are drawn in advance (a table of 4096 values, walked with a stride)
    so that drawing costs no more than a list index."""
    rnd = random.Random(1000 + slot)
    lmax = math.log(10**6)
    lives = [int(math.exp(rnd.random() * lmax)) for _ in range(4096)]
    mask = (1 << 20) - 1
    wheel = [None] * (1 << 20)
    n = 0
    while True:
        obj = {"id": n, "name": "u%d" % n, "tags": [n]}
        due = (n + lives[n & 4095]) & mask
        b = wheel[due]
        if b is None:
            wheel[due] = [obj]
        else:
            b.append(obj)
        wheel[n & mask] = None
        n += 1
        if n % 1000 == 0:
            COUNTS[slot] = n


def large(slot):
    rnd = random.Random(2000 + slot)
    sizes = [rnd.randrange(128 << 10, 1 << 20) for _ in range(256)]
    lives = [int(math.exp(rnd.random() * math.log(64))) for _ in range(256)]
    wheel = [None] * 128
    n = 0
    while True:
        buf = bytearray(sizes[n & 255])
        due = (n + lives[(n * 7) & 255]) & 127
        b = wheel[due]
        if b is None:
            wheel[due] = [buf, str(n)]
        else:
            b.append(buf)
        wheel[n & 127] = None
        n += 1
        if n % 10 == 0:
            COUNTS[slot] = n


def growth(slot):
    """churn, plus 1 MiB/s kept: checked every 1000 iterations"""
    t0 = time.monotonic()
    leaked = 0
    n = 0
    while True:
        d = {"a": [n, n + 1], "b": str(n)}
        t = (d, [d] * 3)
        n += 1
        if n % 1000 == 0:
            COUNTS[slot] = n
            owed = int((time.monotonic() - t0) * (1 << 20)) - leaked
            while owed >= 4096:
                LEAK.append(b"%d" % n + bytes(4090))
                leaked += 4096
                owed -= 4096
        del d, t


def cache_build():
    """The cache, once for all threads (each replaces records in it):
    about 330 bytes of heap per record (dict 184 B with its keys shared,
    str 56, list 64 and its item array)"""
    n = int(os.environ.get("MA_BENCH_CACHE_MIB", "1024")) * (1 << 20) // 330
    CACHE.extend({"id": i, "name": "u%d" % i, "tags": [i]} for i in range(n))


def cache(slot):
    rnd = random.Random(3000 + slot)
    size = len(CACHE)
    picks = [rnd.randrange(size) for _ in range(1 << 16)]
    n = 0
    while True:
        CACHE[(picks[n & 0xffff] + (n >> 16)) % size] = {
            "id": n, "name": "u%d" % n, "tags": [n]}
        n += 1
        if n % 1000 == 0:
            COUNTS[slot] = n


CACHE = []
WORKLOADS = {"churn": churn, "spread": spread, "large": large,
             "growth": growth, "cache": cache}


def main():
    work = WORKLOADS[sys.argv[1]]
    nthreads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    if work is cache:
        cache_build()
    for i in range(nthreads):
        COUNTS.append(0)
        threading.Thread(target=work, args=(i,), daemon=True).start()
    print("READY", flush=True)
    while True:
        time.sleep(0.1)
        print("it", sum(COUNTS), flush=True)


if __name__ == "__main__":
    sys.exit(main())
