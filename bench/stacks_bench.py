#!/usr/bin/env python3
"""Benchmark of `memattach stacks` (issue: foundation).

Starts a target with 10 Python threads (4 spinning in Python, 6 sleeping in
nested functions) under /usr/bin/python3 (or --python), then runs
`memattach stacks --json PID` N times and reports:
  - wall time of the whole command (fork/exec to exit), as the user sees it;
  - the freeze: time from the first PTRACE_INTERRUPT to the last detach,
    measured inside memattach (frozen_ns in the JSON output);
  - the same with --native.
Run by hand; results go to docs/performance.md.  Not a test: no assertion.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)

TARGET = r'''
import sys, threading, time
def spin(n):
    x = 0
    while True:
        x += n
def nest(d, n):
    if d == 0:
        while True:
            time.sleep(1)
    return nest(d - 1, n)
ts = [threading.Thread(target=spin, args=(i,), daemon=True) for i in range(4)]
ts += [threading.Thread(target=nest, args=(10 + i, i), daemon=True)
       for i in range(5)]
for t in ts:
    t.start()
print("READY", flush=True)
nest(12, 0)
'''


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def measure(memattach, pid, extra, n):
    wall, frozen = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        p = subprocess.run([memattach, "stacks", "--json"] + extra + [str(pid)],
                           capture_output=True, text=True)
        wall.append((time.perf_counter() - t0) * 1e3)
        if p.returncode != 0:
            sys.exit("memattach failed: %s" % p.stderr)
        doc = json.loads(p.stdout)
        frozen.append(doc["frozen_ns"] / 1e6)
        nthreads = len(doc["threads"])
    return wall, frozen, nthreads, doc["offsets"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--memattach", default=os.path.join(SRC, "build",
                                                        "memattach"))
    ap.add_argument("-n", type=int, default=50)
    a = ap.parse_args()
    p = subprocess.Popen([a.python, "-c", TARGET], stdout=subprocess.PIPE)
    try:
        p.stdout.readline()
        time.sleep(0.5)
        print("python: %s, memattach: %s, %d runs each" %
              (a.python, a.memattach, a.n))
        for label, extra in (("stacks", []), ("stacks --native", ["--native"])):
            wall, frozen, nth, src = measure(a.memattach, p.pid, extra, a.n)
            print("%-16s threads=%d offsets=%s" % (label, nth, src))
            print("  wall   ms: median %.2f  p95 %.2f  max %.2f" %
                  (statistics.median(wall), pct(wall, 95), max(wall)))
            print("  frozen ms: median %.3f  p95 %.3f  max %.3f" %
                  (statistics.median(frozen), pct(frozen, 95), max(frozen)))
    finally:
        p.kill()
        p.wait()


if __name__ == "__main__":
    main()
