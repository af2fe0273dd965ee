"""memattach SIGKILLed (and reaped by its parent, as a shell does at once)
while the remote call that starts the session is committed but not yet
run: the hijacked thread, let go by the kernel, runs ma_start alone, and
the session's watchdog finds no attacher to open a pidfd of.  The payload
must end that session at once ("its memattach went away"), as it does for
a memattach killed a moment later: it used to wait for a first heartbeat
that could not come, 5 s with its hooks on and nobody reading (the target
at half its speed or less, a ring filling up) while a new attach was
refused as busy, "killed less than a second ago".
"""
import tempfile
import time

from kill_lib import StoppedAttach
from ma_test import Target, check, finish, interpreters, memattach

STEP = "rcall.ma_start.committed"


def payload_state(pid):
    rc, out, _ = memattach("info", pid)
    for line in out.splitlines():
        if line.startswith("payload:"):
            return line
    return ""


def run(label, exe, tmp):
    with Target(exe, "churn.py", 1) as t:
        # the payload loaded by a first attach: the killed one reuses it
        rc, _, err = memattach("attach", "-q", "-d", "0.3", "-o",
                               "%s/first.cap" % tmp, t.pid)
        check(rc == 0, "%s: a first attach" % label, err)
        a = StoppedAttach(t.pid, "%s/killed.cap" % tmp, STEP)
        if not check(a.wait_stopped(), "%s: stopped at %s" % (label, STEP)):
            a.kill()
            return
        a.kill()  # and reaped: communicate() waits for it
        end = time.time() + 1.5
        state = payload_state(t.pid)
        while "tracking" in state and time.time() < end:
            time.sleep(0.05)
            state = payload_state(t.pid)
        check("dormant" in state,
              "%s: memattach killed before the session started: the "
              "payload stops it within 1.5 s, not after the first "
              "heartbeat's 5 s" % label, state)
        rc, _, err = memattach("attach", "-q", "-d", "0.3", "-o",
                               "%s/next.cap" % tmp, t.pid)
        check(rc == 0, "%s: the next attach works at once" % label, err)
        check(t.alive(), "%s: target running" % label)


def main():
    for label, exe in interpreters():
        with tempfile.TemporaryDirectory(prefix="ma-killst-") as tmp:
            run(label, exe, tmp)


main()
finish()
