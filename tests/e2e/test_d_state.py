"""A thread in uninterruptible sleep (state D): a thread stuck on a hung
NFS server or a device cannot stop, not even for ptrace, until its call
ends, which may be never.  tests/targets/d_state.py holds one in D for a
minute (the parent of a vfork whose child sleeps).

- `stacks` reads every thread's stack without stopping the one in D (it
  changes none of its memory while in the kernel), exit 0, the main
  thread's line right; it failed after 1 s, exit 1, "some threads did not
  stop within 1000 ms", on the process a user most needs it for: a hung
  one.  On every interpreter.
- `attach` and `heap`, which need every thread stopped, refuse after 1 s,
  naming the thread and its state; on the first interpreter.
- After each, the target runs on (answers a line on stdin).
"""
import os
import re
import signal
import tempfile
import time

from ma_test import (TARGETS, Target, check, finish, interpreters, marks,
                     memattach, skip, thread_by_tid)
import json

LIBDIR = os.path.join(os.environ.get("MA_BINARY_DIR", ""), "tests")


def alive(t, n, label, after):
    t.proc.stdin.write(b"x\n")
    t.proc.stdin.flush()
    got = t.readline(20)
    check(got == "ALIVE %d" % n, "%s: the target runs on after %s" %
          (label, after), got)


def run(label, exe, first):
    line = marks(os.path.join(TARGETS, "d_state.py"))["main_loop"]
    env = dict(os.environ, MA_TEST_LIBDIR=LIBDIR)
    with Target(exe, "d_state.py", 60, env=env) as t:
        tid = int(t.ready_line.split()[1])
        try:
            rc, out, err = memattach("stacks", "--json", t.pid)
            doc = json.loads(out) if rc == 0 else {}
            main = thread_by_tid(doc, t.pid) if doc else None
            top = main["frames"][0] if main and main.get("frames") else {}
            check(rc == 0 and thread_by_tid(doc, tid) is not None and
                  top.get("line") == line and
                  top.get("file", "").endswith("d_state.py"),
                  "%s: stacks with a thread in D: exit 0, every thread, "
                  "the main thread at line %d" % (label, line),
                  (rc, err, main))
            alive(t, 1, label, "stacks")
            n = 1
            if first:
                for cmd in (["attach", "-d", "1"], ["heap"]):
                    rc, out, err = memattach(*cmd, t.pid)
                    check(rc == 1 and "thread %d did not stop" % tid in err
                          and "uninterruptible sleep (state D" in err,
                          "%s: %s refuses, naming the thread in D" %
                          (label, cmd[0]), (rc, err))
                    n += 1
                    alive(t, n, label, cmd[0])
        finally:
            # the vfork child sleeps on: end it with its parent
            try:
                with open("/proc/%d/task/%d/children" % (t.pid, tid)) as f:
                    for c in f.read().split():
                        os.kill(int(c), signal.SIGKILL)
            except OSError:
                pass


FREEZER = "/sys/fs/cgroup/freezer"


def frozen(label, exe):
    """The whole process frozen by the cgroup freezer (docker pause,
    systemctl freeze): its threads in state D too, for no disk.  `stacks`
    reads it; `attach` and `heap` refuse after 1 s saying its cgroup is
    frozen and to thaw it first (they said "a disk, NFS or device wait");
    thawed, the target runs on."""
    if not os.path.isdir(FREEZER) or os.geteuid() != 0:
        skip("%s: frozen cgroup" % label, "needs root and the cgroup v1 "
             "freezer at %s" % FREEZER)
        return
    g = os.path.join(FREEZER, "memattach-dstate-%d" % os.getpid())
    os.makedirs(g, exist_ok=True)

    def enter():
        with open(os.path.join(g, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def state(v):
        with open(os.path.join(g, "freezer.state"), "w") as f:
            f.write(v)
    try:
        with Target(exe, "growth.py", preexec_fn=enter) as t:
            state("FROZEN")
            rc, out, err = memattach("stacks", t.pid)
            check(rc == 0 and "growth.py" in out,
                  "%s: frozen cgroup: stacks reads it" % label, err)
            cap = os.path.join(tempfile.mkdtemp(), "frozen.cap")
            for cmd in (["attach", "-d", "1", "-o", cap], ["heap"]):
                rc, out, err = memattach(*(cmd + [t.pid]))
                check(rc == 1 and re.search(
                    r"its cgroup /memattach-dstate-\d+ is frozen .*thaw it "
                    r"first", err),
                    "%s: frozen cgroup: %s says so" % (label, cmd[0]),
                    "exit %d %s" % (rc, err))
            state("THAWED")
            n = len(t.drain())
            time.sleep(0.3)
            check(t.alive() and len(t.drain()) + n > 0,
                  "%s: thawed, the target runs on" % label)
    finally:
        state("THAWED")
        try:
            os.rmdir(g)
        except OSError:
            pass


def main():
    first = True
    for label, exe in interpreters():
        run(label, exe, first)
        if first:
            frozen(label, exe)
        first = False
    finish()


if __name__ == "__main__":
    main()
