"""memattach attach --children (issue 13, docs/memattach.md "Worker pools"):
a process and its Python descendants into one capture, the process kept
as a dimension.  On each interpreter:

- a pre-fork master (tests/targets/prefork.py) with two os.fork workers
  started before the attach and a third forked after it: each worker
  allocates a known number of 64 KiB blocks at its own line once told to
  (after memattach said it tracks it); `report --pid` of each worker shows
  its blocks at its line and none of the others'; the worker that exits
  and one that execs the interpreter again are listed as exited with their
  figures kept; the late worker is tracked, with the master as its parent;
  the attach summary lists every process;
- a multiprocessing.Pool (tests/targets/pool.py): the tasks' blocks, per
  worker PID as the pool reported which worker ran which task;
- memattach SIGKILLed while it tracks a master and its workers, after
  the master ran programs through subprocess (vfork children, not
  tracked): every process goes on, allocates, exits 0, and a new attach
  --children works;
- workers started through a shell, one exec'd by it, one forked by it
  (tests/targets/shell_workers.py): both tracked, each with its blocks;
  with Debian's interpreter, a third worker that makes its interpreter
  1.5 s after it starts (tests/targets/no_interp.c late) is tracked too;
- on the first interpreter, `attach PID1 PID2` (a worker and the master
  named, no --children) puts both into one capture, and nothing of the
  other worker; and `memattach detach` of each process of an attach
  --children session, one by one: each is listed as stopped (not exited)
  with the payload's reason, and the session ends as detached, the
  target running.
"""
import os
import re
import select
import shutil
import tempfile
import time

from ma_test import (TARGETS, MEMATTACH, Target, check, finish, interpreters,
                     marks, memattach, report_json, skip)
import subprocess

BLOCK = 64 * 1024


class Run:
    """memattach attach in the background, its stderr read as it comes"""

    def __init__(self, *args):
        self.proc = subprocess.Popen([MEMATTACH, "attach", "--quiet"] +
                                     [str(a) for a in args],
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.err = ""
        self.out = ""

    def wait_for(self, pattern, timeout=20):
        """Wait until stderr matches pattern; the match or None"""
        end = time.time() + timeout
        fd = self.proc.stderr.fileno()
        while time.time() < end:
            m = re.search(pattern, self.err)
            if m:
                return m
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                ch = os.read(fd, 4096).decode(errors="replace")
                if not ch:
                    break
                self.err += ch
        return re.search(pattern, self.err)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(2)
        try:
            out, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        self.out += out
        self.err += err
        return self.proc.returncode


def line_bytes(doc, path, line):
    """live bytes and count of the row at path:line, (0, 0) if none"""
    for r in doc["rows"]:
        if r["file"] == path and r["line"] == line:
            return r["live"]["bytes"], r["live"]["count"]
    return 0, 0


def near(got, blocks):
    """a live figure of `blocks` blocks of BLOCK bytes: each bytearray
    holds BLOCK + 1 bytes and a small object header"""
    return blocks * BLOCK <= got <= blocks * (BLOCK + 256)


def procs_of(doc):
    return {p["pid"]: p for p in doc["processes"]}


def prefork(label, exe, tmp):
    path = os.path.join(TARGETS, "prefork.py")
    mk = marks(path)
    cap = os.path.join(tmp, "prefork.cap")
    with Target(exe, "prefork.py", tmp, 2) as t:
        workers = [int(p) for p in t.ready_line.split()[1:]]
        a = Run("--children", "-o", cap, t.pid)
        ok = all(a.wait_for(r"tracking child %d of %d" % (w, t.pid))
                 for w in workers)
        check(ok, "%s: prefork: both workers tracked" % label, a.err)
        t.proc.stdin.write(b"fork\n")
        t.proc.stdin.flush()
        late = t.readline()
        late = int(late.split()[1]) if late.startswith("FORKED") else 0
        ok = late and a.wait_for(r"tracking child %d of %d" % (late, t.pid))
        check(ok, "%s: prefork: a worker forked after the attach started "
              "is tracked" % label, a.err)
        t.proc.stdin.write(b"fork\n")
        t.proc.stdin.flush()
        ex = t.readline()
        ex = int(ex.split()[1]) if ex.startswith("FORKED") else 0
        ok = ex and a.wait_for(r"tracking child %d of %d" % (ex, t.pid))
        check(ok, "%s: prefork: a fourth worker (it will exec) tracked" %
              label, a.err)
        for k in range(4):
            open(os.path.join(tmp, "go-%d" % k), "w").close()
        held = [t.readline() for _ in range(4)]
        check(all(h.startswith("HELD") for h in held),
              "%s: prefork: the workers allocated" % label, held)
        a.wait_for(r"process %d: exited" % workers[0], timeout=10)
        check(a.wait_for(r"process %d: exec'd another program" % ex,
                         timeout=10),
              "%s: prefork: a worker that execs the interpreter again "
              "ends its tracking" % label, a.err)
        rc = a.stop()
        for k in (1, 2, 3):
            open(os.path.join(tmp, "end-%d" % k), "w").close()
        t.proc.stdin.write(b"quit\n")
        t.proc.stdin.flush()
        check(rc == 0, "%s: prefork: attach --children exits 0" % label,
              a.err)
        check(all(re.search(r"^\s+%d\s+%d\s+\w+\s" % (p, t.pid), a.out,
                            re.M) for p in workers + [late, ex]) and
              re.search(r"^\s+%d\s+-\s+tracked" % t.pid, a.out, re.M),
              "%s: prefork: the summary lists every process" % label,
              a.out)
        try:
            t.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        check(t.proc.returncode == 0,
              "%s: prefork: the master and its workers end normally" %
              label, t.proc.returncode)

    doc = report_json(cap)
    pr = procs_of(doc)
    pids = workers + [late, ex]
    check(set(pids) | {t.pid} <= set(pr),
          "%s: prefork: the report lists the master and its 4 workers" %
          label, doc["processes"])
    check(pr.get(workers[0], {}).get("state") == "exited" and
          near(pr.get(workers[0], {}).get("live", {}).get("bytes", 0), 16),
          "%s: prefork: worker 0 exited, its 16 blocks kept" % label,
          pr.get(workers[0]))
    check(pr.get(late, {}).get("parent") == t.pid,
          "%s: prefork: the late worker's parent is the master" % label,
          pr.get(late))
    check(pr.get(ex, {}).get("state") == "exited" and
          near(pr.get(ex, {}).get("live", {}).get("bytes", 0), 64),
          "%s: prefork: the worker that exec'd: exited, its 64 blocks "
          "kept" % label, pr.get(ex))
    for k, pid in enumerate(pids):
        d = report_json(cap, "--pid", str(pid), "--top", "0")
        own = line_bytes(d, path, mk["w%d" % k])
        others = [line_bytes(d, path, mk["w%d" % j])[0]
                  for j in range(4) if j != k]
        check(near(own[0], (k + 1) * 16) and own[1] >= (k + 1) * 16 and
              others == [0, 0, 0],
              "%s: prefork: report --pid %d (worker %d): %d blocks at "
              "line %d, none at the others'" %
              (label, pid, k, (k + 1) * 16, mk["w%d" % k]),
              "own %r, others %r" % (own, others))
    rc, out, err = memattach("report", "--pids", cap)
    check(rc == 0 and all(re.search(r"^\s+%d\s+%d\s" % (p, t.pid), out, re.M)
                          for p in pids),
          "%s: prefork: report --pids lists each worker" % label, out + err)
    rc, out, err = memattach("report", "--pid", "1", cap)
    check(rc == 2 and "no process" in err,
          "%s: prefork: report --pid of a PID not in it exits 2" % label,
          err)


def pool(label, exe, tmp):
    path = os.path.join(TARGETS, "pool.py")
    line = marks(path)["pool"]
    cap = os.path.join(tmp, "pool.cap")
    with Target(exe, "pool.py") as t:
        workers = [int(p) for p in t.ready_line.split()[1:]]
        a = Run("--children", "-o", cap, t.pid)
        ok = all(a.wait_for(r"tracking child %d of %d" % (w, t.pid))
                 for w in workers)
        check(ok, "%s: pool: both pool workers tracked" % label, a.err)
        t.proc.stdin.write(b"go\n")
        t.proc.stdin.flush()
        did = {}
        for _ in range(4):
            got = t.readline().split()
            if len(got) == 3 and got[0] == "DID":
                did[int(got[1])] = did.get(int(got[1]), 0) + int(got[2])
        done = t.readline()
        # the pool's figures move once a second: two reads after the tasks
        time.sleep(2.2)
        rc = a.stop()
        t.proc.stdin.write(b"quit\n")
        t.proc.stdin.flush()
        check(rc == 0 and done == "DONE",
              "%s: pool: attach --children exits 0" % label, a.err)
    for pid, blocks in sorted(did.items()):
        d = report_json(cap, "--pid", str(pid), "--top", "0")
        got = line_bytes(d, path, line)
        check(pid in workers and near(got[0], blocks),
              "%s: pool: worker %d ran tasks of %d blocks: %d bytes live "
              "at line %d" % (label, pid, blocks, got[0], line), got)
    check(sum(did.values()) == 80, "%s: pool: every task ran" % label, did)


def late_python(tmp):
    """[EXE, LIB] of tests/targets/no_interp.c built in tmp, a Python that
    starts slowly (Debian's libpython3.11); None when there is no cc or no
    such library"""
    lib = "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc or not os.path.exists(lib):
        return None
    out = os.path.join(tmp, "no_interp")
    if subprocess.call([cc, "-o", out, os.path.join(TARGETS, "no_interp.c"),
                        "-ldl"]) != 0:
        return None
    return [out, lib]


def via_shell(label, exe, tmp, late=None):
    """Workers started through a shell (tests/targets/shell_workers.py):
    one the shell execs (the same PID, another image), one the shell forks.
    Both are tracked, each with its own blocks at the worker's line; the
    shells were skipped as not Python and never looked at again, so
    neither was (and the skip said 'Python 2 and 3.6 or older', the
    shell's command line naming python3).  With late (late_python()), a
    third worker makes its interpreter 1.5 s after it starts: found before
    that, it was skipped for good ('not initialized')"""
    path = os.path.join(TARGETS, "shell_workers.py")
    line = marks(path)["shell_worker"]
    cap = os.path.join(tmp, "shell.cap")
    go = os.path.join(tmp, "shell.go")
    nworkers = 3 if late else 2
    with Target(exe, "shell_workers.py", go,
                *(["late"] + late if late else [])) as t:
        a = Run("--children", "-o", cap, t.pid)
        workers = {}
        seen = []
        for _ in range(nworkers):
            t0 = time.time()
            raw = t.readline(30)
            seen.append((raw, round(time.time() - t0, 2)))
            got = raw.split()
            if len(got) == 3 and got[0] == "WORKER":
                workers[int(got[1])] = int(got[2])
        ok = len(workers) == nworkers and all(
            a.wait_for(r"tracking child %d of \d+" % w) for w in workers)
        check(ok, "%s: shell: %s workers tracked" %
              (label, "all three" if late else "both"), (workers, seen, a.err))
        t.proc.stdin.write(b"go\n")
        t.proc.stdin.flush()
        for _ in range(nworkers):
            t.readline(30)
        time.sleep(2.2)
        rc = a.stop()
        t.proc.stdin.write(b"quit\n")
        t.proc.stdin.flush()
    check(rc == 0 and "Python 2 and 3.6" not in a.err,
          "%s: shell: attach exits 0, no shell called an old Python" %
          label, a.err)
    for pid, blocks in sorted(workers.items()):
        d = report_json(cap, "--pid", str(pid), "--top", "0")
        own = line_bytes(d, path, line)
        check(near(own[0], blocks) and own[1] >= blocks,
              "%s: shell: report --pid %d: its %d blocks at line %d" %
              (label, pid, blocks, line), own)


def killed(label, exe, tmp):
    with Target(exe, "prefork.py", tmp, 2) as t:
        workers = [int(p) for p in t.ready_line.split()[1:]]
        a = Run("--children", "-o", os.path.join(tmp, "k.cap"), t.pid)
        ok = all(a.wait_for(r"tracking child %d of %d" % (w, t.pid))
                 for w in workers)
        check(ok, "%s: killed: both workers tracked" % label, a.err)
        spawned = []
        for _ in range(3):
            t.proc.stdin.write(b"spawn\n")
            t.proc.stdin.flush()
            spawned.append(t.readline())
        check(spawned == ["SPAWNED 0"] * 3,
              "%s: killed: the master's subprocess runs work while "
              "tracked" % label, spawned)
        a.proc.kill()
        a.stop()
        for k in range(2):
            open(os.path.join(tmp, "go-%d" % k), "w").close()
        held = sorted(t.readline()[:6] for _ in range(2))
        check(held == ["HELD 0", "HELD 1"],
              "%s: killed: after memattach's SIGKILL the workers "
              "allocate" % label, held)
        b = Run("--children", "-d", "1.5", "-o",
                os.path.join(tmp, "k2.cap"), t.pid)
        ok = b.wait_for(r"tracking child %d of %d" % (workers[1], t.pid))
        rc = b.stop()
        check(ok and rc == 0, "%s: killed: a new attach --children works" %
              label, b.err)
        open(os.path.join(tmp, "end-1"), "w").close()
        t.proc.stdin.write(b"quit\n")
        t.proc.stdin.flush()
        try:
            t.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        check(t.proc.returncode == 0,
              "%s: killed: the master and every worker exit 0" % label,
              t.proc.returncode)


def several(label, exe, tmp):
    cap = os.path.join(tmp, "two.cap")
    path = os.path.join(TARGETS, "prefork.py")
    mk = marks(path)
    with Target(exe, "prefork.py", tmp, 2) as t:
        workers = [int(p) for p in t.ready_line.split()[1:]]
        a = Run("-o", cap, workers[1], t.pid)
        ok = a.wait_for(r"tracking %d\b" % t.pid)
        check(ok, "%s: attach PID1 PID2: both tracked" % label, a.err)
        open(os.path.join(tmp, "go-1"), "w").close()
        t.readline()
        time.sleep(1.2)
        rc = a.stop()
        for k in (0, 1):
            open(os.path.join(tmp, "end-%d" % k), "w").close()
        open(os.path.join(tmp, "go-0"), "w").close()
        t.proc.stdin.write(b"quit\n")
        t.proc.stdin.flush()
        check(rc == 0, "%s: attach PID1 PID2 exits 0" % label, a.err)
        # named PIDs have no parent in the session: '-', not 0
        check(re.search(r"^ +%d +- +\w" % t.pid, a.out, re.M),
              "%s: attach PID1 PID2: a named process's PARENT is '-'" %
              label, a.out[-600:])
    doc = report_json(cap)
    pr = procs_of(doc)
    check(set(pr) == {workers[1], t.pid} and workers[0] not in pr,
          "%s: attach PID1 PID2: those two, not the other worker" % label,
          doc["processes"])
    check(near(line_bytes(doc, path, mk["w1"])[0], 32),
          "%s: attach PID1 PID2: the named worker's 32 blocks" % label,
          doc["rows"][:3])


def detached(label, exe, tmp):
    cap = os.path.join(tmp, "d.cap")
    with Target(exe, "prefork.py", tmp, 2) as t:
        workers = [int(p) for p in t.ready_line.split()[1:]]
        a = Run("--children", "-d", "60", "-o", cap, t.pid)
        ok = all(a.wait_for(r"tracking child %d of %d" % (w, t.pid))
                 for w in workers)
        check(ok, "%s: detach: both workers tracked" % label, a.err)
        rc, _, err = memattach("detach", workers[1])
        ok = a.wait_for(r"process %d: payload stopped: stopped by "
                        r"'memattach detach'" % workers[1])
        check(rc == 0 and ok and a.proc.poll() is None,
              "%s: detach of a worker: said stopped, the session goes on"
              % label, a.err + err)
        for pid in (workers[0], t.pid):
            memattach("detach", pid)
        try:
            a.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        rc = a.stop()
        end = a.err.strip().splitlines()[-1:] or [""]
        check(rc == 0 and end[0].startswith("memattach: detached after")
              and "target running" in end[0],
              "%s: every process detached: the session ends as detached, "
              "not as 'target exited'" % label, a.err)
        t.proc.stdin.write(b"quit\n")
        t.proc.stdin.flush()
        for k in (0, 1):
            open(os.path.join(tmp, "go-%d" % k), "w").close()
            open(os.path.join(tmp, "end-%d" % k), "w").close()
    doc = report_json(cap)
    states = {p["pid"]: p["state"] for p in doc.get("processes", [])}
    check(states == {w: "stopped" for w in workers + [t.pid]},
          "%s: detach: the report lists the three processes as stopped"
          % label, states)
    # an aggregated capture's peak of several processes sums each one's
    # own: said, with no moment (workers that never lived at once added
    # up under 'between 1.3 s and 1.4 s')
    rc, out, err = memattach("report", "--width", "300", cap)
    check(rc == 0 and "the sum of each process's own peak" in out and
          "the peak above is the sum of each process's own peak" in a.out,
          "%s: several processes: the peak is said to be a sum of each "
          "one's own (report, attach summary)" % label,
          out[:500] + err + a.out[-400:])
    rc, out, err = memattach("report", "--pid", workers[0], cap)
    check(rc == 0 and "(the first of 3 processes)" in out.splitlines()[0],
          "%s: --pid: the header says its pid and command are the first "
          "process's" % label, out[:300] + err)
    # --pid of an aggregated capture: the frees of that process's blocks
    # (the whole capture's unknown frees were taken off them: -9682)
    bad = []
    for w in workers:
        d = report_json(cap, "--pid", str(w))
        tot = d["totals"]
        if not 0 <= tot["frees"] <= tot["allocations"]:
            bad.append((w, tot["frees"], tot["allocations"]))
    check(not bad, "%s: --pid: 0 <= frees <= allocations" % label, bad)
    # --pid and --thread that select nothing together: the message names
    # the process's threads only (it listed the other worker's thread as
    # one of the capture's, contradicting itself)
    rc, out, err = memattach("report", "--pid", workers[0], "--thread",
                             workers[1], cap)
    check(rc == 2 and "no thread of process %d" % workers[0] in err and
          "%d \"" % workers[1] not in err,
          "%s: --pid W0 --thread W1: says no thread of W0 is W1" % label,
          err)


def main():
    first = True
    for label, exe in interpreters():
        with tempfile.TemporaryDirectory(prefix="ma-pools-") as tmp:
            os.chmod(tmp, 0o755)
            prefork(label, exe, tmp)
        with tempfile.TemporaryDirectory(prefix="ma-pools-") as tmp:
            pool(label, exe, tmp)
        with tempfile.TemporaryDirectory(prefix="ma-pools-") as tmp:
            killed(label, exe, tmp)
        with tempfile.TemporaryDirectory(prefix="ma-pools-") as tmp:
            # the Python that starts slowly is Debian's libpython: with
            # Debian's interpreter only
            late = late_python(tmp) if exe == "/usr/bin/python3" else None
            if first and not late:
                skip("a Python that starts slowly", "needs cc and "
                     "Debian's libpython3.11")
            via_shell(label, exe, tmp, late)
        if first:
            with tempfile.TemporaryDirectory(prefix="ma-pools-") as tmp:
                several(label, exe, tmp)
            with tempfile.TemporaryDirectory(prefix="ma-pools-") as tmp:
                os.chmod(tmp, 0o755)
                detached(label, exe, tmp)
            first = False
    if not first:
        return
    skip("attach PID1 PID2", "no interpreter")


main()
finish()
