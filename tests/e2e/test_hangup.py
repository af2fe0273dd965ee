"""SIGHUP to a tracking `memattach attach` (its terminal closed: an ssh
session gone) ends the tracking as Ctrl-C does: exit 0, "interrupted", the
summary printed and the capture complete, the target running untracked.
It used to kill memattach outright (exit 129): no summary, a capture cut
short (report exit 8), while the heap census and the live view already
took SIGHUP as Ctrl-C.  Under nohup (SIGHUP ignored) it stays ignored:
the tracking goes on until Ctrl-C."""
import os
import signal
import subprocess
import tempfile
import time

from ma_test import Attach, Target, check, finish, interpreters, memattach


def run(label, exe, tmp):
    cap = os.path.join(tmp, "hup.cap")
    with Target(exe, "churn.py", 1) as t:
        t.readline()
        a = Attach(t.pid, output=cap)
        if not check(a.wait_attached(), "%s: attached" % label, a.stderr):
            a.stop()
            return
        time.sleep(0.5)
        rc = a.stop(sig=signal.SIGHUP)
        check(rc == 0 and "(interrupted)" in a.stderr and
              "Still live:" in a.stdout,
              "%s: SIGHUP ends the tracking as Ctrl-C: exit 0, the "
              "summary" % label, "exit %s\n%s" % (rc, a.stderr[-600:]))
        rc, out, err = memattach("report", cap)
        check(rc == 0 and "complete" in out.splitlines()[0],
              "%s: SIGHUP: the capture is complete" % label,
              "exit %s\n%s%s" % (rc, out[:300], err))
        rc, out, _ = memattach("info", t.pid)
        check(t.alive() and "tracking now" not in out,
              "%s: SIGHUP: the target runs on, untracked" % label, out)

        # nohup: SIGHUP ignored before memattach starts stays ignored
        old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            a = Attach(t.pid, output=cap)
        finally:
            signal.signal(signal.SIGHUP, old)
        if not check(a.wait_attached(), "%s: nohup: attached" % label,
                     a.stderr):
            a.stop()
            return
        a.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        check(a.proc.poll() is None,
              "%s: nohup: SIGHUP ignored, the tracking goes on" % label)
        rc = a.stop()
        check(rc == 0, "%s: nohup: Ctrl-C then ends it" % label,
              "exit %s\n%s" % (rc, a.stderr[-400:]))


def main():
    for label, exe in interpreters():
        with tempfile.TemporaryDirectory(prefix="ma-hup-") as tmp:
            run(label, exe, tmp)


main()
finish()
