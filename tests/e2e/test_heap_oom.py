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
import re
import shutil
import subprocess
import tempfile
import time

from kill_lib import KillTarget, StoppedAttach
from ma_test import (MEMATTACH, Target, check, finish, interpreters,
                     memattach, skip)
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


class Memcg:
    """A memory cgroup of cgroup v1 for one target, removed at the end"""

    def __init__(self, name):
        self.path = os.path.join(MEMCG, "memattach-%s-%d" % (name,
                                                             os.getpid()))
        os.mkdir(self.path)

    def enter(self):
        """preexec_fn: the target in the group from its start, its pages
        charged there, as a worker's in a container"""
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def value(self, name):
        with open(os.path.join(self.path, name)) as f:
            return int(f.read())

    def limit(self, v):
        with open(os.path.join(self.path, "memory.limit_in_bytes"),
                  "w") as f:
            f.write(str(v))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for _ in range(50):
            try:
                os.rmdir(self.path)
                break
            except OSError:
                time.sleep(0.1)


def have_memcg(what):
    if os.geteuid() != 0 or not os.path.exists(
            os.path.join(MEMCG, "memory.limit_in_bytes")):
        skip(what, "needs root and the cgroup v1 memory controller")
        return False
    return True


def oom_killed(label, exe, tmp):
    """The copy killed by the OOM killer: said so, exit 10.  The refusal
    below would stop such a census before its clone: MEMATTACH_TEST_
    MEMAVAIL_MIB, which stands in for the memory available, lifts it"""
    if not have_memcg("%s: copy OOM-killed" % label):
        return
    with Memcg("heapoom") as g, \
            KillTarget(exe, tmp, preexec_fn=g.enter) as t:
        time.sleep(0.2)
        g.limit(g.value("memory.usage_in_bytes") + (3 << 20))
        rc, out, err = memattach("heap", "-q", t.pid, timeout=120,
                                 env={"MEMATTACH_TEST_MEMAVAIL_MIB":
                                      "100000"})
        g.limit(-1)
        check(rc == 10 and "the copy was killed by the OOM killer" in
              err, "%s: the copy OOM-killed: said, exit 10" % label,
              "exit %d %s" % (rc, err[-300:]))
        # Not checked: the target's survival.  With 3 MiB left the
        # target's own next pages can find the group still full while
        # the killed copy's are freed, and the OOM killer takes the
        # target next: why a census is refused so short of room (below)


def payload_loaded(pid):
    with open("/proc/%d/maps" % pid) as f:
        return "memattach-payload" in f.read()


def refused(label, exe, tmp):
    """A target 3 MiB below its cgroup's limit: the census is refused
    before the clone, exit 10, the cgroup named; the target untouched,
    alive.  It went ahead, and the OOM killer took the copy or the
    target."""
    if not have_memcg("%s: census refused" % label):
        return
    with Memcg("heaproom") as g, \
            KillTarget(exe, tmp, preexec_fn=g.enter) as t:
        time.sleep(0.2)
        g.limit(g.value("memory.usage_in_bytes") + (3 << 20))
        fails = g.value("memory.failcnt")
        rc, out, err = memattach("heap", "-q", t.pid, timeout=120)
        check(rc == 10 and re.search(
            r"memory cgroup /memattach-heaproom-\d+ has \d+ MiB left below "
            r"its limit, and a census needs \d+ MiB there", err) and
            "refused before touching the process" in err,
            "%s: 3 MiB below its cgroup's limit: the census refused, "
            "exit 10" % label, "exit %d %s" % (rc, err[-400:]))
        check(not children(t.pid) and g.value("memory.failcnt") == fails
              and not t.health(),
              "%s: refused: no copy made, the limit never hit, the "
              "target well" % label)
        # and a tracking session, whose tables and ring pages are charged
        # there too, is refused the same way
        rc, out, err = memattach("attach", "-q", "-d", "0.3", "-o",
                                 os.path.join(tmp, "room.cap"), t.pid)
        check(rc == 10 and re.search(
            r"memory cgroup /memattach-heaproom-\d+ has \d+ MiB left below "
            r"its limit, and a session needs 32 MiB there", err) and
            not payload_loaded(t.pid) and g.value("memory.failcnt") == fails,
            "%s: 3 MiB below its cgroup's limit: attach refused, exit 10, "
            "nothing loaded" % label, "exit %d %s" % (rc, err[-400:]))
        g.limit(-1)
        rc, out, err = memattach("attach", "-q", "-d", "0.3", "-o",
                                 os.path.join(tmp, "room.cap"), t.pid)
        check(rc == 0 and not t.health(), "%s: the limit lifted, attach "
              "works" % label, "exit %d %s" % (rc, err[-300:]))


def stopped(label, exe, tmp):
    """A worker rewriting 400 MiB at 200 MiB/s in a cgroup that leaves the
    census 40 MiB more than it needs to start: the copy's pages fill the
    room within a second, and the census stops itself when 16 MiB are
    left, exit 10, the copy ended; the target was never near its limit's
    OOM kill, and runs on."""
    if not have_memcg("%s: census stopped" % label):
        return
    with Memcg("heapstop") as g, \
            Target(exe, "rewriter.py", 1000000, 400, 200,
                   preexec_fn=g.enter) as t:
        t.readline(timeout=60)  # its first pass: every page in place
        with open("/proc/%d/status" % t.pid) as f:
            rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) << 10
        g.limit(g.value("memory.usage_in_bytes") + (64 << 20) + rss // 64 +
                (40 << 20))
        fails = g.value("memory.failcnt")
        rc, out, err = memattach("heap", "-q", t.pid, timeout=120)
        check(rc == 10 and re.search(
            r"stopped after \d+ objects: process \d+'s memory cgroup "
            r"/memattach-heapstop-\d+ had \d+ MiB left below its limit",
            err), "%s: a worker rewriting its memory: the census stops "
            "before its cgroup's limit, exit 10" % label,
            "exit %d %s" % (rc, err[-400:]))
        time.sleep(0.5)
        passes = [ln for ln in t.drain() if ln.startswith("pass")]
        check(t.alive() and g.value("memory.failcnt") == fails and
              not children(t.pid),
              "%s: stopped: the limit never hit, the copy gone, the "
              "worker runs on" % label,
              "alive %s, failcnt %d then %d, %s" % (
                  t.alive(), fails, g.value("memory.failcnt"), passes[-1:]))
        g.limit(-1)


def cached(label, exe, tmp):
    """A worker whose cgroup is full of page cache (it read files: a
    cache the kernel reclaims before it charges a new page over the
    limit): the census runs, exit 0.  The room was taken as the limit
    less memory.usage_in_bytes, which counts that cache: every census
    of a worker that had read more than its limit was refused, "0 MiB
    left below its limit", exit 10 (found by the namespaces probe)."""
    if not have_memcg("%s: page cache" % label):
        return
    data = os.path.join(tmp, "cache.bin")
    with open(data, "wb") as f:
        for _ in range(160):
            f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    with Memcg("heapcache") as g, \
            KillTarget(exe, tmp, preexec_fn=g.enter) as t:
        time.sleep(0.2)
        g.limit(g.value("memory.usage_in_bytes") + (128 << 20))
        # the file read in the group: its pages are charged there, up
        # to the limit, where the kernel reclaims the oldest
        subprocess.run(["cat", data], stdout=subprocess.DEVNULL,
                       preexec_fn=g.enter, check=True)
        stat = dict(ln.split() for ln in open(os.path.join(
            g.path, "memory.stat")))
        rc, out, err = memattach("heap", "-q", "-n", "3", t.pid,
                                 timeout=120)
        check(rc == 0 and "Census of" in out and not t.health(),
              "%s: a cgroup full of page cache: the census runs" % label,
              "exit %d, cache %s MiB, %s" % (
                  rc, int(stat["total_inactive_file"]) >> 20, err[-300:]))
        g.limit(-1)
    os.unlink(data)


# memattach as in a container whose memory cgroup is $1 (a host path):
# $2 = "bind": that cgroup bound over the memory hierarchy's mount point;
# $2 = "cgroupns": a cgroup namespace rooted there (made from inside it;
# memattach then goes back to its own cgroup, $3, not to be charged to
# the container's limit) and the hierarchy mounted afresh; then
# memattach heap $4
IN_CONTAINER = r'''
set -e
cg=$1 how=$2 own=$3 pid=$4
mnt=/sys/fs/cgroup/memory
if [ "$how" = bind ]; then
    mount --bind "$cg" "$mnt"
else
    echo $$ > "$mnt$own/cgroup.procs"
    umount "$mnt"
    mount -t cgroup -o memory memattach-test "$mnt"
fi
exec "$MEMATTACH" heap -q "$pid"
'''


def container_view(label, exe, tmp):
    """memattach in a container's view of the cgroups: the target in a
    cgroup under the container's, whose limit binds (40 MiB of room, a
    census needs 64): refused, exit 10, seen through a cgroup bound over
    /sys/fs/cgroup/memory and through a cgroup namespace.  Neither was:
    the first found the mount it hides (the path then names another
    cgroup, no limit read), the second never read the limit of the
    mount's root, the container's own cgroup (found by the namespaces
    probe)."""
    if not have_memcg("%s: a container's view" % label) or \
            not shutil.which("unshare"):
        return
    own = open("/proc/self/cgroup").read()
    own = re.search(r"^\d+:memory:(.*)$", own, re.M).group(1)
    with Memcg("heapview") as g:
        inner = Memcg.__new__(Memcg)
        inner.path = os.path.join(g.path, "inner")
        os.mkdir(inner.path)
        try:
            with KillTarget(exe, tmp, preexec_fn=inner.enter) as t:
                time.sleep(0.2)
                g.limit(g.value("memory.usage_in_bytes") + (40 << 20))
                for how in ("bind", "cgroupns"):
                    # a cgroup namespace is rooted where its maker is
                    ns = ["--cgroup"] if how == "cgroupns" else []
                    p = subprocess.run(
                        ["unshare", "--mount"] + ns +
                        ["sh", "-c", IN_CONTAINER, "sh", g.path, how, own,
                         str(t.pid)],
                        preexec_fn=g.enter if ns else None,
                        capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, MEMATTACH=MEMATTACH))
                    check(p.returncode == 10 and re.search(
                        r"memory cgroup / has \d+ MiB left below its limit",
                        p.stderr) and not children(t.pid),
                        "%s: seen through %s: the container's limit "
                        "binds, refused" % (label, how),
                        "exit %d %s" % (p.returncode, p.stderr[-300:]))
                g.limit(-1)
                check(not t.health(), "%s: the target well" % label)
        finally:
            for _ in range(50):
                try:
                    os.rmdir(inner.path)
                    break
                except OSError:
                    time.sleep(0.1)


def main():
    for i, (label, exe) in enumerate(interpreters()):
        tmp = tempfile.mkdtemp(prefix="memattach-heapoom-")
        # the cgroup's accounting is the kernel's: one interpreter
        for f in [run] + ([refused, stopped, oom_killed, cached,
                           container_view]
                          if not i else []):
            try:
                f(label, exe, tmp)
            except Exception as e:
                check(False, "%s: %s ran without error" % (label,
                                                          f.__name__),
                      repr(e))
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
