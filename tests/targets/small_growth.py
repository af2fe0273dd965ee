"""A worker whose heap grows in small objects, on demand: after a 'go'
line on stdin it appends N floats (a pymalloc block each) every 50 ms,
STEPS times, printing 'grown K' after each step and 'DONE' at the end,
then holds them.  Each float a tracked block: a tracking session's live
tables grow with them.
Arguments: N STEPS"""
import sys
import time

N, STEPS = (int(a) for a in sys.argv[1:3])
held = []
print("READY", flush=True)
sys.stdin.readline()
for k in range(STEPS):
    held.extend(float(i) for i in range(N))
    print("grown %d" % (k + 1), flush=True)
    time.sleep(0.05)
print("DONE", flush=True)
time.sleep(3600)
