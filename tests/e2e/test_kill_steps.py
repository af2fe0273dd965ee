"""memattach SIGKILLed at every step of attach, tracking and stop, on
purpose (hazard 5 of docs/architecture.md).

For each interpreter, a step log of a first attach (payload injected) and of
a second one (payload reused) lists the steps memattach passes
(attacher/base/teststep.h); then, for every step (and a spread of the passages
of steps passed many times: each system call of a remote call, each
thread seized or detached), an attach stops itself there, is SIGKILLed,
and the target (tests/targets/kill_target.py) must show that nothing
happened to it:
- it lives; its main thread, blocked in read() (the thread memattach
  hijacks for its remote calls), gets the line written to it, intact; its
  threads in select() and epoll_wait() get their datagrams; its threads
  allocate, sleep, and take SIGALRM every 10 ms;
- `memattach detach` then exits 0 and leaves no payload tracking and no
  memattach descriptor behind;
- the next attach reaches its step (it works), and a last full attach
  records allocations; the target then exits 0 when asked.
`memattach detach` itself is killed at each step of the remote close()
with which it removes the payload image an attach killed early left.
"""
import os

import kill_lib
from kill_lib import (KillTarget, StoppedAttach, each_interpreter, step_log,
                      unless_covered)
from ma_test import check, memattach, report_json

# Steps passed many times are killed at a spread of their passages
SPREAD = 5


def spread(ks):
    n = len(ks)
    if n <= SPREAD:
        return ks
    return sorted({ks[0], ks[1], ks[n // 2], ks[-2], ks[-1]})


def variable(name):
    return kill_lib.variable(name, ("stop.drain", "track.sample"))


def plan(log):
    """[(name, k)] to kill at, in the order memattach passes them."""
    by = {}
    for name, k in log:
        by.setdefault(name, []).append(k)
    keep = {(name, k) for name, ks in by.items() for k in spread(ks)}
    return [s for s in log if s in keep]


def payload_mapped(pid):
    try:
        with open("/proc/%d/maps" % pid) as f:
            return "memattach-payload" in f.read()
    except OSError:
        return False


def memattach_fds(pid):
    """The target's descriptors that memattach made: the payload image's
    memfd, the ring's memfd."""
    out = []
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            link = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        if "memattach-" in link:
            out.append(link)
    return out


def kill_round(label, exe, t, tmp, name, k, failures):
    step = "%s#%d" % (name, k)
    a = StoppedAttach(t.pid, os.path.join(tmp, "k.cap"), step, "-d", 0.5)
    stopped = a.wait_stopped()
    err = a.kill()
    if not stopped:
        # How often some steps are passed varies from run to run (signals
        # during a remote call add system calls and signal steps, the
        # drain takes as many turns as the backlog needs): a later passage
        # of such a step that this run did not reach, or a signal that did
        # not come, in an attach that ended well, is not a failure
        if variable(name) and (k > 1 or name.endswith(".signal")) and \
                a.proc.returncode == 0:
            return "unreached"
        failures.append("%s: memattach never reached the step: %s" %
                        (step, err.strip().splitlines()[-1:]))
        return
    bad = t.health()
    if bad:
        failures.append("%s: after the kill: %s" % (step, bad))
        return
    rc, out, derr = memattach("detach", t.pid, timeout=60)
    if rc != 0:
        failures.append("%s: detach exit %d: %s" % (step, rc, derr.strip()))
        return
    left = memattach_fds(t.pid)
    if "now tracking" in out or "now stopping" in out or left:
        failures.append("%s: detach left %s" % (step, left or out.strip()))
        return
    bad = t.echo()
    if bad:
        failures.append("%s: after detach: %s" % (step, bad))


def detach_kills(label, exe, tmp):
    """detach killed while it closes a leftover payload memfd: each round
    first leaves one (an attach killed while writing the image)."""
    failures = []
    steps = ("rcall.close.regs-saved", "rcall.close.frame-written",
             "rcall.close.committed", "rcall.close.syscall-entry",
             "rcall.close.syscall-exit", "rcall.close.sigreturn",
             "rcall.close.returned", "thaw.detached")
    with KillTarget(exe, tmp) as t:
        for step in steps:
            a = StoppedAttach(t.pid, os.path.join(tmp, "d.cap"),
                              "inject.memfd-write#1")
            ok = a.wait_stopped()
            a.kill()
            if not ok or not memattach_fds(t.pid):
                failures.append("%s: no leftover memfd to close" % step)
                continue
            d = StoppedAttach(t.pid, None, step + "#1", cmd=["detach"])
            ok = d.wait_stopped()
            err = d.kill()
            if not ok:
                failures.append("%s: detach never reached it: %s" % (
                    step, err.strip()[-300:]))
                continue
            bad = t.health()
            if bad:
                failures.append("%s: after the kill: %s" % (step, bad))
                break
        rc, out, err = memattach("detach", t.pid, timeout=60)
        left = memattach_fds(t.pid)
        check(not failures and rc == 0 and not left and not t.echo(),
              "%s: detach killed at each of %d steps of its remote close(); "
              "a last detach cleans up" % (label, len(steps)),
              "\n".join(failures) + "\n%s %s %s" % (rc, left, err))


def run(label, exe, tmp):
    cap = os.path.join(tmp, "log.cap")
    with KillTarget(exe, tmp) as t:
        first, p1 = step_log(t.pid, cap, "-d", 0.5)
        second, p2 = step_log(t.pid, cap, "-d", 0.5)
        ok = check(p1.returncode == 0 and p2.returncode == 0 and first and
                   second, "%s: step logs of a first and a second attach"
                   % label, p1.stderr[-400:] + p2.stderr[-400:])
        check(not t.health(), "%s: target well after them" % label)
    if not ok:
        return
    names = {n for n, _ in first} | {n for n, _ in second}
    for want in ("freeze.seized", "rcall.memfd_create.committed",
                 "inject.memfd-write", "rcall.dlopen.syscall-entry",
                 "rcall.ma_start.syscall-entry", "rcall.ma_start.sigreturn",
                 "thaw.detached", "inject.ring-mapped", "track.sample",
                 "stop.requested", "stop.drain", "stop.capture-closed"):
        check(want in names, "%s: step %s is passed" % (label, want))
    # A first attach up to its ma_start needs a process without the
    # payload; the rest of it, and every step of a second attach, reuse one
    fresh_part = []
    for s in first:
        fresh_part.append(s)
        if s[0].startswith("rcall.ma_start."):
            last_fresh = len(fresh_part)
    fresh_steps = plan(fresh_part[:last_fresh])
    reuse_steps = plan(second)
    failures, unreached = [], []
    t = None
    try:
        for name, k in fresh_steps:
            if t is None or payload_mapped(t.pid):
                if t:
                    t.kill()
                t = KillTarget(exe, tmp)
            if kill_round(label, exe, t, tmp, name, k, failures):
                unreached.append("%s#%d" % (name, k))
        check(not failures, "%s: memattach killed at each of %d steps of "
              "a first attach" % (label, len(fresh_steps)), "\n".join(
                  failures))
        t.kill()
        failures = []
        t = KillTarget(exe, tmp)
        for name, k in reuse_steps:
            if kill_round(label, exe, t, tmp, name, k, failures):
                unreached.append("%s#%d" % (name, k))
        print("     (%s: %d passages of variable steps not reached this "
              "time: %s)" % (label, len(unreached), " ".join(unreached)))
        check(not failures, "%s: memattach killed at each of %d steps of "
              "an attach that reuses the payload" % (label,
                                                     len(reuse_steps)),
              "\n".join(failures))
        out = os.path.join(tmp, "last.cap")
        rc, _, err = memattach("attach", "--quiet", "-d", 0.5, "-o", out,
                               t.pid)
        check(rc == 0 and report_json(out, "--view", "total")["totals"][
            "allocations"] > 1000, "%s: a full attach works after all of them"
              % label, err)
        check(not t.health(), "%s: target well at the end" % label)
        code = t.quit()
        check(code == 0, "%s: target exits 0 when asked" % label, code)
    finally:
        if t:
            t.kill()


def main():
    # one interpreter per frame layout (kill_lib.COVERED)
    each_interpreter("memattach-kill-", unless_covered(run),
                     unless_covered(detach_kills))


if __name__ == "__main__":
    main()
