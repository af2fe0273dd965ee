#!/usr/bin/env python3
"""A/B comparison of memattach builds on the attach benchmark's target.

Throughput scatters by about +-0.03 between runs of one build (the target's
heap addresses, hence the payload's hash tables, change with every run), so
a change to the payload's hot path is judged on interleaved runs:
round 1 runs build A then B, round 2 again, ..., and each build's median
is printed.  Each run starts tests/targets/churn.py, measures its rate
untracked, attaches the build, measures again, and reports tracked /
untracked by wall-clock rate and by CPU time per iteration (the target's
threads' utime + stime from /proc; steadier when other processes
compete for the CPUs).

  bench/attach_ab.py [--rounds 6] [--window 2] [--threads 1]
                     [--extra "--every-event"] BUILD_DIR_OR_BINARY...

Run by hand on a quiet machine; not a test.  Results worth keeping go in
docs/performance.md.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import workload_bench as wb  # noqa: E402  (memattach_bin)
CHURN = os.path.join(os.path.dirname(HERE), "tests", "targets", "churn.py")


def cpu_seconds(pid):
    """utime + stime of all the process's threads"""
    ticks = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except OSError:
            pass  # a thread that just ended
    return ticks / os.sysconf("SC_CLK_TCK")


def last_count(proc):
    """The last 'it N' the target printed so far, or None"""
    buf = b""
    try:
        while True:
            b = os.read(proc.stdout.fileno(), 65536)
            if not b:
                sys.exit("the target exited")
            buf += b
    except BlockingIOError:
        pass
    n = None
    for line in buf.decode().split("\n"):
        m = re.match(r"it (\d+)$", line)
        if m:
            n = int(m.group(1))
    return n


def next_count(proc):
    while True:
        n = last_count(proc)
        if n is not None:
            return n
        time.sleep(0.01)


def window(proc, seconds):
    """(iterations/s, CPU ns per iteration) over about `seconds`"""
    last_count(proc)
    a, c0, t0 = next_count(proc), cpu_seconds(proc.pid), time.monotonic()
    time.sleep(seconds)
    last_count(proc)
    b, c1, t1 = next_count(proc), cpu_seconds(proc.pid), time.monotonic()
    return (b - a) / (t1 - t0), (c1 - c0) / max(b - a, 1) * 1e9


def one_run(memattach, a):
    p = subprocess.Popen([a.python, CHURN, str(a.threads)],
                         stdout=subprocess.PIPE)
    try:
        p.stdout.readline()
        os.set_blocking(p.stdout.fileno(), False)
        time.sleep(0.5)
        r0, c0 = window(p, a.window)
        m = subprocess.Popen([memattach, "attach", "--quiet", "-o",
                              a.capture, "--duration",
                              str(a.window + 1.2)] + a.extra.split() +
                             [str(p.pid)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(0.8)
        r1, c1 = window(p, a.window)
        err = m.communicate()[1]
        if m.returncode != 0:
            sys.exit("%s attach failed: %s" % (memattach, err))
        return r1 / r0, c0 / c1
    finally:
        p.kill()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("builds", nargs="+",
                    help="build directories or memattach binaries")
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--window", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--extra", default="", help="extra attach options")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="memattach-ab-")
    a.capture = os.path.join(tmp, "ab.cap")
    bins = [wb.memattach_bin(b) for b in a.builds]
    res = {b: ([], []) for b in bins}
    for _ in range(a.rounds):
        for b in bins:
            wall, cpu = one_run(b, a)
            res[b][0].append(wall)
            res[b][1].append(cpu)
    print("tracked / untracked, %d churn thread(s), %s, %d rounds of %.1f s"
          " windows" % (a.threads, a.python, a.rounds, a.window))
    for b in bins:
        wall, cpu = res[b]
        print("%s\n  wall %s  median %.3f\n  cpu  %s  median %.3f" %
              (b, " ".join("%.3f" % x for x in sorted(wall)),
               statistics.median(wall),
               " ".join("%.3f" % x for x in sorted(cpu)),
               statistics.median(cpu)))


if __name__ == "__main__":
    main()
