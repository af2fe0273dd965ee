#!/usr/bin/env python3
"""The freeze at attach on a process shaped like issue 12's notebook kernel:
pandas loaded (Debian's python3-pandas: `apt install python3-pandas`; not
a dependency of the project, the bench says so and stops when it is
missing), a DataFrame of a million rows held, 15 threads (13 waiting on an
event, one churning small objects, the main one), as a Jupyter kernel has
them.  For --processes fresh targets it attaches twice (`memattach -v
attach -d 0.2`: first attach, then the payload reused) and prints what
memattach measured: the target stopped, ma_start, the GOT slots the
watchdog patched after the thaw; then the median and range per attach.

  bench/pandas_kernel.py [--build build] [--python /usr/bin/python3]
      [--processes 5]

Run by hand; figures go to docs/performance.md.  Not a test.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading

TARGET = r'''
import sys, threading, time
import numpy, pandas
df = pandas.DataFrame({"a": numpy.arange(1000000),
                       "b": numpy.random.default_rng(1).random(1000000)})
df["c"] = df["a"].astype(str)
stop = threading.Event()
for i in range(13):
    threading.Thread(target=stop.wait, name="wait-%d" % i, daemon=True).start()
def churn():
    n = 0
    while True:
        d = {"a": [n], "b": str(n)}
        n += 1
        del d
threading.Thread(target=churn, name="churn", daemon=True).start()
libs = set()
for line in open("/proc/self/maps"):
    p = line.split()
    if len(p) >= 6 and ".so" in p[5]:
        libs.add(p[5])
print("READY", len(libs), threading.active_count(), flush=True)
sys.stdin.readline()
'''


def attach(memattach, pid, cap):
    r = subprocess.run([memattach, "-v", "attach", "--quiet", "-d", "0.2",
                        "-o", cap, str(pid)], capture_output=True, text=True,
                       timeout=120)
    def num(pat):
        m = re.search(pat, r.stderr)
        return float(m.group(1)) if m else None
    return (r.returncode, num(r"target stopped ([\d.]+) ms"),
            num(r"ma_start[^\d]*([\d.]+) ms"),
            num(r"GOT hooks after the thaw: (\d+) slots"), r.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build"))
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--processes", type=int, default=5)
    a = ap.parse_args()
    if subprocess.run([a.python, "-c", "import pandas"],
                      capture_output=True).returncode != 0:
        sys.exit("pandas_kernel: %s cannot import pandas "
                 "(apt install python3-pandas)" % a.python)
    memattach = os.path.join(a.build, "memattach")
    cap = os.path.join(tempfile.mkdtemp(prefix="memattach-pandas-"), "p.cap")
    rows = {1: [], 2: []}
    for i in range(a.processes):
        p = subprocess.Popen([a.python, "-c", TARGET], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        ready = p.stdout.readline().split()
        if not ready or ready[0] != "READY":
            sys.exit("pandas_kernel: the target did not start")
        print("process %d: %s shared objects, %s threads" %
              (i + 1, ready[1], ready[2]), flush=True)
        timer = threading.Timer(0.5, lambda: None)
        timer.start()
        timer.join()
        for n in (1, 2):
            rc, stopped, start, slots, err = attach(memattach, p.pid, cap)
            if rc != 0:
                print("  attach %d failed (exit %d): %s" % (n, rc, err.strip()))
                continue
            print("  attach %d: target stopped %s ms, ma_start %s ms, "
                  "%s GOT slots patched after the thaw" %
                  (n, stopped, start, slots), flush=True)
            if stopped is not None:
                rows[n].append(stopped)
        p.stdin.write("\n")
        p.stdin.flush()
        p.wait(timeout=30)
    for n, what in ((1, "first attach"), (2, "payload reused")):
        v = rows[n]
        if v:
            print("%s: target stopped median %.1f ms (%.1f-%.1f), %d runs" %
                  (what, statistics.median(v), min(v), max(v), len(v)))


if __name__ == "__main__":
    main()
