#!/usr/bin/env python3
"""memattach heap -o SNAPSHOT, then memattach report on it: the snapshot
renders again as text, json and html, `report A --diff B` shows what grew
between two censuses of a process that grew on purpose
(tests/targets/heap_grow.py), by type and by retainer path, and says what
shrank; a truncated, corrupt or incomplete snapshot, an empty file, or -o
into a missing directory, is refused with exit code 7, each said as what it
is; --top 0 shows every row."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kill_lib import proc_state  # noqa
from ma_test import (MEMATTACH, Target, check, children, finish,  # noqa
                     interpreters, memattach, skip)

MIB = 1 << 20


def run(label, exe, tmp):
    a = os.path.join(tmp, "a.snap")
    b = os.path.join(tmp, "b.snap")
    with Target(exe, "heap_grow.py") as t:
        rc, out, err = memattach("heap", "-q", "-o", a, t.pid)
        check(rc == 0 and "Census of" in out and os.path.exists(a) and
              os.stat(a).st_mode & 0o777 == 0o600,
              "%s: heap -o writes a snapshot (mode 0600)" % label, err)
        t.proc.stdin.write(b"GROW\n")
        t.proc.stdin.flush()
        grew = t.readline(60)
        size = int(grew.split()[1])
        # the second census while an attach tracks the process
        cap = os.path.join(tmp, "bg.cap")
        att = subprocess.Popen([MEMATTACH, "attach", "-q", "-d", "4", "-o",
                                cap, str(t.pid)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
        for _ in range(200):
            if os.path.exists(cap):
                break
            time.sleep(0.02)
        rc, out, err = memattach("heap", "-q", "-f", "json", "-o", b, t.pid)
        check(rc == 0 and json.loads(out)["objects"] > 20000,
              "%s: a second census, while an attach tracks the process"
              % label, err)
        _, aerr = att.communicate(timeout=60)
        rc, rout, rerr = memattach("report", cap)
        check(att.returncode == 0 and rc == 0 and "complete" in rout,
              "%s: ... and that attach ends well" % label, aerr + rerr)
    rc, out, err = memattach("report", a)
    check(rc == 0 and out.startswith("Process ") and "Census of" in out and
          "By type" in out, "%s: report renders the snapshot as text"
          % label, err)
    rc, out, err = memattach("report", "-f", "json", b)
    doc = json.loads(out) if rc == 0 else {}
    check(rc == 0 and doc.get("format") == "memattach-heap-snapshot",
          "%s: ... and as json" % label, err)
    rc, out, err = memattach("report", "-f", "html", "-o",
                             os.path.join(tmp, "b.html"), b)
    with open(os.path.join(tmp, "b.html")) as f:
        html = f.read()
    check(rc == 0 and html.startswith("<!DOCTYPE html>") and
          "__main__.leak" in html, "%s: ... and as html" % label, err)
    treemap(label, os.path.join(tmp, "b.html"), tmp)
    rc, out, err = memattach("report", "-f", "json", a, "--diff", b)
    d = json.loads(out) if rc == 0 else {}
    s = [r for r in d.get("types_grew", []) if r["key"] == "str"]
    check(s and abs(s[0]["count_delta"] - 20000) <= 200 and
          abs(s[0]["bytes_delta"] - 20000 * size) <= 0.01 * 20000 * size,
          "%s: --diff: str grew by 20 000 strings of %d bytes" % (label,
                                                                 size), s)
    r = [r for r in d.get("retainers_grew", [])
         if r["key"] == "__main__.leak -> list"]
    check(r and r[0]["bytes_delta"] >= 0.99 * 20000 * size,
          "%s: --diff: the retainer __main__.leak grew by as much" % label,
          r)
    check(not [x for x in d.get("types_shrank", []) if x["key"] == "str"],
          "%s: --diff: str is not among what shrank" % label)
    rc, out, err = memattach("report", b, "--diff", a)
    check(rc == 0 and "shrank" in out and "__main__.leak -> list" in
          out.split("shrank or gone")[1],
          "%s: --diff the other way: the retainer shrank" % label, out)
    # The second snapshot older than the first: a copy of A moved 3 s
    # later (a snapshot is one JSON document; its time is in seconds), so
    # that the time between them is -3 whatever the machine's speed, said
    # as "3 s earlier", never as an unsigned wrap-around (2^64 - 3).
    with open(a) as f:
        doc = json.load(f)
    doc["time"] += 3
    later = os.path.join(tmp, "a_later.snap")
    with open(later, "w") as f:
        json.dump(doc, f)
    rc, out, err = memattach("report", later, "--diff", a)
    first = out.splitlines()[0] if out else ""
    rc2, jout, _ = memattach("report", "-f", "json", later, "--diff", a)
    secs = json.loads(jout).get("seconds_between") if rc2 == 0 else None
    check(rc == 0 and ", 3 s earlier (process" in first and secs == -3,
          "%s: --diff with the older snapshot second: 3 s earlier (text), "
          "seconds_between -3 (json)" % label, (first, secs, err))
    # Cyclic garbage that grew (a leak of reference cycles under
    # gc.disable()) is in no retainer's path: the diff says it apart, where
    # it showed only types that grew and "Retainers ... (none)"
    with open(a) as f:
        doc = json.load(f)
    doc["garbage_objects"] += 5000
    doc["garbage_bytes"] += 3 * MIB
    cyc = os.path.join(tmp, "a_cycles.snap")
    with open(cyc, "w") as f:
        json.dump(doc, f)
    rc, out, err = memattach("report", a, "--diff", cyc)
    rc2, jout, _ = memattach("report", "-f", "json", a, "--diff", cyc)
    jd = json.loads(jout) if rc2 == 0 else {}
    check(rc == 0 and re.search(r"Cyclic garbage \(kept only by reference "
                                r"cycles\) \+3\.00 MiB \(.* -> .*\), "
                                r"\+5000 objects", out) and
          jd.get("garbage_bytes_delta") == 3 * MIB and
          jd.get("garbage_objects_delta") == 5000,
          "%s: --diff: cyclic garbage that grew is said (text, json)" % label,
          (out, jout, err))
    # Another program's snapshot: refused unless --force, as captures are
    # (it was compared without a word)
    doc["command"] += " --other"
    other = os.path.join(tmp, "other.snap")
    with open(other, "w") as f:
        json.dump(doc, f)
    rc, out, err = memattach("report", a, "--diff", other)
    rc2, out2, err2 = memattach("report", a, "--diff", other, "--force")
    check(rc == 2 and "come from different programs" in err and
          "--force" in err and not out and rc2 == 0 and "RSS" in out2,
          "%s: --diff of another program's snapshot: refused (exit 2) "
          "unless --force" % label, (rc, err, rc2, err2))


def treemap(label, html, tmp):
    """The page in headless Chromium: it loads without a script error, and
    its treemap zooms into the largest holder (as many rectangles as it
    has retainers) and back (its own self test, #selftest)"""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        skip("%s: html in Chromium" % label, "chromium is not installed")
        return
    prof = tempfile.mkdtemp(dir=tmp)
    p = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        "--no-first-run", "--user-data-dir=" + prof,
                        "--virtual-time-budget=10000", "--dump-dom",
                        "file://" + html + "#selftest"],
                       capture_output=True, text=True, timeout=120)
    dom = p.stdout
    st = re.search(r'data-selftest="([^"]*)"', dom)
    errs = re.search(r'<div id="ma-errors">(.*?)</div>', dom, re.S)
    check('data-ready="1"' in dom and errs and not errs.group(1).strip()
          and st and "zoom=ok" in st.group(1) and
          not st.group(1).startswith("groups=0"),
          "%s: the html treemap loads in Chromium and zooms in and out"
          % label, (st and st.group(1)) or (errs and errs.group(1)) or
          dom[-300:] or p.stderr[-300:])


def errors(tmp):
    good = os.path.join(tmp, "a.snap")
    cut = os.path.join(tmp, "cut.snap")
    with open(good) as f, open(cut, "w") as g:
        g.write(f.read()[:400])
    rc, out, err = memattach("report", cut)
    check(rc == 7 and "truncated or corrupt" in err,
          "a truncated snapshot: exit 7 with a clear message", err)
    with open(cut, "w") as g:
        g.write('{"format":"memattach-heap-snapshot","version":99}\n')
    rc, out, err = memattach("report", cut)
    check(rc == 7 and "version" in err,
          "a snapshot of another version: exit 7", err)
    # ours, but only its first two fields: incomplete, not "of another
    # version (1; this memattach reads 1)" as the old binary said
    with open(cut, "w") as g:
        g.write('{"format":"memattach-heap-snapshot","version":1}\n')
    rc, out, err = memattach("report", cut)
    check(rc == 7 and "incomplete heap snapshot" in err and "by_type" in err
          and "another version" not in err,
          "a snapshot of our version without its fields: exit 7, said "
          "incomplete (missing by_type...)", err)
    # an empty file is neither a capture nor a snapshot (the old binary:
    # "capture X: empty file", or for --diff "not a readable heap
    # snapshot")
    empty = os.path.join(tmp, "empty.snap")
    open(empty, "w").close()
    for args in ((empty,), (good, "--diff", empty)):
        rc, out, err = memattach("report", *args)
        check(rc == 7 and not out and "%s: empty file (neither a capture "
              "nor a heap snapshot" % empty in err and "capture %s" % empty
              not in err, "report %s: an empty file is not called a "
              "capture, exit 7" % " ".join(os.path.basename(a)
                                           for a in args), err)
    # --top 0 is every row, as report --help says (the old binary: 20)
    with open(good) as f:
        doc = json.load(f)
    ntypes = len(doc["by_type"])
    rc, out, err = memattach("report", good, "--top", "0")
    rows = out.split("By type")[1].split("\n\n")[0].splitlines()[2:] \
        if rc == 0 and "By type" in out else []
    check(ntypes > 20 and len(rows) == ntypes and
          "(top %d of %d)" % (ntypes, ntypes) in out,
          "report SNAPSHOT --top 0: every type (%d rows)" % ntypes,
          "%d rows of %d\n%s" % (len(rows), ntypes, err))
    # ... and every row of a diff: B, every type one byte larger (a diff
    # sums the rows of one name: two classes of one name are one row)
    for r in doc["by_type"]:
        r["bytes"] += 1
    names = len(set(r["type"] for r in doc["by_type"]))
    grown = os.path.join(tmp, "grown.snap")
    with open(grown, "w") as f:
        json.dump(doc, f)
    rc, out, err = memattach("report", good, "--diff", grown, "--top", "0")
    rows = out.split("By type, grew")[1].split("\n\n")[0].splitlines()[1:] \
        if rc == 0 and "By type, grew" in out else []
    check(names > 20 and len(rows) == names,
          "report A --diff B --top 0: every type that grew (%d rows)"
          % names, "%d rows of %d\n%s" % (len(rows), names, err))
    with Target(sys.executable, "heap_grow.py") as t:
        rc, out, err = memattach("heap", "-q", "-o",
                                 os.path.join(tmp, "no", "such", "x.snap"),
                                 t.pid)
        check(rc == 7 and not out and "no/such" in err,
              "-o into a missing directory: exit 7 before any census", err)
        # a symbolic link at -o: refused before the census, the link and
        # its file as they were (the old binary renamed the snapshot over
        # the link)
        victim = os.path.join(tmp, "victim.txt")
        link = os.path.join(tmp, "link.snap")
        with open(victim, "w") as f:
            f.write("mine\n")
        os.symlink(victim, link)
        rc, out, err = memattach("heap", "-q", "-o", link, t.pid)
        check(rc == 7 and "symbolic link" in err and os.path.islink(link)
              and open(victim).read() == "mine\n",
              "heap -o SYMLINK: refused (exit 7), the link left alone",
              "exit %d: %s" % (rc, err))
        cap = os.path.join(tmp, "mix.cap")
        rc, out, err = memattach("attach", "-q", "-d", "0.5", "-o", cap,
                                 t.pid)
        check(rc == 0, "a capture to mix up with a snapshot", err)
    # a snapshot and a capture mixed up: which file is which, exit 2 (the
    # old binary: "bad magic" about one of them, exit 7)
    for x, y in ((good, cap), (cap, good)):
        rc, out, err = memattach("report", x, "--diff", y)
        check(rc == 2 and not out and "%s is a heap snapshot" % good in err
              and "%s is a capture" % cap in err,
              "--diff of %s and %s: says which file is which, exit 2"
              % (os.path.basename(x), os.path.basename(y)), err)
    # a capture's option on a snapshot is refused, not ignored
    rc, out, err = memattach("report", good, "--thread", "MainThread")
    check(rc == 2 and not out and "--thread applies to captures" in err,
          "--thread on a snapshot: refused with exit 2", err)
    # -o - is stdout, as for a capture (the old binary wrote a file '-')
    rc, out, err = memattach("report", good, "--top", "3", "-f", "json",
                             "-o", "-")
    check(rc == 0 and json.loads(out).get("objects", 0) > 0 and
          not os.path.exists("-"), "-o - writes the snapshot's report to "
          "stdout", err)


def copy_dies():
    """The copy killed in the middle of the walk: what arrived is printed,
    flagged partial, exit 8, and the dead copy is still reaped"""
    with Target(sys.executable, "heap_target.py", "200000", ready="{") as t:
        t.readline()  # READY
        env = dict(os.environ, MEMATTACH_TEST_STOP_AT="heap.chunk#1")
        m = subprocess.Popen([MEMATTACH, "heap", "-q", "-f", "json",
                              str(t.pid)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(1000):
            if proc_state(m.pid) == "T" or m.poll() is not None:
                break
            time.sleep(0.01)
        copies = children(t.pid)
        for c in copies:
            os.kill(c, signal.SIGKILL)
        os.kill(m.pid, signal.SIGCONT)
        out, err = m.communicate(timeout=120)
        doc = json.loads(out) if out.strip() else {}
        left = children(t.pid)
        check(copies and m.returncode == 8 and "partial census" in err and
              doc.get("partial") and doc.get("objects", 0) > 0 and not left,
              "the copy killed mid-walk: a partial census, exit 8, the "
              "copy reaped", "copies %s, exit %s, left %s\n%s" % (
                  copies, m.returncode, left, err))


def main():
    tmp = tempfile.mkdtemp(prefix="memattach-snap-")
    try:
        for label, exe in interpreters(minors=(12,)):
            run(label, exe, tmp)
        errors(tmp)
        copy_dies()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
