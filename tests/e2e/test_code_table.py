"""A program that makes more code objects than the payload's code table
holds (64 Ki, filled to 3/4): the allocations past it are counted with a
shorter stack (the deepest one known: here <no Python frame>), and the
summary, `report` and its JSON (`shortened_stacks`) say how many.  Before,
the payload counted them (STATS) and nothing showed it: a third of the
work's allocations were silently under <no Python frame>.  --every-event
(the aggregated mode's key table fills too, and says so on its own); one
interpreter is enough (the table is the payload's)."""
import os
import tempfile

from ma_test import (Attach, Target, check, finish, interpreters, memattach,
                     report_json)


def main():
    label, exe = interpreters(announce=False)[0]
    with tempfile.TemporaryDirectory() as tmp, \
            Target(exe, "many_codes.py") as t:
        cap = os.path.join(tmp, "codes.cap")
        a = Attach(t.pid, "--every-event", output=cap)
        if not check(a.wait_attached(), "%s: attached" % label, a.stderr):
            a.stop()
            return
        t.proc.stdin.write(b"go\n")
        t.proc.stdin.flush()
        done = t.readline(timeout=300)
        rc = a.stop(timeout=300)
        check(done == "DONE" and rc == 0, "%s: tracked the work" % label,
              "%r exit %d: %s" % (done, rc, a.stderr[-2000:]))
        want = "counted with a shorter stack"
        check(want in a.stdout.replace("\n  ", " ") or
              want in a.stderr.replace("\n  ", " "),
              "%s: the summary says allocations lost their stack" % label,
              a.stdout[-3000:] + a.stderr[-2000:])
        rc, out, err = memattach("report", cap)
        check(rc == 0 and want in out.replace("\n  ", " "),
              "%s: report says allocations lost their stack" % label,
              out[-2000:] + err)
        doc = report_json(cap)
        n = doc["totals"].get("shortened_stacks", 0)
        # 30,000 calls, each 2 allocations or more, 60,000 codes for a
        # table of 49,152: several thousand at least
        check(n >= 5000, "%s: JSON shortened_stacks counts them (%d)" %
              (label, n), str(doc["totals"]))


if __name__ == "__main__":
    main()
    finish()
