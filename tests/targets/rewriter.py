"""A worker that keeps rewriting its memory: N small dicts (objects for a
census to walk), and a buffer of MIB MiB whose pages a thread writes one
byte each, RATE MiB a second, round and round: every page written while a
census's copy lives is copied (docs/heap.md), charged to the process's
memory cgroup.  Prints READY once all is in place, then 'pass K' after each
round of the buffer.
Arguments: N MIB RATE"""
import sys
import threading
import time

N, MIB, RATE = (int(a) for a in sys.argv[1:4])
dicts = [{"k": i, "v": str(i)} for i in range(N)]
buf = bytearray(MIB << 20)


def rewrite():
    k = 0
    while True:
        for mib in range(MIB):
            base = mib << 20
            for off in range(base, base + (1 << 20), 4096):
                buf[off] = (buf[off] + 1) & 0xff
            time.sleep(1.0 / RATE)
        k += 1
        print("pass %d" % k, flush=True)


threading.Thread(target=rewrite, daemon=True).start()
print("READY", flush=True)
time.sleep(3600)
