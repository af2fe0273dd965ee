"""memattach stalled while it tracks (stopped): after a
second without its heartbeat the payload ends the session by itself
(docs/payload.md), and memattach, once it runs again, says why in the
payload's own words ("payload stopped: consumer gone (no heartbeat for N
ms)") and that tracking ended early, writes a readable capture of what
came before, exits 8 (partial: it was 0) and leaves the target running,
untracked.  SIGSTOP stands for the stall: 2.5 s, well past the
1 s limit, so that the test does not depend on timing.

And memattach frozen whole for 3 s (a cgroup freezer: state D, as when it
pages itself back in on a host that thrashes): alive and wanting to run,
it gets 10 s, and the session goes on to its end, exit 0.

And the target stopped (SIGSTOP) while tracked: its payload cannot run to
confirm the end, so memattach ends at the duration without waiting for it,
says the target is stopped (state T, not "running") and how to resume it,
exits 8 (incomplete), and leaves it stopped; once its owner resumes it the
payload ends the session by itself and a new attach works.

And the target held by a debugger while tracked (every thread in a
tracing stop, state t, as `gdb -p` leaves it): the same, the tracer named
(it used to wait 3 s, then say "did not confirm its stop" and "target
running").

And a stall with the ring full (--every-event, a 1 MiB ring): the payload
drops records, and its last STATS record too when the stall outlasts the
second it waits for room; the summary's "lost records" must still be what
the ring counted (it said 0, and no warning, beside the line that said
millions were dropped)."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from ma_test import (Attach, Target, check, finish, interpreters, report_json,
                     skip)


def stalled(t, cap, seconds, what, *args):
    """An attach of t (30 s) that is stopped (SIGSTOP) half a second in,
    for that many seconds, then let run to its end: (the attach, its exit
    code), or (None, None) when it did not attach"""
    a = Attach(t.pid, "-d", "30", *args, output=cap)
    if not check(a.wait_attached(), what, a.stderr):
        a.stop()
        return None, None
    time.sleep(0.5)
    a.proc.send_signal(signal.SIGSTOP)
    time.sleep(seconds)
    a.proc.send_signal(signal.SIGCONT)
    return a, a.wait(timeout=30)


def run(label, exe, tmp):
    cap = os.path.join(tmp, label + ".cap")
    with Target(exe, "churn.py", 1) as t:
        t.readline()
        a, rc = stalled(t, cap, 2.5, "%s: attached" % label)
        if not a:
            return
        # exit 8 and why: the capture lacks the session's end (it was
        # exit 0, the summary's duration reading as tracked throughout)
        check(rc == 8 and "payload stopped: consumer gone (no heartbeat for"
              in a.stderr and "tracking ended early: memattach itself did "
              "not run" in a.stderr,
              "%s: the session ended by the payload, memattach says why, "
              "exit 8" % label, "exit %s\n%s" % (rc, a.stderr))
        try:
            doc = report_json(cap)
            ok = doc["totals"]["allocations"] > 0
            # the capture says it is not complete (it read as complete,
            # the report exit 0 with no note, though the attach exit 8)
            done = doc["complete"]
        except Exception as e:
            doc, ok, done = repr(e), False, None
        check(ok, "%s: the capture reads, with what came before" % label,
              str(doc)[:500])
        check(done is False, "%s: the capture is not complete" % label,
              "complete: %s" % done)
        check(t.alive(), "%s: target still running" % label)


def stalled_full_ring(label, exe, tmp):
    cap = os.path.join(tmp, label + "-full.cap")
    with Target(exe, "churn.py", 1) as t:
        t.readline()
        a, rc = stalled(t, cap, 3.0, "%s: full ring: attached" % label,
                        "--every-event", "--ring-size", "1")
        if not a:
            return
        dropped = re.search(r"(\d+) records were dropped", a.stderr)
        summary = re.search(r"lost records: ([^;]+);", a.stdout)
        dropped = int(dropped.group(1)) if dropped else 0
        try:
            doc = report_json(cap)
            lost = doc["totals"]["lost_records"]
        except Exception as e:
            lost = repr(e)
        # what holds more (it said "try --ring-size", whatever the size
        # and the mode)
        check("stayed full (a larger --ring-size holds more: this one had "
              "1 MiB, up to 4096; without --every-event far fewer records "
              "cross it)" in a.stderr,
              "%s: a stall with the ring full: memattach says what holds "
              "more" % label, a.stderr)
        # exit 8: the figures miss what was dropped (it was 0)
        check(rc == 8 and dropped > 0 and lost == dropped and summary and
              summary.group(1) != "0" and "warning: %d records lost" %
              dropped in a.stdout.replace("\n", " "),
              "%s: a stall with the ring full: the summary counts the %d "
              "records the ring dropped, as the report does (%s), with "
              "its warning, exit 8" % (label, dropped, lost),
              "exit %s\n%s\n%s" % (rc, a.stdout[:600], a.stderr))


def attaches_again(t, cap, what):
    """A target let run again: its watchdog ends the old session within a
    tick or so (until then an attach is refused as busy, 9), then a new
    attach works"""
    for _ in range(10):
        time.sleep(0.3)
        a = Attach(t.pid, "-d", "1", output=cap)
        rc = a.wait(timeout=30)
        if rc != 9:
            break
    check(rc == 0 and "target running" in a.stderr and t.alive(), what,
          "exit %s\n%s" % (rc, a.stderr))


def state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def target_stopped(label, exe, tmp):
    cap = os.path.join(tmp, label + "-tstop.cap")
    with Target(exe, "churn.py", 1) as t:
        t0 = time.time()
        a = Attach(t.pid, "-d", "2", output=cap)
        if not check(a.wait_attached(), "%s: target stop: attached" % label,
                     a.stderr):
            a.stop()
            return
        time.sleep(0.5)
        os.kill(t.pid, signal.SIGSTOP)
        rc = a.wait(timeout=30)
        took = time.time() - t0
        end = [l for l in a.stderr.splitlines() if " after " in l]
        # the duration and the attach; it used to wait 3 s more for the
        # payload, then say "target running"
        check(rc == 8 and end and
              "target stopped by a signal (state T)" in end[0] and
              "target running" not in a.stderr and
              "'kill -CONT %d'" % t.pid in a.stderr and took < 4.0,
              "%s: target stopped while tracked: said so at the end, how "
              "to resume it, no wait for its payload, exit 8" % label,
              "exit %s after %.1f s\n%s" % (rc, took, a.stderr))
        check(state(t.pid) == "T", "%s: the target is left stopped" % label,
              state(t.pid))
        try:
            doc = report_json(cap)
            ok = doc["totals"]["allocations"] > 0
        except Exception as e:
            doc, ok = repr(e), False
        check(ok, "%s: its capture reads, with what came before the stop" %
              label, str(doc)[:500])
        os.kill(t.pid, signal.SIGCONT)
        attaches_again(t, cap, "%s: resumed by its owner, it runs and "
                       "takes a new attach" % label)


# Holds every thread of argv[1] in a tracing stop, as gdb -p does (ptrace
# seize and interrupt), prints HELD, and lets them go when stdin closes
HOLDER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p,
                        ctypes.c_void_p]
pid, held = int(sys.argv[1]), set()
while True:
    tids = set(int(t) for t in os.listdir("/proc/%d/task" % pid)) - held
    if not tids:
        break
    for tid in tids:
        if libc.ptrace(0x4206, tid, None, None) == 0:  # PTRACE_SEIZE
            libc.ptrace(0x4207, tid, None, None)  # PTRACE_INTERRUPT
            os.waitpid(tid, 0x40000000)  # __WALL
        held.add(tid)
print("HELD", flush=True)
sys.stdin.read()
for tid in held:
    libc.ptrace(17, tid, None, None)  # PTRACE_DETACH
"""


def target_held(label, exe, tmp):
    cap = os.path.join(tmp, label + "-held.cap")
    with Target(exe, "churn.py", 1) as t:
        a = Attach(t.pid, "-d", "2", output=cap)
        if not check(a.wait_attached(), "%s: tracer's stop: attached" %
                     label, a.stderr):
            a.stop()
            return
        time.sleep(0.5)
        h = subprocess.Popen([sys.executable, "-c", HOLDER, str(t.pid)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            held = h.stdout.readline().strip() == b"HELD"
            rc = a.wait(timeout=30)
            end = [l for l in a.stderr.splitlines() if " after " in l]
            check(held and rc == 8 and end and
                  "target held stopped by its tracer %d" % h.pid in end[0]
                  and "held stopped by its tracer %d" % h.pid in a.stderr
                  and "target running" not in a.stderr,
                  "%s: target held by a tracer while tracked: the tracer "
                  "named at the end, not 'target running', exit 8" % label,
                  "held %s, exit %s\n%s" % (held, rc, a.stderr))
        finally:
            h.stdin.close()
            h.wait(timeout=30)
        attaches_again(t, cap, "%s: let go by its tracer, it runs and "
                       "takes a new attach" % label)


def slow_write(label, exe, tmp):
    """memattach's loop held up 1.8 s in one write of its capture (a disk
    throttled under writeback), its other threads running: strace injects
    the delay into its main thread alone.  The session goes on to its end,
    exit 0: the heartbeat thread beats while the loop ran less than 5 s
    ago.  It was ended by the payload ("no heartbeat for 1042 ms"), exit
    8.  A memattach stopped whole (run() above) still loses its session
    within a second."""
    if not shutil.which("strace"):
        skip("a slow capture write", "needs strace(1)")
        return
    cap = os.path.join(tmp, label + "-slow.cap")
    with Target(exe, "churn.py", 1) as t:
        t.readline()
        a = Attach(t.pid, "-d", "5", output=cap)
        if not check(a.wait_attached(), "%s: slow write: attached" % label,
                     a.stderr):
            a.stop()
            return
        time.sleep(1.0)
        st = subprocess.Popen(["strace", "-qq", "-o", "/dev/null", "-p",
                               str(a.proc.pid), "-e", "trace=write", "-e",
                               "inject=write:delay_enter=1800000:when=1"])
        rc = a.wait(timeout=60)
        st.kill()
        st.wait()
        check(rc == 0 and "duration reached" in a.stderr and
              "no heartbeat" not in a.stderr,
              "%s: a capture write held up 1.8 s: the session goes on to "
              "its end, exit 0" % label, "exit %s\n%s" % (rc, a.stderr))


FREEZER = "/sys/fs/cgroup/freezer"


def frozen(label, exe, tmp):
    """memattach frozen whole for 3 s (a cgroup freezer: every thread in
    uninterruptible sleep, state D, as a memattach paging itself back in on
    a host that thrashes), then thawed.  The payload sees a memattach
    alive that wants to run, not one stopped: it waits up to 10 s for its
    heartbeat, and the session goes on to its end, exit 0.  It was ended
    after 1 s ("no heartbeat for 1042 ms"), exit 8, on exactly the host
    where the memory problem is.  Stopped (T, run() above), it still
    is."""
    if not os.path.isdir(FREEZER) or os.geteuid() != 0:
        skip("memattach frozen", "needs root and the cgroup v1 freezer "
             "at %s" % FREEZER)
        return
    group = os.path.join(FREEZER, "memattach-test-%d" % os.getpid())
    os.makedirs(group, exist_ok=True)
    cap = os.path.join(tmp, label + "-frozen.cap")
    try:
        with Target(exe, "churn.py", 1) as t:
            t.readline()
            a = Attach(t.pid, "-d", "6", output=cap)
            if not check(a.wait_attached(), "%s: frozen: attached" % label,
                         a.stderr):
                a.stop()
                return
            time.sleep(1.0)
            with open(os.path.join(group, "cgroup.procs"), "w") as f:
                f.write(str(a.proc.pid))
            with open(os.path.join(group, "freezer.state"), "w") as f:
                f.write("FROZEN")
            time.sleep(0.5)
            st = state(a.proc.pid)
            time.sleep(2.5)
            with open(os.path.join(group, "freezer.state"), "w") as f:
                f.write("THAWED")
            rc = a.wait(timeout=60)
            check(st == "D", "%s: frozen: memattach was in state D" % label,
                  st)
            check(rc == 0 and "duration reached" in a.stderr and
                  "no heartbeat" not in a.stderr,
                  "%s: memattach frozen 3 s: the session goes on to its "
                  "end, exit 0" % label, "exit %s\n%s" % (rc, a.stderr))
            try:
                doc = report_json(cap)
                ok = doc["complete"] and doc["totals"]["allocations"] > 0
            except Exception as e:
                doc, ok = repr(e), False
            check(ok, "%s: frozen: the capture is complete" % label,
                  str(doc)[:300])
            check(t.alive(), "%s: frozen: target still running" % label)
    finally:
        try:
            with open(os.path.join(group, "freezer.state"), "w") as f:
                f.write("THAWED")
            with open(os.path.join(group, "cgroup.procs")) as f:
                for pid in f.read().split():
                    with open(os.path.join(FREEZER, "cgroup.procs"),
                              "w") as g:
                        g.write(pid)
            os.rmdir(group)
        except OSError:
            pass


def main():
    tmp = tempfile.mkdtemp(prefix="memattach-stalled-")
    for label, exe in interpreters(minors=[12]):
        run(label, exe, tmp)
        frozen(label, exe, tmp)
        slow_write(label, exe, tmp)
        target_stopped(label, exe, tmp)
        target_held(label, exe, tmp)
        stalled_full_ring(label, exe, tmp)
    finish()


if __name__ == "__main__":
    main()
