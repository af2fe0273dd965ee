"""Generators, coroutines and closure cells are charged to the line that
asked for them (tests/targets/gen_objects.py), on every interpreter.

From 3.11 such an object is made while the frame of the generator function
(or of the function owning the cell) is already linked in but incomplete:
it runs RETURN_GENERATOR or MAKE_CELL, before its first RESUME
(_co_firsttraceable).  CPython hides such a frame (tracebacks,
sys._getframe, tracemalloc); memattach took only a frame whose
instruction pointer is before its first instruction for incomplete, and
charged every generator and coroutine to the generator function's `def`
line (3.10 and older charge the call site: the object is made before the
frame runs).  Each site keeps N objects: the site's line must hold at
least N blocks, the `def` line none."""
import os
import tempfile

from ma_test import (TARGETS, Target, check, finish, interpreters, marks,
                     memattach, report_json, row_at, tracked_round)

SCRIPT = os.path.join(TARGETS, "gen_objects.py")
N = 20000


def main():
    m = marks(SCRIPT)
    tmp = tempfile.mkdtemp(prefix="ma-gen-sites-")
    for label, exe in interpreters():
        cap = os.path.join(tmp, "%s.cap" % label)
        with Target(exe, "gen_objects.py") as t:
            a = tracked_round(t, [], cap, label, "aggregated")
            if a is None:
                continue
        doc = report_json(cap, "--view", "live", "--group", "line",
                          "--top", "0")
        for kind in ("gen", "coro", "closure"):
            site = row_at(doc, SCRIPT, m[kind + "_site"])
            dfn = row_at(doc, SCRIPT, m[kind + "_def"])
            n = site["live"]["count"] if site else 0
            check(n >= N, "%s: %s objects charged to their call site "
                  "(line %d)" % (label, kind, m[kind + "_site"]),
                  "%d blocks live there; def line: %r" %
                  (n, dfn and dfn["live"]))
            check(dfn is None or dfn["live"]["count"] < N // 100,
                  "%s: not to the def line of %s (line %d)" %
                  (label, kind, m[kind + "_def"]), repr(dfn and dfn["live"]))
        rc, out, err = memattach("report", "-f", "collapsed", "--group",
                                 "stack", "--view", "live", cap)
        alloc = "gen_objects.py:%d)" % m["init_alloc"]
        stacks = [l.rsplit(" ", 1)[0] for l in out.splitlines()
                  if alloc in l]
        frames = [s.split(";") for s in stacks]
        good = [f for f in frames if len(f) >= 2 and
                f[-2].endswith("gen_objects.py:%d)" % m["init_site"]) and
                f[-1].split(" (")[0] in ("Kept.__init__", "__init__") and
                f[-1].endswith(alloc)]
        check(rc == 0 and stacks and len(good) == len(frames),
              "%s: __init__'s blocks under the line that called the class, "
              "no frame between" % label, stacks[:3] or (rc, err))
    finish()


if __name__ == "__main__":
    main()
