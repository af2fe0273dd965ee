"""A process whose heap grows on demand (tests/e2e/test_heap_snap.py): each
'GROW' line on stdin appends 20 000 fresh strings of 1 000 characters to the
module global `leak` and answers 'GREW <sys.getsizeof of one>'."""
import sys

leak = []
print("READY", flush=True)
for line in sys.stdin:
    if line.strip() == "GROW":
        n = len(leak)
        leak.extend(("%d-" % (n + i)).ljust(1000, "x") for i in range(20000))
        print("GREW", sys.getsizeof(leak[-1]), flush=True)
