#!/usr/bin/env python3
"""Benchmark of `memattach heap` (issue: heap census).  Run by hand; the
figures go to docs/performance.md.  Not a test.

One target (bench/heap_target.py) per configuration: --objects objects,
--rss MiB of RSS.  Reports, from `memattach -v heap`: the time the target
was stopped, the walk, the analysis, the total; memattach's own peak RSS
(getrusage of the child), the copy's RSS at the end of the walk.  With
--threads N, N threads allocate during the census, and their throughput
while it runs is given as a ratio to the same window length before it.
"""
import argparse
import os
import re
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)


def rate(proc, seconds):
    """Iterations per second from the target's 'it N' lines"""
    first = last = None
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        line = proc.stdout.readline()
        m = re.match(r"it (\d+)$", line.strip())
        if not m:
            continue
        now, n = time.monotonic(), int(m.group(1))
        if first is None:
            first = (now, n)
        last = (now, n)
    return (last[1] - first[1]) / max(1e-9, last[0] - first[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--memattach", default=os.path.join(SRC, "build",
                                                       "memattach"))
    ap.add_argument("--objects", type=int, default=10_000_000)
    ap.add_argument("--rss", type=int, default=2048, help="MiB")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--runs", type=int, default=1)
    a = ap.parse_args()
    t0 = time.monotonic()
    p = subprocess.Popen([a.python, os.path.join(HERE, "heap_target.py"),
                          str(a.objects), str(a.rss), str(a.threads)],
                         stdout=subprocess.PIPE, text=True)
    try:
        while p.stdout.readline().strip() != "READY":
            if p.poll() is not None:
                sys.exit("the target exited")
        print("target ready in %.1f s" % (time.monotonic() - t0))
        with open("/proc/%d/status" % p.pid) as f:
            rss = [l for l in f if l.startswith("VmRSS")][0].split()[1]
        print("target RSS %d MiB" % (int(rss) // 1024))
        for run in range(a.runs):
            before = rate(p, 3.0) if a.threads else None
            t1 = time.monotonic()
            q = subprocess.Popen([a.memattach, "-v", "heap", "-q", "-n", "10",
                                  str(p.pid)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            during = None
            if a.threads:
                # the target's rate while memattach runs
                first = None
                while q.poll() is None:
                    line = p.stdout.readline()
                    m = re.match(r"it (\d+)$", line.strip())
                    if m:
                        now = time.monotonic()
                        first = first or (now, int(m.group(1)))
                        last = (now, int(m.group(1)))
                if first and last[0] > first[0]:
                    during = (last[1] - first[1]) / (last[0] - first[0])
            out, err = q.communicate()
            wall = time.monotonic() - t1
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            census = re.search(r"Census of (\d+) objects \(([^)]*)\)", out)
            print("run %d: exit %d, %.2f s wall, census: %s" % (
                run, q.returncode, wall,
                census.group(0) if census else out[:200]))
            print("  " + err.strip().splitlines()[-1] if err.strip() else "")
            print("  memattach peak RSS %d MiB (the largest of the runs "
                  "so far)" % (ru1.ru_maxrss // 1024))
            if census:
                n = int(census.group(1))
                print("  memattach peak per object: %.1f bytes" % (
                    ru1.ru_maxrss * 1024 / n))
            if a.threads and before and during:
                print("  %d threads: %.0f it/s before, %.0f during: %.2f" % (
                    a.threads, before, during, during / before))
    finally:
        p.kill()
        p.wait()


if __name__ == "__main__":
    main()
