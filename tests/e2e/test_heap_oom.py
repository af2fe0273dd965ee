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
the next census reaps the copy and leaves the target well."""
import time

from kill_lib import KillTarget, StoppedAttach, each_interpreter
from ma_test import check, memattach
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


def main():
    each_interpreter("memattach-heapoom-", run)


if __name__ == "__main__":
    main()
