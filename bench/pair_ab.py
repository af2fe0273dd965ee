#!/usr/bin/env python3
"""Two memattach builds compared on two targets that run at the same time.

On a shared host the untracked rate of one process drifts by +-10 % over
minutes, so two builds measured one after the other (bench/attach_ab.py,
bench/workload_bench.py run in turn) differ by as much as their change is
worth: identical builds gave medians 0.06 apart in 6-round series.  Here
both builds run in the same seconds: each round starts two targets of
bench/workload.py, measures both untracked in the same window, attaches
build A to one and build B to the other (swapped every round), and measures
both tracked in the same window.  Each target's ratio is untracked /
tracked CPU time per iteration (its threads' utime + stime), and B/A is
the ratio of the two: what the host does to one target it does to the
other.  The two targets share the L3 and the memory bus, so each runs a
little slower than alone: the absolute ratios are the pair's, B/A is the
figure to read.  An A/A run shows the noise left (docs/performance.md).

  bench/pair_ab.py [--rounds 8] [--window 4] [--settle 0.7]
                   [--workload spread] [--threads 1]
                   [--python /usr/bin/python3] [--extra "--sample 512K"]
                   BUILD_A BUILD_B

BUILD: a build directory (its memattach) or a memattach binary.  Prints
each round and the medians; run by hand, not a test.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import workload  # noqa: E402  (the workloads' names)
import workload_bench as wb  # noqa: E402  (start_target, warm_up, window)


def both(a, procs):
    """CPU s per iteration of each target over one shared window"""
    out = [None, None]

    def one(i):
        out[i] = wb.window(procs[i], a.window)[1]

    ths = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    return out


def round_(a, bins, order, tmp):
    procs = []
    try:
        for _ in range(2):
            procs.append(wb.start_target(a.python, a.workload, a.threads))
        wb.warm_up(a.workload, a.threads)
        untracked = both(a, procs)
        session = a.settle + a.window + 0.5
        ms = [subprocess.Popen([bins[order[i]], "attach", "--quiet", "-o",
                                os.path.join(tmp, "pair%d.cap" % i),
                                "--duration", str(session)] +
                               a.extra.split() + [str(procs[i].pid)],
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
              for i in range(2)]
        time.sleep(a.settle)
        tracked = both(a, procs)
        for m in ms:
            err = m.communicate()[1].decode()
            if m.returncode != 0:
                sys.exit("attach failed (%d): %s" % (m.returncode, err))
    finally:
        for p in procs:
            p.kill()
            p.wait()
    ratio = [0.0, 0.0]
    for i in range(2):
        ratio[order[i]] = untracked[i] / tracked[i]
    return ratio


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--window", type=float, default=4.0)
    ap.add_argument("--settle", type=float, default=0.7)
    ap.add_argument("--workload", default="spread",
                    choices=sorted(workload.WORKLOADS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--extra", default="", help="attach options of both")
    ap.add_argument("builds", nargs=2, metavar="BUILD")
    a = ap.parse_args()
    bins = [wb.memattach_bin(b) for b in a.builds]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            order = (0, 1) if r % 2 == 0 else (1, 0)
            ra, rb = round_(a, bins, order, tmp)
            rows.append((ra, rb))
            print("round %d: A %.3f  B %.3f  B/A %.3f" % (r + 1, ra, rb,
                                                         rb / ra),
                  flush=True)
    q = [rb / ra for ra, rb in rows]
    print("%s, %s x %d, %d rounds of %.1f s windows" %
          (a.python, a.workload, a.threads, a.rounds, a.window))
    print("A %s: median %.3f" % (a.builds[0],
                                 statistics.median(r[0] for r in rows)))
    print("B %s: median %.3f" % (a.builds[1],
                                 statistics.median(r[1] for r in rows)))
    print("B/A: median %.3f, mean %.3f, range %.3f-%.3f, B ahead in %d of %d"
          % (statistics.median(q), statistics.mean(q), min(q), max(q),
             sum(x > 1 for x in q), len(q)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
