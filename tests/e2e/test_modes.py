"""The tracking modes agree: on one process doing the same work twice
(tests/targets/same_work.py), once tracked by default (the payload keeps
sums per stack: aggregated tracking, docs/payload.md) and once with
--every-event (every ALLOC and FREE recorded), every stack of the work has
the same allocations (count and bytes) and the same live figures at the
end, and the temporary view (windows 1 and 15, the widest an aggregated
capture holds exactly; blocks that live 1,000 iterations are temporary for
neither) and the peak agree within 1%.  The
aggregated capture is aggregated, and far smaller than the other.  And a
memattach SIGKILLed after the work leaves an aggregated capture that
already holds it.  And a session whose ring carries a steady stream of
records (tests/targets/mmap_churn.py: 5,000 mmap and munmap calls a
second, aggregated) keeps few of the ring's pages in the target: consumed
pages are given back (a hole punched in the ring's memfd), where before
the ring's resident size grew with every record to --ring-size."""
import json
import os
import re
import signal
import tempfile
import time

from ma_test import (TARGETS, Attach, Target, check, finish, interpreters,
                     memattach, report_json, tracked_round)

SCRIPT = os.path.join(TARGETS, "same_work.py")


def killed(t, cap, label):
    """An aggregated session whose memattach is SIGKILLed after the work:
    its capture already holds the work's figures (the attacher writes a
    block at least every second, whatever little it holds), waited for by
    reading the capture as it grows"""
    a = Attach(t.pid, output=cap)
    if not check(a.wait_attached(), "%s: killed: attached" % label,
                 a.stderr):
        a.stop()
        return
    t.proc.stdin.write(b"go\n")
    t.proc.stdin.flush()
    check(t.readline(timeout=120) == "DONE", "%s: killed: the work ran" %
          label)
    kept, end = 0, time.monotonic() + 30
    while kept < 20000 and time.monotonic() < end:
        time.sleep(0.2)
        try:
            _, rows = by_stack(cap, cut=True)
        except (RuntimeError, ValueError):
            continue
        kept = max([r["total"]["count"] for k, r in rows.items()
                    if '"kept"' in k] + [0])
    a.stop(signal.SIGKILL)
    check(kept >= 20000, "%s: killed: before the SIGKILL, the capture "
          "already held the 20,000 kept dicts (%d)" % (label, kept))
    doc, rows = by_stack(cap, cut=True)
    check(not doc["complete"] and doc["totals"]["aggregated"] and
          max([r["total"]["count"] for k, r in rows.items()
               if '"kept"' in k] + [0]) >= 20000 and t.alive(),
          "%s: killed: the capture of a SIGKILLed memattach reads, with "
          "the work's figures; the target lives on" % label, doc["totals"])


def by_stack(cap, *args, cut=False):
    """{stack: row} for the stacks whose innermost frame is in the work;
    cut: the capture of a memattach that did not finish it, which report
    reads with exit 8 (partial result)"""
    if cut:
        rc, out, err = memattach("report", "--format", "json", "--group",
                                 "stack", "--top", "0", *args, cap)
        if rc not in (0, 8):
            raise RuntimeError("report %s: exit %d: %s" % (cap, rc, err))
        doc = json.loads(out)
    else:
        doc = report_json(cap, "--group", "stack", "--top", "0", *args)
    out = {}
    for r in doc["rows"]:
        if r["file"] == SCRIPT:
            key = json.dumps([(f["function"], f["file"], f["line"])
                              for f in r["stack"]])
            out[key] = r
    return doc, out


def close(a, b):
    return abs(a - b) <= 0.01 * max(a, b, 1)


def ring_rss_kb(pid):
    """The resident size of the ring's mapping in process pid (the ring and
    the aggregate area after it), in kB, or None when it is not mapped"""
    rss, inside = None, False
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                inside = "memfd:memattach-ring" in line
            elif inside and line.startswith("Rss:"):
                rss = (rss or 0) + int(line.split()[1])
    return rss


def ring_pages(tmp):
    """A steady stream through an aggregated session's ring: its resident
    size stays a few pages (before: 290 kB a second here, toward the
    64 MiB ring)"""
    found = interpreters(minors=[], announce=False)
    if not found:
        check(False, "ring pages: no /usr/bin/python3")
        return
    label, exe = found[0]
    with Target(exe, "mmap_churn.py") as t:
        a = Attach(t.pid, output=os.path.join(tmp, "ring.cap"))
        if not check(a.wait_attached(), "%s: ring pages: attached" % label,
                     a.stderr):
            a.stop()
            return
        t.proc.stdin.write(b"go 5\n")
        t.proc.stdin.flush()
        seen, end = [], time.time() + 60
        while time.time() < end:
            line = t.readline(timeout=0.25)
            if line:
                break
            seen.append(ring_rss_kb(t.pid))
        check(line == "DONE", "%s: ring pages: the churn ran" % label, line)
        rss = [r for r in seen if r is not None]
        rc = a.stop()
        check(rc == 0, "%s: ring pages: attach exits 0" % label, a.stderr)
        # the payload's peak is of its blocks: said, since live and total
        # count the mmap regions (a peak below the live figure read as a
        # contradiction)
        rc2, text, _ = memattach("report", "--width", "300",
                                 os.path.join(tmp, "ring.cap"))
        rc3, stats, _ = memattach("report", "-f", "stats", "--from", "1",
                                  os.path.join(tmp, "ring.cap"))
        check(rc3 == 0 and "of its mmap regions only" in stats and
              "only the range" in stats,
              "%s: ring pages: -f stats says its sizes are the mmap "
              "regions' (it said there were none) and that a range "
              "applies" % label, stats[:600])
        check("mmap regions not included" in a.stdout and
              "mmap regions not included" in text,
              "%s: ring pages: the summary and the report say the peak "
              "leaves out mmap regions" % label,
              a.stdout[:400] + text[:400])
        check(len(rss) >= 10 and max(rss) <= 256,
              "%s: ring pages: the ring's mapping stays under 256 kB "
              "resident through 5 s of mmap churn (most %s kB)" %
              (label, max(rss) if rss else None), seen)
        doc = report_json(os.path.join(tmp, "ring.cap"))
        rows = [r for r in doc["rows"]
                if r["file"].endswith("mmap_churn.py")]
        check(rows and max(r["total"]["bytes"] for r in rows) >=
              10000 * 65536,
              "%s: ring pages: the mmap records all arrived (at least "
              "10,000 mappings of 64 KiB)" % label, rows[:3])
        t.proc.stdin.write(b"quit\n")
        t.proc.stdin.flush()


def main():
    tmp = tempfile.mkdtemp(prefix="memattach-modes-")
    ring_pages(tmp)
    for label, exe in interpreters(minors=[12]):
        caps = {}
        with Target(exe, "same_work.py") as t:
            # two rounds untracked first: both tracked rounds then start
            # alike (the dicts an earlier round kept are replaced, and
            # their frees have filled CPython's free lists)
            for _ in range(2):
                t.proc.stdin.write(b"go\n")
                t.proc.stdin.flush()
                check(t.readline(timeout=120) == "DONE",
                      "%s: untracked round" % label)
            for mode, opts in (("default", []),
                               ("every-event", ["--every-event"])):
                cap = os.path.join(tmp, "%s-%s.cap" % (label, mode))
                if tracked_round(t, opts, cap, label, mode):
                    caps[mode] = cap
            killed(t, os.path.join(tmp, "%s-killed.cap" % label), label)
            t.proc.stdin.write(b"quit\n")
            t.proc.stdin.flush()
        if len(caps) != 2:
            continue
        da, agg = by_stack(caps["default"])
        de, every = by_stack(caps["every-event"])
        check(da["totals"]["aggregated"] and
              not de["totals"]["aggregated"],
              "%s: the default capture is aggregated, the other not" %
              label)
        check(len(agg) >= 5 and sorted(agg) == sorted(every),
              "%s: the same %d stacks of the work in both" %
              (label, len(agg)),
              {"default only": sorted(set(agg) - set(every)),
               "every-event only": sorted(set(every) - set(agg))})
        bad = []
        for k in sorted(set(agg) & set(every)):
            a, e = agg[k], every[k]
            if a["total"] != e["total"] or a["live"] != e["live"] or \
                    not close(a["peak"]["bytes"], e["peak"]["bytes"]):
                bad.append((k, {f: (a[f], e[f]) for f in
                                ("total", "live", "peak")}))
        check(agg and not bad, "%s: every stack: the same allocations and "
              "live figures, the peak within 1%%" % label, bad)
        for w in ("1", "15"):
            _, ta = by_stack(caps["default"], "--temporary-window", w)
            _, te = by_stack(caps["every-event"], "--temporary-window", w)
            bad = [(k, ta[k]["temporary"], te[k]["temporary"])
                   for k in sorted(set(ta) & set(te))
                   if not close(ta[k]["temporary"]["count"],
                                te[k]["temporary"]["count"]) or
                   not close(ta[k]["temporary"]["bytes"],
                             te[k]["temporary"]["bytes"])]
            check(ta and not bad, "%s: every stack: temporary (window %s) "
                  "within 1%%" % (label, w), bad)
        # -f stats: by allocator in both (an aggregated capture from its
        # keys' kinds), the histogram only where sizes were recorded
        ba, be = (report_json(caps[m])["stats"]["by_allocator"]
                  for m in ("default", "every-event"))
        bad = [(k, ba.get(k), be.get(k)) for k in ("pymalloc", "PyMem")
               if not be.get(k) or not ba.get(k) or
               not close(ba[k]["count"], be[k]["count"]) or
               not close(ba[k]["bytes"], be[k]["bytes"])]
        check(not bad, "%s: -f stats: allocations by allocator alike in "
              "both captures (within 1%%)" % label, bad)
        rc, out, err = memattach("report", "-f", "stats", caps["default"])
        check(rc == 0 and "no size histogram" in out and
              re.search(r"pymalloc +[\d.]+ [kM]? *", out),
              "%s: -f stats of an aggregated capture: by allocator, and "
              "says what it cannot give" % label, out)
        sa, se = (os.path.getsize(caps[m]) for m in ("default",
                                                     "every-event"))
        check(sa * 4 < se, "%s: the aggregated capture is smaller "
              "(%d bytes, every event: %d)" % (label, sa, se))
    finish()


if __name__ == "__main__":
    main()
