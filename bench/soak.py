#!/usr/bin/env python3
"""A long tracking session on one workload of bench/workload.py (issue 12's
soak): what it costs in memory and capture as time goes by.

  bench/soak.py [--build build] [--python /usr/bin/python3]
      [--workload spread] [--threads 1] [--minutes 30] [--extra OPTS]

Starts the workload, lets it reach its steady state, notes the target's RSS
untracked, attaches for --minutes, and every 30 s prints the target's RSS
(and what tracking added to it), memattach's RSS and CPU so far, and the
capture's size; at the end the capture's totals: allocations, records
lost, blocks not tracked.  Run by hand; figures go to docs/performance.md.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)


def status(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--workload", default="spread")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--extra", default="", help="extra attach options")
    a = ap.parse_args()
    memattach = os.path.join(a.build, "memattach")
    cap = os.path.join(tempfile.mkdtemp(prefix="memattach-soak-"), "s.cap")
    p = subprocess.Popen([a.python, os.path.join(HERE, "workload.py"),
                          a.workload, str(a.threads)],
                         stdout=subprocess.DEVNULL)
    try:
        time.sleep(3 + 2 * a.threads)
        base = status(p.pid, "VmRSS")
        secs = a.minutes * 60
        m = subprocess.Popen([memattach, "attach", "--quiet", "-o", cap,
                              "-d", str(secs)] + a.extra.split() +
                             [str(p.pid)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        print("%s %s, %d thread(s), %s, target RSS untracked %.1f MiB" %
              (a.python, a.workload, a.threads, a.extra or "default",
               base / 2**20), flush=True)
        print("%7s %12s %12s %12s %10s %12s" %
              ("t", "target RSS", "added", "memattach", "CPU", "capture"))
        while m.poll() is None:
            time.sleep(30)
            if m.poll() is not None:
                break
            t = time.monotonic() - t0
            rss = status(p.pid, "VmRSS")
            size = os.path.getsize(cap) if os.path.exists(cap) else 0
            print("%6.0fs %10.1f M %10.1f M %10.1f M %9.1f%% %10.2f M" %
                  (t, rss / 2**20, (rss - base) / 2**20,
                   status(m.pid, "VmRSS") / 2**20,
                   100 * cpu_seconds(m.pid) / t, size / 2**20),
                  flush=True)
        err = m.stderr.read()
        if m.returncode != 0:
            sys.exit("attach failed: %s" % err)
        rep = subprocess.run([memattach, "report", "-f", "json", "--view",
                              "total", cap], capture_output=True, text=True)
        doc = json.loads(rep.stdout)
        tot = doc["totals"]
        size = os.path.getsize(cap)
        print("capture %.2f MiB (%.1f MiB per hour), %d allocations, "
              "lost records %d, blocks not tracked %d, complete %s" %
              (size / 2**20, size / 2**20 * 3600 / secs, tot["allocations"],
               tot["lost_records"], tot.get("untracked_blocks", 0),
               doc["complete"]))
    finally:
        p.kill()
        p.wait()


if __name__ == "__main__":
    main()
