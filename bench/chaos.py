#!/usr/bin/env python3
"""Chaos benchmark: memattach SIGKILLed at random moments, thousands of
times, on one target that has everything a kill could disturb
(tests/targets/kill_target.py: three threads allocating, the main thread
blocked in read(), one thread in select(), one in epoll_wait(), one
sleeping, SIGALRM every 10 ms).  Run by hand; figures go to
docs/performance.md.  Not a test.

Each round starts `memattach attach` and kills it:
  - a third of the rounds 0-60 ms after its start (the attach itself:
    freeze, remote calls, dlopen, ma_start);
  - a third 0-1.2 s after its start (anywhere, mostly tracking);
  - a third get SIGINT 0.1-1.2 s after the start, then SIGKILL 0-200 ms
    later (killed during its stop).
Every --check rounds, and after the last: the target's blocked read(),
select() and epoll_wait() must get their data and its threads must make
progress (tests/e2e/kill_lib.py); every --detach rounds `memattach detach`
runs and the allocation rate (loops per CPU second) is measured, relative
to an identical twin process that memattach never touches, and compared
with the same relative rate before the first round: the target's own rate
drifts, and the machine's other work moves it, but both move the twin's
alike.  --cycles N adds N plain attach
(-d 0.05)/detach cycles at the end.  Core dumps are enabled for the
target: a crash leaves a core where kernel.core_pattern says.

  bench/chaos.py --kills 10000 [--python /usr/bin/python3] [--seed 1]
"""
import argparse
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
os.environ.setdefault("MEMATTACH", os.path.join(SRC, "build", "memattach"))

from kill_lib import KillTarget, memattach_env  # noqa: E402
from ma_test import MEMATTACH, memattach  # noqa: E402


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alloc_rate(t, seconds):
    """Allocation loops per CPU second of the target: on a machine that
    does other work meanwhile, wall-clock rates move by tens of percent;
    the work done per CPU second does not."""
    a, ca = t.stat(), cpu_seconds(t.pid)
    time.sleep(seconds)
    b, cb = t.stat(), cpu_seconds(t.pid)
    if a is None or b is None or cb <= ca:
        return 0.0
    return (b[0] - a[0]) / (cb - ca)


def core_files(since):
    pattern = open("/proc/sys/kernel/core_pattern").read().strip()
    if pattern.startswith("|"):
        return "cores piped to %s" % pattern
    d = os.path.dirname(pattern) or "."
    try:
        return [f for f in os.listdir(d) if f.startswith("core")
                and os.path.getmtime(os.path.join(d, f)) >= since]
    except OSError:
        return []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--kills", type=int, default=1000)
    ap.add_argument("--check", type=int, default=10)
    ap.add_argument("--detach", type=int, default=100)
    ap.add_argument("--window", type=float, default=2.0)
    ap.add_argument("--cycles", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    tmp = tempfile.mkdtemp(prefix="memattach-chaos-")
    cap = os.path.join(tmp, "c.cap")
    started = time.time()

    def unlimited_core():
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,
                                                  resource.RLIM_INFINITY))

    t = KillTarget(args.python, tmp, preexec_fn=unlimited_core)
    # A twin that memattach never touches: the target's own rate drifts
    # (and the machine's load moves it), so the rate after a detach is
    # compared with the twin's at the same moment
    twin_dir = os.path.join(tmp, "twin")
    os.mkdir(twin_dir)
    twin = KillTarget(args.python, twin_dir)
    time.sleep(0.5)

    def relative_rate():
        """Target's rate over the twin's, median of three pairs of
        windows taken in turn."""
        return statistics.median(alloc_rate(t, args.window / 2) /
                                 max(alloc_rate(twin, args.window / 2), 1)
                                 for _ in range(3))

    base = relative_rate()
    kinds = {"attach": 0, "anywhere": 0, "stop": 0}
    ratios, bad, t_run = [], [], time.monotonic()
    died = None
    for i in range(1, args.kills + 1):
        kind = rnd.choice(list(kinds))
        kinds[kind] += 1
        a = subprocess.Popen([MEMATTACH, "attach", "--quiet", "-o", cap,
                              str(t.pid)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=memattach_env())
        if kind == "attach":
            time.sleep(rnd.uniform(0, 0.06))
        elif kind == "anywhere":
            time.sleep(rnd.uniform(0, 1.2))
        else:
            time.sleep(rnd.uniform(0.1, 1.2))
            a.send_signal(signal.SIGINT)
            time.sleep(rnd.uniform(0, 0.2))
        a.kill()
        a.wait()
        if not t.alive():
            died = (i, kind, t.proc.returncode)
            break
        if i % args.check == 0 or i == args.kills:
            why = t.health()
            if why:
                bad.append((i, kind, why))
                print("%6d: %s kill: %s" % (i, kind, why), flush=True)
                if not t.alive():
                    died = (i, kind, t.proc.returncode)
                    break
        if i % args.detach == 0 or i == args.kills:
            rc, out, err = memattach("detach", t.pid, timeout=60)
            if rc != 0:
                bad.append((i, "detach", err.strip()))
                print("%6d: detach: %s" % (i, err.strip()), flush=True)
            ratios.append(relative_rate() / base)
            print("%6d kills (%.0f s): target alive, rate after detach %.3f"
                  " of before, %d bad" % (i, time.monotonic() - t_run,
                                          ratios[-1], len(bad)), flush=True)
    cycle_fail = 0
    if not died and args.cycles:
        for c in range(args.cycles):
            rc, _, err = memattach("attach", "--quiet", "-d", 0.05, "-o", cap,
                                   t.pid, timeout=60)
            cycle_fail += rc != 0
            if not t.alive():
                died = ("cycle %d" % c, "cycle", t.proc.returncode)
                break
        why = t.health() if not died else "dead"
        if why:
            bad.append(("cycles", "cycles", why))
        ratios.append(relative_rate() / base)
    print("python %s, seed %d: %d kills (attach %d, anywhere %d, stop %d) "
          "in %.0f s" % (args.python, args.seed, sum(kinds.values()),
                         kinds["attach"], kinds["anywhere"], kinds["stop"],
                         time.monotonic() - t_run))
    print("target deaths: %s" % (died or 0))
    print("lost reads/writes or stalls: %d %s" % (len(bad), bad[:5]))
    if args.cycles:
        print("attach/detach cycles: %d, failed %d" % (args.cycles,
                                                       cycle_fail))
    if ratios:
        print("allocation rate after detach / before, relative to the "
              "twin: min %.3f median %.3f (%d measures, each the median "
              "of three pairs of %.1f s windows)" % (
                  min(ratios), statistics.median(ratios), len(ratios),
                  args.window / 2))
    print("core files: %s" % (core_files(started) if died else "none needed"))
    t.kill()
    twin.kill()
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if died or bad else 0


if __name__ == "__main__":
    sys.exit(main())
