"""memattach against CPython's tracemalloc, on code we did not write.

tests/targets/stdlib_work.py runs standard-library work (ast.parse of
library sources, a JSON and an XML round trip, e-mail parsing, CSV, difflib,
textwrap, re; a worker thread beside the main thread) while tracemalloc
traces it and memattach tracks it; then tracemalloc's snapshot gives the
live bytes and blocks per line, and memattach's capture gives its own
(`report --group line --view live`).  The two count the same allocator
calls from two different hooks, so on every line that holds 1% or more of
the live bytes (by either tool) they must agree within TOL, and their sums
over the lines of the work within SUM_TOL.  Both orders of the hooks are
run: tracemalloc's installed before the attach (memattach's wrappers call
tracemalloc's: the figures must agree) and after it (tracemalloc's call
memattach's, which then see tracemalloc's own records too and stay in its
chain when the session ends: memattach's figures must be tracemalloc's or
more).  Every interpreter, the default (aggregated) mode;
`--every-event` on the first one.

Why not equal: CPython's free lists (tuples, lists, dicts, floats, ...)
serve new objects from freed ones without an allocator call, and
tracemalloc re-charges such a block to the line that reuses it, where
memattach keeps it on the line whose allocator call made it
(docs/limits.md); and tracemalloc's own tables are memory malloc gives out
at the line being traced, which memattach counts (tracemalloc does not).
The work imports everything before the attach and runs once untracked,
so that neither effect reaches much of the large lines (measured: within
0.62% of each other there, the sums within 0.13%, on all seven
interpreters: docs/performance.md, "Checked against tracemalloc")."""
import ast
import os
import tempfile

from ma_test import (TARGETS, Target, check, finish, interpreters,
                     report_json, tracked_round)

SCRIPT = os.path.join(TARGETS, "stdlib_work.py")
BIG = 0.01      # a line holding this share of the live bytes is compared
TOL = 0.02      # relative difference allowed on such a line
SUM_TOL = 0.01  # relative difference allowed on the sum of the work's lines
MIN_BIG = 6     # lines that must be compared (the work has 7 to 9)


def harness_lines(path):
    """(path, line) of a work script's lines that are not the work: its
    report, main and module level (tracemalloc's snapshot, the file it
    writes, the collector's calls)"""
    with open(path) as f:
        tree = ast.parse(f.read())
    out = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and \
                node.name not in ("report", "main"):
            continue
        out.update((path, n) for n in range(node.lineno, node.end_lineno + 1))
    return out


def set_script(path):
    """The work script compared (bench/oracle.py takes others): its own
    harness lines and stdlib_work.py's (which other scripts import) are
    not the work"""
    global SCRIPT, HARNESS
    SCRIPT = path
    HARNESS = harness_lines(path) | harness_lines(
        os.path.join(TARGETS, "stdlib_work.py"))


set_script(SCRIPT)


def of_work(key):
    path, _, line = key.rpartition(":")
    if os.path.basename(path) == "tracemalloc.py":
        return False
    return (path, int(line)) not in HARNESS


def tracemalloc_lines(path):
    out = {}
    with open(path) as f:
        for row in f:
            key, size, count = row.rsplit(" ", 2)
            out[key] = (int(size), int(count))
    return out


def memattach_lines(cap):
    doc = report_json(cap, "--group", "line", "--top", "0", "--view", "live")
    out = {}
    for r in doc["rows"]:
        # a row is a function's line: a comprehension's line is also its
        # function's (3.8-3.11: two code objects), and tracemalloc counts
        # the two as one
        key = "%s:%d" % (r["file"], r["line"])
        b, c = out.get(key, (0, 0))
        out[key] = (b + r["live"]["bytes"], c + r["live"]["count"])
    return out


def compare(label, tm, ma, under):
    """under: tracemalloc's hooks are on top of memattach's.  Its own
    records of the blocks it traces are then allocations memattach sees
    (on 3.9-3.13 one of 16 bytes or more per block, on the block's line),
    and the frees of some of them are made inside the free of a traced
    block, under memattach's wrapper, where memattach does not look
    (docs/limits.md): memattach's figures are then tracemalloc's at least,
    not equal"""
    keys = [k for k in set(tm) | set(ma) if of_work(k)]
    zero = (0, 0)
    tsum = sum(tm.get(k, zero)[0] for k in keys)
    msum = sum(ma.get(k, zero)[0] for k in keys)
    big = sorted((k for k in keys
                  if tm.get(k, zero)[0] >= BIG * tsum or
                  (not under and ma.get(k, zero)[0] >= BIG * tsum)),
                 key=lambda k: -tm.get(k, zero)[0])
    rows, worst, worst_n = [], 0.0, 0.0
    for k in big:
        (tb, tc), (mb, mc) = tm.get(k, zero), ma.get(k, zero)
        d, dn = (mb - tb) / max(tb, 1), (mc - tc) / max(tc, 1)
        if under:
            d, dn = min(d, 0.0), min(dn, 0.0)
        worst = max(worst, abs(d))
        worst_n = max(worst_n, abs(dn))
        rows.append("%-58s tracemalloc %9d %7d  memattach %9d %7d" %
                    (k[-58:], tb, tc, mb, mc))
    table = "\n".join(rows)
    check(len(big) >= MIN_BIG, "%s: %d lines hold 1%% or more of the "
          "work's %d live bytes (at least %d)" % (label, len(big), tsum,
                                                  MIN_BIG), table)
    check(worst <= TOL and worst_n <= TOL,
          "%s: on each of them memattach's live bytes and blocks are "
          "tracemalloc's%s within %.0f%% (worst %.3f%% and %.3f%%)" %
          (label, " or more" if under else "", 100 * TOL, 100 * worst,
           100 * worst_n), table)
    if under:
        check(msum >= (1 - SUM_TOL) * tsum,
              "%s: the sum over the work's lines is tracemalloc's or more "
              "(tracemalloc %d, memattach %d)" % (label, tsum, msum))
    else:
        check(tsum and abs(msum - tsum) <= SUM_TOL * tsum,
              "%s: the sums over the work's lines agree within %.0f%% "
              "(tracemalloc %d, memattach %d: %+.3f%%)" %
              (label, 100 * SUM_TOL, tsum, msum,
               100.0 * (msum - tsum) / max(tsum, 1)))


def run(label, exe, order, opts, tmp):
    out = os.path.join(tmp, "tm-%s-%s.txt" % (label, order))
    cap = os.path.join(tmp, "%s-%s.cap" % (label, order))
    mode = "tracemalloc %s%s" % (order, " " + " ".join(opts) if opts else "")
    with Target(exe, SCRIPT, out, order, timeout=120) as t:
        if not tracked_round(t, opts, cap, label, mode):
            return
        t.proc.stdin.write(b"end\n")
        t.proc.stdin.flush()
        check(t.proc.wait(timeout=60) == 0, "%s: %s: the target ends well" %
              (label, mode), t.proc.stderr.read().decode(errors="replace"))
    compare("%s: %s" % (label, mode), tracemalloc_lines(out),
            memattach_lines(cap), order == "later")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, exe) in enumerate(interpreters()):
            for order in ("first", "later"):
                run(label, exe, order, [], tmp)
            if i == 0:
                run(label, exe, "first", ["--every-event"], tmp)
    finish()


if __name__ == "__main__":
    main()
