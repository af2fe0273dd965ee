"""Target of bench/heap_bench.py: a large heap, and optionally threads that
keep allocating while the census runs.

Builds about OBJECTS objects (dicts of three entries, each with a fresh str
and float, in one list), adds 1 MiB bytes buffers until the RSS reaches
RSS_MIB, prints 'READY', then, with THREADS > 0, runs threads that build and
drop small dicts and reports 'it N' (iterations of all of them so far) every
0.1 s.  Arguments: OBJECTS RSS_MIB THREADS.
"""
import gc
import sys
import threading
import time

gc.disable()
objects, rss_mib, threads = (int(a) for a in sys.argv[1:4])


def rss_mib_now():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


rows = [{"id": i, "name": "row-%d" % i, "v": i * 1.5}
        for i in range(objects // 4)]
blobs = []
while rss_mib_now() < rss_mib:
    blobs.append(bytearray(b"x" * (1 << 20)))
count = [0]


def churn():
    while True:
        for _ in range(20):
            [{"a": j, "b": str(j)} for j in range(50)]
        count[0] += 1


print("READY", flush=True)
for _ in range(threads):
    threading.Thread(target=churn, daemon=True).start()
while True:
    time.sleep(0.1)
    if threads:
        print("it", count[0], flush=True)
