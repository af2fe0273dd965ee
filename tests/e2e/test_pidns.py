"""A target in another PID namespace (`unshare --pid --fork --mount-proc`,
as in a container): its threads call themselves 1, 2, ... while memattach
sees them by the host's numbers.  stacks, info and the attach summary must
match each Python thread state with its kernel thread through NSpid, and
name both IDs (and each thread by its threading.Thread name); attach must track it (the payload then has no pidfd of
memattach and watches the heartbeat)."""
import json
import os
import shutil
import subprocess
import tempfile

from ma_test import (Attach, Target, check, finish, interpreters, memattach,
                     skip)

WRAP = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]


def run(label, exe, tmp):
    with Target(exe, "named_threads.py", wrap=WRAP) as t:
        ns_main = int(t.ready_line.split()[2])
        lines = [t.readline().split(" ", 2) for _ in range(6)]
        ns_tids = [int(x[1]) for x in lines]
        ns_names = {int(x[1]): x[2] for x in lines}
        if not check(t.pid and ns_main == 1,
                     "%s: target is PID 1 of its namespace, %s here" %
                     (label, t.pid), t.ready_line):
            return
        rc, out, err = memattach("stacks", "--json", t.pid)
        doc = json.loads(out) if rc == 0 else {}
        th = doc.get("threads", [])
        host = sorted(x["tid"] for x in th if x["python"])
        tasks = sorted(int(x) for x in os.listdir("/proc/%d/task" % t.pid))
        check(rc == 0 and len(th) == 6 and all(x["python"] for x in th),
              "%s: stacks: every thread has its Python thread state" % label,
              err + out)
        check(host == tasks and sorted(x["ns_tid"] for x in th) ==
              sorted(ns_tids),
              "%s: stacks: host and namespace IDs are the right ones" % label,
              (host, tasks, [x.get("ns_tid") for x in th], ns_tids))
        check({x["ns_tid"]: x["name"] for x in th} == ns_names,
              "%s: stacks: every thread by its threading.Thread name" % label,
              ([(x["ns_tid"], x["name"]) for x in th], ns_names))
        main = [x for x in th if x["main"]]
        check(len(main) == 1 and main[0]["tid"] == t.pid and
              main[0]["ns_tid"] == 1 and
              main[0]["frames"][0]["function"] == "main",
              "%s: stacks: the main thread is %d here, 1 inside, in main()"
              % (label, t.pid), main)
        rc, out, err = memattach("stacks", t.pid)
        check(rc == 0 and ("Thread %d (1 in its PID namespace)" % t.pid)
              in out and "no Python thread state" not in out,
              "%s: stacks (text) names both IDs" % label, out + err)
        rc, out, err = memattach("info", t.pid)
        check(rc == 0 and "6 (6 with a Python thread state)" in out and
              "(no thread)" not in out and
              "Python (1 in its PID namespace)" in out,
              "%s: info matches every thread" % label, out + err)
        cap = os.path.join(tmp, label + ".cap")
        a = Attach(t.pid, "--duration", "0.5", output=cap)
        rc = a.wait(timeout=60)
        check(rc == 0 and "attached to %d" % t.pid in a.stderr,
              "%s: attach tracks it" % label, a.stderr)
        t.proc.stdin.write(b"quit\n")
        t.proc.stdin.flush()
        check(t.readline() == "GOT", "%s: target runs on" % label)


def zombie_copies(pid):
    """The target's children that are heap copies left as zombies"""
    found = []
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
            for c in f.read().split():
                try:
                    with open("/proc/%s/stat" % c) as s:
                        st = s.read()
                except OSError:
                    continue
                if "(memattach-heap)" in st and \
                        st.rsplit(")", 1)[1].split()[0] == "Z":
                    found.append(int(c))
    return found


def run_heap(label, exe):
    """heap reaps its copy: the target calls it by its own number (2, in
    a namespace where only the target runs), another process here (on the
    host, 2 is kthreadd, alive: the copy was taken for alive and never
    reaped, a zombie left in the target by every census)"""
    p = subprocess.Popen(WRAP + [exe, "-c", "import sys; print('READY', "
                                 "flush=True); sys.stdin.readline()"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        p.stdout.readline()
        with open("/proc/%d/task/%d/children" % (p.pid, p.pid)) as f:
            pid = int(f.read().split()[0])
        for _ in range(2):
            rc, out, err = memattach("heap", pid)
            check(rc == 0, "%s: heap of PID 1 of a namespace" % label, err)
        left = zombie_copies(pid)
        check(not left, "%s: heap reaps its copies (no zombie left in the "
              "target)" % label, left)
        rc, out, err = memattach("detach", pid)
        check(rc == 0 and "reaped" not in out,
              "%s: detach finds nothing to reap" % label, out + err)
    finally:
        p.kill()
        p.wait()


def main():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        skip("PID namespaces", "needs root and unshare(1)")
        finish()
    tmp = tempfile.mkdtemp(prefix="memattach-pidns-")
    for label, exe in interpreters():
        try:
            run(label, exe, tmp)
            run_heap(label, exe)
        except Exception as e:
            check(False, "%s: ran without error" % label, repr(e))
    finish()


if __name__ == "__main__":
    main()
