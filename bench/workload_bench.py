#!/usr/bin/env python3
"""Every tracking mode on every workload of bench/workload.py (issue 12).

For each workload, one target process, then --rounds rounds of
  untracked window | attach, tracked window, detach | ...
and a last untracked window, so that every tracked window lies between two
untracked ones on the same process (the target's own rate drifts, and the
machine is shared: a tracked window is compared with the mean of its two
neighbours, never with a single baseline taken minutes before).

Per mode and workload it prints medians over the rounds of
  wall    tracked / untracked iterations per second;
  cpu     untracked / tracked CPU time per iteration of the target (its
          threads' utime + stime): steadier than wall when other processes
          compete for the two cores;
  after   the last untracked window / the first (the payload stays loaded,
          dormant, after every detach);
  rss+    the target's RSS at the end of the tracked window minus the mean
          of its neighbours' (ring, tables, what tracking keeps);
  att cpu memattach's CPU time (user + system, from wait4) / its wall time;
  att rss memattach's peak RSS (ru_maxrss);
  cap     capture bytes per second tracked, and per allocation;
  lost    records the payload dropped on a full ring.

  bench/workload_bench.py [--build build] [--python /usr/bin/python3]
      [--workloads churn,spread,large,growth] [--threads 1]
      [--modes "default;--sample 512K;--every-event"] [--rounds 3] [--window 2]
      [--settle 0.7] [--json FILE]

--settle: seconds tracked before the tracked window starts (the cache
workload's tables fill as its records turn over: give it tens of seconds).

Run by hand; not a test.  Figures go to docs/performance.md.
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
WORKLOAD = os.path.join(HERE, "workload.py")
# spread needs 10**6 iterations per thread to reach its steady state (about
# 1.2 s per thread on this machine; the threads share one GIL)


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


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


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
    """(iterations/s, CPU s per iteration, RSS at the end)"""
    last_count(proc)
    a, c0, t0 = next_count(proc), cpu_seconds(proc.pid), time.monotonic()
    time.sleep(seconds)
    last_count(proc)
    b, c1, t1 = next_count(proc), cpu_seconds(proc.pid), time.monotonic()
    return ((b - a) / (t1 - t0), (c1 - c0) / max(b - a, 1),
            rss_bytes(proc.pid))


def capture_allocs(memattach, cap):
    rep = subprocess.run([memattach, "report", "--format", "json", "--view",
                          "total", cap], capture_output=True, text=True)
    if rep.returncode != 0:
        return None, None
    doc = json.loads(rep.stdout)
    return doc["totals"]["allocations"], doc["totals"]["lost_records"]


def start_target(python, work, threads):
    """A target of bench/workload.py, READY, its stdout non-blocking for
    last_count (also bench/pair_ab.py's)"""
    env = dict(os.environ)
    if work == "large":
        env["GLIBC_TUNABLES"] = "glibc.malloc.mmap_threshold=131072"
    p = subprocess.Popen([python, WORKLOAD, work, str(threads)],
                         stdout=subprocess.PIPE, env=env)
    if p.stdout.readline().strip() != b"READY":
        p.kill()
        p.wait()
        sys.exit("%s did not start" % work)
    os.set_blocking(p.stdout.fileno(), False)
    return p


def warm_up(work, threads):
    """Until a fresh target's rate is steady (spread: its wheel full)"""
    time.sleep(1.0 + 1.3 * threads if work == "spread" else 1.0)


def run(a, work, mode):
    extra = [] if mode == "default" else mode.split()
    p = start_target(a.python, work, a.threads)
    cap = os.path.join(a.tmp, "w.cap")
    rounds = []
    try:
        warm_up(work, a.threads)
        prev = window(p, a.window)
        first = prev
        # the session: settle, the window, and 0.3 s to spare
        tracked = a.settle + a.window + 0.3
        for _ in range(a.rounds):
            t_start = time.monotonic()
            m = subprocess.Popen([a.memattach, "attach", "--quiet", "-o",
                                  cap, "--duration", str(tracked)] +
                                 extra + [str(p.pid)],
                                 stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
            time.sleep(a.settle)
            tr = window(p, a.window)
            _, status, ru = os.wait4(m.pid, 0)
            wall = time.monotonic() - t_start
            err = m.stderr.read().decode()
            m.returncode = os.waitstatus_to_exitcode(status)
            if m.returncode != 0:
                sys.exit("attach failed (%d): %s" % (m.returncode, err))
            time.sleep(0.3)
            nxt = window(p, a.window)
            allocs, lost = capture_allocs(a.memattach, cap)
            size = os.path.getsize(cap)
            rounds.append({
                "wall": tr[0] / ((prev[0] + nxt[0]) / 2),
                "cpu": ((prev[1] + nxt[1]) / 2) / tr[1],
                "rss_plus": tr[2] - (prev[2] + nxt[2]) / 2,
                "att_cpu": (ru.ru_utime + ru.ru_stime) / wall,
                "att_rss": ru.ru_maxrss * 1024,
                "cap_per_s": size / tracked,
                "cap_per_alloc": size / allocs if allocs else None,
                "lost": lost,
                "untracked_its": (prev[0] + nxt[0]) / 2,
            })
            prev = nxt
        after = prev[0] / first[0]
    finally:
        p.kill()
        p.wait()
    return rounds, after


def med(rounds, key):
    v = [r[key] for r in rounds if r[key] is not None]
    return statistics.median(v) if v else float("nan")


def memattach_bin(build):
    """BUILD: a build directory (its memattach) or a memattach binary"""
    b = os.path.join(build, "memattach") if os.path.isdir(build) else build
    if not os.access(b, os.X_OK):
        sys.exit("%s: not an executable memattach" % b)
    return b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--workloads", default="churn,spread,large,growth")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--modes", default="default;--sample 512K;--every-event",
                    help="attach options per mode, ';'-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window", type=float, default=2.0)
    ap.add_argument("--settle", type=float, default=0.7,
                    help="seconds tracked before the tracked window")
    ap.add_argument("--json", help="write every round here")
    a = ap.parse_args()
    a.memattach = memattach_bin(a.build)
    a.tmp = tempfile.mkdtemp(prefix="memattach-wb-")
    out = []
    print("%s, %d thread(s), %d rounds of %.1f s windows, load %s" %
          (a.python, a.threads, a.rounds, a.window,
           " ".join("%.1f" % x for x in os.getloadavg())))
    print("%-7s %-14s %6s %6s %6s %8s %7s %8s %9s %7s %5s" %
          ("work", "mode", "wall", "cpu", "after", "rss+", "att cpu",
           "att rss", "cap/s", "B/alloc", "lost"))
    for work in a.workloads.split(","):
        for mode in a.modes.split(";"):
            rounds, after = run(a, work, mode)
            out.append({"workload": work, "mode": mode, "after": after,
                        "threads": a.threads, "rounds": rounds})
            print("%-7s %-14s %6.3f %6.3f %6.3f %7.1fM %6.1f%% %7.1fM "
                  "%8.1fK %7.2f %5d" %
                  (work, mode, med(rounds, "wall"), med(rounds, "cpu"),
                   after, med(rounds, "rss_plus") / 2**20,
                   100 * med(rounds, "att_cpu"),
                   med(rounds, "att_rss") / 2**20,
                   med(rounds, "cap_per_s") / 1024,
                   med(rounds, "cap_per_alloc"),
                   max(r["lost"] or 0 for r in rounds)), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
