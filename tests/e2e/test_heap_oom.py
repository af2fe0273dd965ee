#!/usr/bin/env python3
"""The heap census's copy is the OOM killer's first choice, never the
target (docs/heap.md, "What the copy costs").  The copy lives in the
target's memory cgroup with as many resident pages as the target, and the
pages the target writes while it lives are charged there: on a target near
its cgroup's limit the OOM killer chose between the two by a few pages, and
killed the target (found by probing: a worker rewriting 150 MiB under a
175 MiB limit, killed by its census, which exited 0).  The copy now sets
its own oom_score_adj to 1000.

A census stops itself at its first chunk (the copy alive, walking); the
copy's /proc/PID/oom_score_adj must be 1000; then memattach is killed, and
the next census reaps the copy and leaves the target well.

And the copy killed by that OOM killer (the target in a memory cgroup of
cgroup v1 whose limit leaves the copy 3 MiB): memattach says so, exit 10
(not enough memory), the target well.  It said "partial census: the copy's
box is unreadable", exit 8: the copy's memory was gone before its death
could be waited for.  (The target may die too, 3 MiB from its limit:
docs/limits.md.)"""
import os
import time

from kill_lib import KillTarget, StoppedAttach, each_interpreter
from ma_test import check, memattach, skip
from test_heap_kill import children


def run(label, exe, tmp):
    with KillTarget(exe, tmp) as t:
        a = StoppedAttach(t.pid, None, "heap.chunk#1", "-q", cmd=["heap"])
        if not check(a.wait_stopped(), "%s: the census stopped at its "
                     "first chunk" % label):
            a.kill()
            return
        copies = [c for c in children(t.pid) if c[2] == "memattach-heap"]
        adj = []
        for c in copies:
            try:
                with open("/proc/%d/oom_score_adj" % c[0]) as f:
                    adj.append(int(f.read()))
            except OSError as e:
                adj.append(repr(e))
        with open("/proc/%d/oom_score_adj" % t.pid) as f:
            target_adj = int(f.read())
        a.kill()
        check(len(copies) == 1 and adj == [1000] and target_adj == 0,
              "%s: the copy's oom_score_adj is 1000, the target's as it "
              "was" % label, "copies %s, adj %s, target %s" % (
                  copies, adj, target_adj))
        time.sleep(0.2)
        rc, out, err = memattach("heap", "-q", "-n", "3", t.pid,
                                 timeout=120)
        check(rc == 0 and "Census of" in out and not children(t.pid)
              and not t.health(),
              "%s: the next census works and reaps the copy" % label,
              "exit %d %s %s" % (rc, err[-300:], children(t.pid)))


MEMCG = "/sys/fs/cgroup/memory"


def oom_killed(label, exe, tmp):
    if os.geteuid() != 0 or not os.path.exists(
            os.path.join(MEMCG, "memory.limit_in_bytes")):
        skip("%s: copy OOM-killed" % label, "needs root and the cgroup v1 "
             "memory controller")
        return
    group = os.path.join(MEMCG, "memattach-heapoom-%d" % os.getpid())
    os.mkdir(group)
    try:
        def enter():
            with open(os.path.join(group, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

        # in the group from its start: its pages charged there, as a
        # worker in a container's
        with KillTarget(exe, tmp, preexec_fn=enter) as t:
            time.sleep(0.2)
            with open(os.path.join(group, "memory.usage_in_bytes")) as f:
                usage = int(f.read())
            with open(os.path.join(group, "memory.limit_in_bytes"),
                      "w") as f:
                f.write(str(usage + (3 << 20)))
            rc, out, err = memattach("heap", "-q", t.pid, timeout=120)
            with open(os.path.join(group, "memory.limit_in_bytes"),
                      "w") as f:
                f.write("-1")
            check(rc == 10 and "the copy was killed by the OOM killer" in
                  err, "%s: the copy OOM-killed: said, exit 10" % label,
                  "exit %d %s" % (rc, err[-300:]))
            # Not checked: the target's survival.  With 3 MiB left the
            # target's own next pages can find the group still full while
            # the killed copy's are freed, and the OOM killer takes the
            # target next (docs/limits.md: no refusal yet for a cgroup
            # short of memory)
    finally:
        for _ in range(50):
            try:
                os.rmdir(group)
                break
            except OSError:
                time.sleep(0.1)


def main():
    each_interpreter("memattach-heapoom-", run, oom_killed)


if __name__ == "__main__":
    main()
