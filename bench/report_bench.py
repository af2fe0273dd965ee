#!/usr/bin/env python3
"""Benchmark of `memattach report` (issue: reports).

Builds captures of about 100 M events that use the real format (written by
the project's own writer), then renders every view in every format from
each and measures, per run, the wall time of the whole command and its
peak memory (ru_maxrss of the child):

  churn    tools/gen-capture: 50 M allocations, 12 stacks, a small live set
           (the unit test's synthetic program: LIFO churn, realloc, mmap)
  program  tests/unit/test_report_gen.c: 20 000 stacks of depth ~25 in
           5 000 functions, 8 threads, 2 M blocks still live at the end

Run by hand (it takes a few minutes); results go to docs/performance.md.
The target is <= 10 s for any view in any format on the 2-core machine.

  python3 bench/report_bench.py [--build build] [--dir /tmp/ma-report-bench]
         [--events 100000000] [--quick] [--keep]
"""
import argparse
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
FORMATS = ["text", "json", "csv", "collapsed", "speedscope", "pprof", "html"]
VIEWS = ["live", "peak", "total", "temporary"]


def run(cmd, out=None):
    """(seconds, max RSS in KiB, exit code) of one command."""
    t0 = time.monotonic()
    with open(out or os.devnull, "wb") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.PIPE)
        _, status, ru = os.wait4(p.pid, 0)
    p.stderr.close()
    return time.monotonic() - t0, ru.ru_maxrss, os.waitstatus_to_exitcode(
        status)


def make_captures(build, d, events):
    os.makedirs(d, exist_ok=True)
    caps = {}
    churn = os.path.join(d, "churn.cap")
    if not os.path.exists(churn):
        print("generating %s ..." % churn, flush=True)
        subprocess.run([os.path.join(SRC, "tools", "gen-capture"), churn,
                        str(events // 2), build], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    caps["churn"] = churn
    prog = os.path.join(d, "program.cap")
    if not os.path.exists(prog):
        print("generating %s ..." % prog, flush=True)
        env = dict(os.environ, MA_REPORT_GEN=prog,
                   MA_REPORT_GEN_EVENTS=str(events),
                   MA_REPORT_GEN_STACKS="20000",
                   MA_REPORT_GEN_LIVE="1000000")
        subprocess.run([os.path.join(build, "tests", "test_report_gen"),
                        "--jobs", "1"], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    caps["program"] = prog
    return caps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    ap.add_argument("--dir", default="/tmp/ma-report-bench")
    ap.add_argument("--events", type=int, default=100_000_000)
    ap.add_argument("--quick", action="store_true",
                    help="live and peak in text and html, total in pprof")
    ap.add_argument("--keep", action="store_true",
                    help="keep the outputs in --dir/out")
    args = ap.parse_args()
    exe = os.path.join(args.build, "memattach")
    caps = make_captures(args.build, args.dir, args.events)
    outdir = os.path.join(args.dir, "out")
    os.makedirs(outdir, exist_ok=True)
    print("machine: %d cores, load average %.2f %.2f %.2f" %
          ((os.cpu_count() or 0,) + os.getloadavg()))
    worst = 0.0
    print("| capture | events | MB | view | format | seconds | max RSS MiB "
          "| output |")
    print("|---|---:|---:|---|---|---:|---:|---:|")
    for name, cap in caps.items():
        size = os.path.getsize(cap) / 1e6
        # events: from the JSON totals of one run
        js = subprocess.run([exe, "report", "-f", "json", "--top", "1", cap],
                            capture_output=True, text=True)
        ev = js.stdout.split('"events": ', 1)[1].split(",")[0] \
            if '"events": ' in js.stdout else "?"
        combos = [(v, f) for v in VIEWS for f in FORMATS]
        if args.quick:
            combos = [("live", "text"), ("peak", "html"), ("total", "pprof"),
                      ("temporary", "collapsed")]
        for view, fmt in combos:
            out = os.path.join(outdir, "%s-%s.%s" % (name, view, fmt))
            secs, rss, rc = run([exe, "report", "-f", fmt, "--view", view,
                                 "-o", out, cap])
            worst = max(worst, secs)
            osize = os.path.getsize(out) if os.path.exists(out) else 0
            print("| %s | %s | %.0f | %s | %s | %.2f%s | %.0f | %s |" %
                  (name, ev, size, view, fmt, secs,
                   "" if rc == 0 else " (exit %d)" % rc, rss / 1024,
                   "%.1f MB" % (osize / 1e6) if osize >= 1e5 else
                   "%.0f KB" % (osize / 1e3)), flush=True)
            if not args.keep and os.path.exists(out):
                os.unlink(out)
    print("\nworst: %.2f s (target <= 10 s)" % worst)
    return 0 if worst <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
