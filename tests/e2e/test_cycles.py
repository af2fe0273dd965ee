"""Attach/detach cycles against a busy 4-thread allocating target: no
crash, no deadlock (no cycle takes 10 s), the target keeps making progress
(300 cycles on Debian's python3, past the 256 sessions a process once
took at most, 20 on each pyenv interpreter; bench/cycles_bench.py runs
1,000).  How long a
cycle takes is a benchmark's business (bench/), not a test's: the slowest is
printed."""
import os
import tempfile
import time

from ma_test import Attach, Target, check, finish, interpreters


def run(label, exe, cycles, tmp):
    slow, slowest = [], 0.0
    with Target(exe, "churn.py", 4) as t:
        start_it = int(t.readline().split()[1])
        for i in range(cycles):
            t0 = time.monotonic()
            a = Attach(t.pid, "--duration", 0.05,
                       output=os.path.join(tmp, "c.cap"))
            rc = a.wait(timeout=30)
            dt = time.monotonic() - t0
            if rc != 0:
                check(False, "%s: cycle %d exit 0" % (label, i), a.stderr)
                break
            slowest = max(slowest, dt)
            if dt >= 10.0:
                slow.append((i, round(dt, 2)))
            if not t.alive():
                break
        died = ""
        if not t.alive():
            # how it ended: its exit status (negative: the signal) and
            # the end of its stderr (a fatal error, a traceback)
            died = "exit status %s after cycle %d; stderr:\n%s" % (
                t.proc.returncode, i,
                t.proc.stderr.read().decode(errors="replace")[-3000:])
        check(t.alive(), "%s: target alive after %d cycles" % (label, cycles),
              died)
        # what it printed meanwhile, then see it still counting
        t.drain()
        it1 = int(t.readline().split()[1])
        time.sleep(0.3)
        t.drain()
        it2 = int(t.readline().split()[1])
        check(it2 > it1 > start_it, "%s: target still making progress" % label,
              (start_it, it1, it2))
        check(not slow, "%s: no cycle hangs (slowest %.2f s)" % (
            label, slowest), slow)


def main():
    tmp = tempfile.mkdtemp(prefix="memattach-cycles-")
    for label, exe in interpreters():
        try:
            run(label, exe, 300 if label.startswith("debian") else 20, tmp)
        except Exception as e:
            check(False, "%s: ran without error" % label, repr(e))
    finish()


if __name__ == "__main__":
    main()
