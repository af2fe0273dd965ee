#!/usr/bin/env python3
"""An aggregated session's live tables grow with the blocks it tracks
(19-43 bytes each), charged to the target's memory cgroup: a worker near
its cgroup's limit, growing, was OOM-killed for memory that was ours
(docs/limits.md; found by the review of what the census's room watch left
out).  Now the attacher looks at the room below the limit every 100 ms,
the payload lets its tables grow only as far as that room less 16 MiB,
and the session ends, its tables given back, when the room falls below
16 MiB or a table could not grow for it: exit 10, the capture whole up to
then, the worker running on.

The worker (a cgroup v1 memory cgroup, 48 MiB of room at the attach)
grows by about 32 MiB of floats: alone it fits; with a table per float
on top it would not."""
import os
import re
import subprocess
import tempfile
import time

from ma_test import MEMATTACH, Target, check, finish, interpreters, memattach
from test_heap_oom import Memcg, have_memcg

# 100 steps of 10,000 floats: 1,000,000 blocks, about 32 MiB with the list
N, STEPS = 10000, 100


def track_growth(t, out, env=None):
    """attach to t, then tell it to grow; the attach's exit code and
    stderr, and the worker's last line once it stopped growing"""
    a = subprocess.Popen([MEMATTACH, "attach", "-q", "-o", out,
                          "--duration", "60", str(t.pid)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    # the worker grows once the session tracks
    first = a.stderr.readline()
    t.proc.stdin.write(b"go\n")
    t.proc.stdin.flush()
    try:
        _, err = a.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        a.kill()
        _, err = a.communicate()
    done = t.readline(timeout=60)
    while done.startswith("grown"):
        done = t.readline(timeout=60)
    return a.returncode, first + err, done


def room_left(label, exe, tmp):
    if not have_memcg("%s: attach near the cgroup's limit" % label):
        return
    out = os.path.join(tmp, "room.mcap")
    with Memcg("attachroom") as g, \
            Target(exe, "small_growth.py", N, STEPS,
                   preexec_fn=g.enter) as t:
        time.sleep(0.2)
        g.limit(g.value("memory.usage_in_bytes") + (48 << 20))
        fails = g.value("memory.failcnt")
        rc, aerr, done = track_growth(t, out)
        check(rc == 10 and re.search(
            r"tracking ended early: process \d+'s memory cgroup "
            r"/memattach-attachroom-\d+ had \d+ MiB left below its limit",
            aerr), "%s: a worker growing near its cgroup's limit: the "
            "session ends before the limit, exit 10" % label,
            "exit %s %s" % (rc, aerr[-600:]))
        check(done == "DONE" and t.alive(),
              "%s: the worker grew all its floats and runs on" % label,
              "last line %r, alive %s, failcnt %d then %d" % (
                  done, t.alive(), fails, g.value("memory.failcnt")))
        rc, rout, rerr = memattach("report", out)
        check(rc == 0 and "small_growth.py" in rout,
              "%s: the capture up to the end reads, the floats' line "
              "in it" % label, "exit %d %s %s" % (rc, rout[-400:],
                                                    rerr[-300:]))
        g.limit(-1)


def machine(label, exe, tmp):
    """The machine's memory as well (MemAvailable, which
    MEMATTACH_TEST_MEMAVAIL_MIB stands in for): with 20 MiB available an
    attach is refused before it touches the worker, and the file at its
    -o path stays as it was (a refused or failed attach replaced it with
    an empty capture before); with 33 MiB, the same worker growing twice
    the floats (its tables outgrow 33 MiB less 16 MiB), the session ends
    when its tables would take what is left, exit 10, the machine named."""
    out = os.path.join(tmp, "machine.mcap")
    with Target(exe, "small_growth.py", N, 2 * STEPS) as t:
        env = dict(os.environ, MEMATTACH_TEST_MEMAVAIL_MIB="20")
        with open(out, "wb") as f:
            f.write(b"the last capture")
        rc, aout, aerr = memattach("attach", "-q", "-o", out, "--duration",
                                   "5", t.pid, env=env)
        with open(out, "rb") as f:
            kept = f.read()
        check(rc == 10 and re.search(
            r"the machine has 20 MiB available \(MemAvailable\), and a "
            r"session needs 32 MiB at least", aerr) and
            kept == b"the last capture" and
            not [n for n in os.listdir(tmp) if n.startswith(".")],
            "%s: 20 MiB available: attach refused, exit 10, the file "
            "at its -o path as it was, no temporary file left" % label,
            "exit %d %s %r %s" % (rc, aerr[-400:], kept[:40],
                                  os.listdir(tmp)))
        env["MEMATTACH_TEST_MEMAVAIL_MIB"] = "33"
        rc, aerr, done = track_growth(t, out, env)
        check(rc == 10 and re.search(
            r"tracking ended early: the machine had \d+ MiB left "
            r"\(MemAvailable\), too little for its live tables to grow",
            aerr), "%s: 33 MiB available, the worker growing: the session "
            "ends before its tables take it, exit 10" % label,
            "exit %s %s" % (rc, aerr[-600:]))
        check(done == "DONE" and t.alive(),
              "%s: machine: the worker runs on" % label, done)


def main():
    tmp = tempfile.mkdtemp(prefix="memattach-attachoom-")
    # the cgroup's accounting is the kernel's: one interpreter
    for label, exe in interpreters()[:1]:
        for f in (room_left, machine):
            try:
                f(label, exe, tmp)
            except Exception as e:
                check(False, "%s: %s ran without error" % (label,
                                                          f.__name__),
                      repr(e))
    finish()


if __name__ == "__main__":
    main()
