"""Tags in small blocks (docs/payload.md): in the default aggregated mode
the payload keeps a small Python block's entry inside the block, but only
where CPython's MEM and OBJ domains forward to its own pymalloc.  On every
interpreter, the same deterministic work (tests/targets/same_work.py) is
tracked in three processes: under pymalloc (`memattach -v` must say the
tags are on), under PYTHONMALLOC=malloc and under PYTHONMALLOC=debug (they
must be off: no pymalloc pool to hold a tag, or a debug hook in between),
and on 3.13 under PYTHONMALLOC=mimalloc too (off).  In every process the
work's figures must be the same: each line's allocations (count and bytes
asked for) and what is still live at the end, so that a tag changes
neither the sizes reported nor which blocks are found freed."""
import json
import os
import re
import tempfile

from ma_test import (TARGETS, Target, check, finish, interpreters,
                     report_json, tracked_round)

SCRIPT = os.path.join(TARGETS, "same_work.py")
TAGS = re.compile(r"small Python blocks' entries kept in the blocks "
                  r"\(pymalloc's\): (yes|no)")


def by_line(cap):
    """{line: (allocations, bytes, live count, live bytes)} of the work"""
    doc = report_json(cap, "--group", "line", "--top", "0")
    return {r["line"]: (r["total"]["count"], r["total"]["bytes"],
                        r["live"]["count"], r["live"]["bytes"])
            for r in doc["rows"] if r["file"] == SCRIPT}


def one(label, exe, allocator, tmp):
    """Track one round of the work under PYTHONMALLOC=allocator (None: the
    interpreter's default); (tags on, {line: figures}) or None"""
    env = dict(os.environ)
    env.pop("PYTHONMALLOC", None)
    if allocator:
        env["PYTHONMALLOC"] = allocator
    what = "%s: %s" % (label, allocator or "pymalloc")
    cap = os.path.join(tmp, "%s-%s.cap" % (label, allocator or "default"))
    with Target(exe, "same_work.py", env=env) as t:
        # one round untracked first, as test_modes does: CPython's free
        # lists are then filled alike in every process
        t.proc.stdin.write(b"go\n")
        t.proc.stdin.flush()
        check(t.readline(timeout=120) == "DONE",
              "%s: untracked round" % what)
        a = tracked_round(t, [], cap, label, allocator or "pymalloc",
                          verbose=True)
        t.proc.stdin.write(b"quit\n")
        t.proc.stdin.flush()
        if not a:
            return None
        m = TAGS.search(a.stderr)
        check(m is not None, "%s: -v says whether tags are on" % what,
              a.stderr[-2000:])
        check(t.alive() or t.proc.wait(timeout=10) == 0,
              "%s: the target ends well" % what)
    return (m is not None and m.group(1) == "yes"), by_line(cap)


def main():
    tmp = tempfile.mkdtemp(prefix="memattach-tags-")
    for label, exe in interpreters():
        allocators = [None, "malloc", "debug"]
        if "3.13" in label:
            allocators.append("mimalloc")
        runs = {}
        for alloc in allocators:
            r = one(label, exe, alloc, tmp)
            if r is not None:
                runs[alloc] = r
        if None not in runs:
            continue
        check(runs[None][0], "%s: pymalloc: tags on" % label)
        for alloc in allocators[1:]:
            if alloc not in runs:
                continue
            check(not runs[alloc][0], "%s: %s: tags off" % (label, alloc))
            base, other = runs[None][1], runs[alloc][1]
            diff = {ln: (base.get(ln), other.get(ln))
                    for ln in sorted(set(base) | set(other))
                    if base.get(ln) != other.get(ln)}
            check(len(base) >= 5 and not diff,
                  "%s: %s: every line of the work has the same "
                  "allocations and live figures as under pymalloc with "
                  "tags (%d lines)" % (label, alloc, len(base)),
                  json.dumps(diff))
    finish()


if __name__ == "__main__":
    main()
