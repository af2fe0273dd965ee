#!/usr/bin/env python3
"""Benchmark of `memattach attach` (issue: tracking).

One run, one target process (tests/targets/churn.py: threads building and
dropping small dicts, lists, tuples and strings as fast as they can):
  1. baseline: iterations/s untracked, over --window seconds;
  2. attach: latency and target freeze as memattach reports them;
  3. tracked: iterations/s while every allocation is recorded;
  4. after detach: iterations/s again (the payload stays loaded, dormant);
  5. capture bytes per allocation.
Run by hand; results go to docs/performance.md.  Not a test.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)


def rate(proc, seconds):
    """Iterations per second from the target's 'it N' lines."""
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    try:
        while os.read(fd, 65536):
            pass
    except BlockingIOError:
        pass
    os.set_blocking(fd, True)
    first = None
    t_end = time.monotonic() + seconds
    while True:
        line = proc.stdout.readline()
        if not line:
            sys.exit("the target exited")
        m = re.match(r"it (\d+)$", line.strip())
        if not m:
            continue  # the rest of a line cut by the drain above
        n = int(m.group(1))
        now = time.monotonic()
        if first is None:
            first = (now, n)
        elif now >= t_end:
            return (n - first[1]) / (now - first[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--memattach", default=os.path.join(SRC, "build",
                                                        "memattach"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--window", type=float, default=5.0)
    ap.add_argument("--extra", default="", help="extra attach options")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="memattach-bench-")
    cap = os.path.join(tmp, "bench.cap")
    p = subprocess.Popen([a.python, os.path.join(SRC, "tests", "targets",
                                                 "churn.py"),
                          str(a.threads)], stdout=subprocess.PIPE, text=True)
    try:
        p.stdout.readline()
        time.sleep(1)
        base = rate(p, a.window)
        m = subprocess.Popen([a.memattach, "attach", "--quiet", "-o", cap,
                              "--duration", str(a.window + 1.5)] +
                             a.extra.split() + [str(p.pid)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        time.sleep(1.0)
        tracked = rate(p, a.window)
        out, err = m.communicate()
        if m.returncode != 0:
            sys.exit("memattach attach failed: %s" % err)
        time.sleep(0.5)
        after = rate(p, a.window)
        att = re.search(r"in ([\d.]+) ms, target stopped ([\d.]+) ms", err)
        rep = subprocess.run([a.memattach, "report", "--format", "json",
                              "--view", "total", cap], capture_output=True,
                             text=True)
        doc = json.loads(rep.stdout)
        allocs = doc["totals"]["allocations"]
        size = os.path.getsize(cap)
        print("python %s, %d churn thread(s), windows of %.1f s" %
              (a.python, a.threads, a.window))
        print("  baseline      %12.0f it/s" % base)
        print("  tracked       %12.0f it/s   ratio %.3f" %
              (tracked, tracked / base))
        print("  after detach  %12.0f it/s   ratio %.3f" %
              (after, after / base))
        if att:
            print("  attach latency %s ms, target frozen %s ms" %
                  (att.group(1), att.group(2)))
        print("  capture: %d bytes for %d allocations = %.2f bytes/alloc"
              ", lost records %d" % (size, allocs, size / max(allocs, 1),
                                     doc["totals"]["lost_records"]))
    finally:
        p.kill()
        p.wait()


if __name__ == "__main__":
    main()
