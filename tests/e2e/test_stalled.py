"""memattach stalled while it tracks (stopped, starved of CPU): after a
second without its heartbeat the payload ends the session by itself
(docs/payload.md), and memattach, once it runs again, says why in the
payload's own words ("payload stopped: consumer gone (no heartbeat for N
ms)"), writes a readable capture of what came before and leaves the target
running, untracked.  SIGSTOP stands for the stall: 2.5 s, well past the
1 s limit, so that the test does not depend on timing."""
import os
import signal
import tempfile
import time

from ma_test import Attach, Target, check, finish, interpreters, report_json


def run(label, exe, tmp):
    cap = os.path.join(tmp, label + ".cap")
    with Target(exe, "churn.py", 1) as t:
        t.readline()
        a = Attach(t.pid, "-d", "30", output=cap)
        if not check(a.wait_attached(), "%s: attached" % label, a.stderr):
            a.stop()
            return
        time.sleep(0.5)
        a.proc.send_signal(signal.SIGSTOP)
        time.sleep(2.5)
        a.proc.send_signal(signal.SIGCONT)
        rc = a.wait(timeout=30)
        check(rc == 0 and "payload stopped: consumer gone (no heartbeat for"
              in a.stderr,
              "%s: the session ended by the payload, memattach says why" %
              label, "exit %s\n%s" % (rc, a.stderr))
        try:
            doc = report_json(cap)
            ok = doc["totals"]["allocations"] > 0
        except Exception as e:
            doc, ok = repr(e), False
        check(ok, "%s: the capture reads, with what came before" % label,
              str(doc)[:500])
        check(t.alive(), "%s: target still running" % label)


def main():
    tmp = tempfile.mkdtemp(prefix="memattach-stalled-")
    for label, exe in interpreters(minors=[12]):
        run(label, exe, tmp)
    finish()


if __name__ == "__main__":
    main()
