#!/usr/bin/env python3
"""Attach/detach cycles on one busy target, many more than the suite runs:
a process must take any number of sessions over its life (the payload
reuses finished session structs; before, the 257th attach failed).  Each
cycle is `memattach attach -d 0.05` to its end; the target must still make
progress at the end.  Prints the cycles done,
how many exited 0 (the others are listed), the wall time per cycle (median, 90th percentile, slowest) and the
target's RSS before and after (a leak per session would show there).
Run by hand; figures go to docs/performance.md.  Not a test.

  bench/cycles_bench.py [--cycles 1000] [--python /usr/bin/python3]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "e2e"))
from ma_test import Attach, Target  # noqa: E402


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--threads", type=int, default=4)
    a = ap.parse_args()
    out = os.path.join(tempfile.mkdtemp(prefix="memattach-cycles-"), "c.cap")
    times, fails = [], []
    with Target(a.python, "churn.py", a.threads) as t:
        it0 = int(t.readline().split()[1])
        rss0 = rss_kb(t.pid)
        for i in range(a.cycles):
            t0 = time.monotonic()
            att = Attach(t.pid, "--duration", 0.05, output=out)
            rc = att.wait(timeout=60)
            times.append(time.monotonic() - t0)
            if rc != 0:
                # counted, and the cycles go on: a refusal or an
                # unconfirmed stop under load is a figure too
                fails.append((i, rc))
                print("cycle %d: exit %d\n%s" % (i, rc, att.stderr),
                      flush=True)
            t.drain()
        rss1 = rss_kb(t.pid)
        t.drain()
        it1 = int(t.readline().split()[1])
        time.sleep(0.3)
        t.drain()
        it2 = int(t.readline().split()[1])
    times.sort()
    print("%s: %d cycles, %d exit 0; per cycle: median %.0f ms, p90 %.0f "
          "ms, slowest %.0f ms; total %.0f s" %
          (a.python, len(times), len(times) - len(fails), statistics.median(times) * 1e3,
           times[int(len(times) * 0.9)] * 1e3, times[-1] * 1e3, sum(times)))
    print("target RSS %d KiB before, %d KiB after; still counting: %s" %
          (rss0, rss1, it2 > it1 > it0))
    if fails:
        print("failed cycles (index, exit code): %s" % fails)
    return 0 if it2 > it1 > it0 and not fails else 1


if __name__ == "__main__":
    sys.exit(main())
