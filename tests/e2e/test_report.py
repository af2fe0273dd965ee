"""memattach report on real captures of a tracked script.

Tracks tests/targets/growth.py (a cache that is never evicted, plus
short-lived garbage) twice with `memattach attach --duration N`, then checks
every view, grouping and filter against what the script did, every format
with a reader of its own (json, csv, collapsed stacks, speedscope JSON,
pprof decoded by `protoc --decode` against Debian's profile.proto and read
by `go tool pprof` when Go is installed, the HTML report opened in headless
Chromium), --diff between the two captures, and damaged captures: empty,
cut short, corrupt, newer format, missing.  And the command line of a
python -c program of several lines, in the text report's header: on one
line, its newlines as \\n.
"""
import csv
import glob
import gzip
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

from ma_test import (MEMATTACH, TARGETS, Attach, Target, check, finish,
                     interpreters, marks, memattach, on_terminal, skip)

GROWTH = os.path.join(TARGETS, "growth.py")
MG = marks(GROWTH)
ENTRY = 64 * 1024
PROTO_DIRS = ["/usr/share/gocode/src/github.com/google/pprof/proto"]


def last_count(lines):
    for line in reversed(lines):
        if line.startswith("cache "):
            return int(line.split()[1])
    return None


def report(cap, *args, fmt="json", ok=True):
    rc, out, err = memattach("report", "-f", fmt, *args, cap, timeout=120)
    if ok and rc != 0:
        raise RuntimeError("memattach report %s %s: exit %d: %s" %
                           (cap, " ".join(map(str, args)), rc, err))
    return (json.loads(out) if fmt == "json" and rc == 0 else out), rc, err


def track(exe, tmp):
    """Two captures of one growth.py process: 3 s, then 4 s; the cache
    entries stored during the first window."""
    caps = [os.path.join(tmp, "a.cap"), os.path.join(tmp, "b.cap")]
    stored = None
    with Target(exe, "growth.py") as t:
        seen = [t.readline() for _ in range(3)]
        for i, (cap, secs) in enumerate(zip(caps, (3, 4))):
            a = Attach(t.pid, "--duration", secs, output=cap)
            if not check(a.wait_attached(), "attach %d" % (i + 1), a.stderr):
                a.stop()
                return None, None
            start = last_count(seen + t.drain())
            rc = a.wait(timeout=60)
            seen = t.drain() or [t.readline()]
            end = last_count(seen)
            if not check(rc == 0, "attach %d exits 0" % (i + 1),
                         "exit %s\n%s" % (rc, a.stderr)):
                return None, None
            if i == 0:
                stored = (end - start) * ENTRY
        # on a terminal: how to stop, and the time left of --duration
        rc, out = on_terminal(["attach", "-d", "1.5", "-o",
                               os.path.join(tmp, "tty.cap"), t.pid])
        check(rc == 0 and re.search(r"\[Ctrl-C to stop, \d+ s left\]", out),
              "attach progress on a terminal: Ctrl-C and the time left",
              out[-800:])
        progress_lines(out)
        # the user's story on a terminal: the census's progress too (it
        # ran silent, seconds to a minute on a heap of gigabytes)
        rc, out = on_terminal([str(t.pid), "-d", "1", "-o",
                               os.path.join(tmp, "story.cap")])
        check(rc == 0 and re.search(r"heap: \d+ objects, \d+ MiB read",
                                    out) and "Heap now:" in out,
              "memattach PID on a terminal: the census's progress line",
              out[:800])
        check(t.alive(), "target still running after three captures")
    return caps, stored


def progress_lines(stderr):
    """issue 11, defect 9: the progress line counts in the summary's units
    (3.02 M, not 3020000) and shows the live bytes' growth rate and RSS"""
    lines = [re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", ln)
             for ln in re.split(r"[\r\n]", stderr) if " allocations, " in ln]
    later = [ln for ln in lines if re.match(r"\s*[1-9]\.\d s ", ln)]
    check(lines and all(re.search(
        r"s  (\d{1,3}|\d+\.?\d* [kMG]) allocations, ", ln) for ln in lines)
        and later and all(re.search(r"still live \([+-][\d.]+ [KMG]?i?B/s\)"
                                    r", RSS [\d.]+ [KMG]i?B, ", ln)
                          for ln in later),
        "attach progress: counts in units, growth rate and RSS",
        "\n".join(lines))


def views(cap, stored):
    doc, _, _ = report(cap, "--top", "0")
    check("warning" in doc and doc["warning"] is None,
          "json: a complete capture's warning is null (the key is always "
          "there, as docs/reports.md lists it)", doc.get("warning", "absent"))
    top = doc["rows"][0] if doc["rows"] else {}
    check(top.get("file") == GROWTH and top.get("line") == MG["cache_fill"]
          and top.get("function") == "fill_cache",
          "live: top location is the cache fill line",
          {k: top.get(k) for k in ("function", "file", "line")})
    got = top.get("live", {}).get("bytes", 0)
    check(stored and abs(got - stored) <= 0.10 * stored,
          "live: bytes at that line within 10%% of what the script stored "
          "(%d vs %d)" % (got, stored or 0))
    sums = doc["sums"]
    check(sums["live"]["bytes"] == doc["totals"]["live_bytes"],
          "live: rows add up to the live total")
    check(doc["totals"]["unknown_frees"] >= 0 and
          all(r["live"]["bytes"] >= 0 for r in doc["rows"]),
          "unknown frees are a footnote, not a figure")
    stack = [f["function"] for f in top.get("stack", [])]
    check(stack[:2] == ["fill_cache", "main"],
          "live: representative stack fill_cache <- main", stack)

    peak, _, _ = report(cap, "--view", "peak")
    p = peak["peak"]
    check(p["bytes"] >= doc["totals"]["live_bytes"] and
          peak["sums"]["peak"]["bytes"] == p["bytes"],
          "peak: the peak is at least the end's live bytes, and its rows "
          "add up to it (%d)" % p["bytes"])
    check(peak["rows"] and peak["rows"][0]["function"] == "fill_cache",
          "peak: top location is the cache fill line")

    total, _, _ = report(cap, "--view", "total")
    g = [r for r in total["rows"] if r["line"] == MG["garbage"]]
    check(g and g[0]["total"]["bytes"] >= 2 * got and
          g[0]["live"]["bytes"] <= 512 * 1024,
          "total: the garbage line allocated the most, keeps nothing",
          g and g[0])
    check(total["rows"][0]["line"] == MG["garbage"],
          "total: top location is the garbage line")

    # make_garbage's 256 KiB bytearray dies after ~100 further allocations
    # (the list of strings): temporary with a window of 1000, not of 1
    t1000, _, _ = report(cap, "--view", "temporary",
                         "--temporary-window", "1000")
    g1000 = [r for r in t1000["rows"] if r["line"] == MG["garbage"]]
    check(t1000["rows"] and t1000["rows"][0]["line"] == MG["garbage"] and
          g1000[0]["temporary"]["bytes"] >= 0.9 * g[0]["total"]["bytes"],
          "temporary (window 1000): the garbage line, nearly all of its "
          "bytes", g1000 and g1000[0])
    t1, _, _ = report(cap, "--view", "temporary")
    g1 = [r for r in t1["rows"] if r["line"] == MG["garbage"]]
    check(not g1 or g1[0]["temporary"]["bytes"] <=
          0.1 * g[0]["total"]["bytes"],
          "temporary (window 1): the bytearray is not freed at once",
          g1 and g1[0])

    fn, _, _ = report(cap, "--group", "function")
    check(fn["rows"][0]["function"] == "fill_cache" and
          fn["rows"][0]["live"]["bytes"] >= got,
          "group by function: fill_cache first")
    fl, _, _ = report(cap, "--group", "file")
    check(fl["rows"][0]["file"] == GROWTH and fl["rows"][0]["function"]
          is None and fl["rows"][0]["live"]["bytes"] >= got,
          "group by file: growth.py first")
    st, _, _ = report(cap, "--group", "stack")
    check([f["function"] for f in st["rows"][0]["stack"]][:3] ==
          ["fill_cache", "main", "<module>"],
          "group by stack: the full stack of the top row")

    pid = doc["pid"]
    th, _, _ = report(cap, "--thread", str(pid))
    check(th["sums"]["live"]["bytes"] == sums["live"]["bytes"] and
          th["filters"]["threads_matched"] == 1,
          "--thread PID: the main thread holds everything")
    _, rc, err = report(cap, "--thread", "no-such-thread", ok=False)
    check(rc == 2 and "no-such-thread" in err and str(pid) in err,
          "--thread NAME that matches nothing: usage error naming the "
          "capture's threads", err)
    mg, _, _ = report(cap, "--filter", "make_garbage", "--view", "total")
    check(mg["rows"] and all(any(f["function"].startswith("make_garbage")
                                 for f in r["stack"]) for r in mg["rows"])
          and mg["sums"]["total"]["bytes"] < total["sums"]["total"]["bytes"],
          "--filter: only stacks through make_garbage")
    return doc


def formats(cap, doc, tmp):
    live = doc["sums"]["live"]["bytes"]

    out, rc, _ = report(cap, fmt="text")
    check(rc == 0 and "fill_cache" in out and "\x1b" not in out,
          "text: top location shown, no colour when piped")
    rc, out, _ = memattach("report", "--width", "70", cap)
    long = [line for line in out.splitlines() if len(line) > 70]
    check(rc == 0 and not long, "text: fits 70 columns", long)
    rc, out, _ = memattach("report", "--color", "always", cap)
    check(rc == 0 and "\x1b[" in out, "text: --color always colours")

    out, rc, _ = report(cap, "--top", "0", fmt="csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    check(rows and rows[0]["function"] == "fill_cache" and
          int(rows[0]["live_bytes"]) == doc["rows"][0]["live"]["bytes"] and
          sum(int(r["live_bytes"]) for r in rows) == live,
          "csv: rows parse, figures match json")

    out, rc, _ = report(cap, fmt="collapsed")
    lines = out.splitlines()
    parsed = [re.fullmatch(r"(.+) (\d+)", line) for line in lines]
    check(lines and all(parsed) and
          sum(int(m.group(2)) for m in parsed) == live and
          any(m.group(1).split(";")[-1].startswith("fill_cache (")
              and m.group(1).split(";")[0].startswith("<module>")
              for m in parsed),
          "collapsed: 'outer;...;inner bytes' lines adding up to live")

    out, rc, _ = report(cap, fmt="speedscope")
    try:
        ss = json.loads(out)
        prof = ss["profiles"][ss["activeProfileIndex"]]
        frames = ss["shared"]["frames"]
        # the four views, then one profile per thread
        ok = (len(ss["profiles"]) >= 5 and sum(prof["weights"]) == live and
              len(prof["samples"]) == len(prof["weights"]) and
              all(0 <= i < len(frames) for s in prof["samples"] for i in s))
    except (ValueError, KeyError, IndexError) as e:
        ok, ss = False, e
    check(ok, "speedscope: four views and the threads, live weights add up", str(ss)[:300])

    pb = os.path.join(tmp, "a.pb.gz")
    _, rc, err = report(cap, "-o", pb, fmt="pprof")
    check(rc == 0 and os.path.getsize(pb) > 0, "pprof: written with -o", err)
    raw = gzip.open(pb).read()
    proto = [d for d in PROTO_DIRS
             if os.path.exists(os.path.join(d, "profile.proto"))]
    if not shutil.which("protoc") or not proto:
        skip("pprof: protoc --decode", "protoc or Debian's profile.proto "
             "(golang-github-google-pprof-dev) not installed")
    else:
        p = subprocess.run(["protoc", "--decode=perftools.profiles.Profile",
                            "-I", proto[0], "profile.proto"], input=raw,
                           capture_output=True, timeout=60)
        text = p.stdout.decode(errors="replace")
        values = re.findall(r"^sample \{\n((?:  .*\n)*?)\}", text, re.M)
        inuse = 0
        for body in values:
            v = [int(x) for x in re.findall(r"value: (-?\d+)", body)]
            inuse += v[3] if len(v) == 4 else 0
        strings = re.findall(r'string_table: "(.*)"', text)
        check(p.returncode == 0 and values and inuse == live and
              "inuse_space" in strings and "fill_cache" in strings,
              "pprof: protoc decodes it; inuse_space adds up to live "
              "(%d vs %d)" % (inuse, live), p.stderr.decode()[:300])
    if shutil.which("go"):
        p = subprocess.run(["go", "tool", "pprof", "-top", pb],
                           capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, HOME=tmp,
                                    GOCACHE=os.path.join(tmp, "gocache"),
                                    PPROF_TMPDIR=tmp))
        top = [line for line in p.stdout.splitlines()
               if line.strip().endswith("fill_cache")]
        check(p.returncode == 0 and top, "pprof: go tool pprof -top reads "
              "it and shows fill_cache", p.stdout[-500:] + p.stderr[-500:])
    else:
        skip("pprof: go tool pprof", "Go (golang-go) not installed")

    html = os.path.join(tmp, "a.html")
    _, rc, err = report(cap, "-o", html, fmt="html")
    page = open(html, encoding="utf-8").read() if rc == 0 else ""
    check(rc == 0 and "@@" not in page and
          not re.search(r'(src|href)="(https?:)?//', page),
          "html: one file, nothing fetched", err)
    chromium(html, tmp)


def chromium(html, tmp):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        skip("html: headless Chromium", "chromium is not installed")
        return
    prof = tempfile.mkdtemp(dir=tmp)
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--no-first-run", "--user-data-dir=" + prof,
           "--virtual-time-budget=10000", "--dump-dom",
           "file://" + html + "#selftest"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        check(False, "html: headless Chromium finishes")
        return
    dom = p.stdout
    st = re.search(r'data-selftest="([^"]*)"', dom)
    errs = re.search(r'<div id="ma-errors">(.*?)</div>', dom, re.S)
    first = re.search(r'<td class="fn">([^<]*)</td>', dom)
    check('data-ready="1"' in dom and errs and not errs.group(1).strip(),
          "html: loads in Chromium without errors",
          (errs and errs.group(1)) or dom[-500:] or p.stderr[-500:])
    check(st and "top=fill_cache" in st.group(1) and
          "zoom=ok" in st.group(1) and "search=matched" in st.group(1),
          "html: top function fill_cache; zoom, search and the four views "
          "work", st and st.group(1))
    check(first and first.group(1) == "fill_cache",
          "html: the top table starts with fill_cache")


def diff(caps):
    a, b = caps
    d, rc, _ = report(a, "--diff", b)
    rows = d["rows"] if rc == 0 else []
    check(rows and rows[0]["function"] == "fill_cache" and
          rows[0]["delta"]["bytes"] > 0 and
          d["after"]["bytes"] > d["before"]["bytes"],
          "diff: the cache fill line grew most", rows[:2])
    out, rc, _ = report(a, "--diff", b, fmt="text")
    check(rc == 0 and "fill_cache" in out.split("LOCATION", 1)[-1][:400],
          "diff: text names it")
    # a narrow text cuts a long file on the left, as the other reports
    # do: the line number stays (it was cut off on the right)
    out, rc, _ = report(a, "--diff", b, "--width", "50", fmt="text")
    first = out.split("LOCATION", 1)[-1].strip().splitlines()[:1]
    check(rc == 0 and first and re.search(r"\.py:\d+\)$", first[0]),
          "diff: a narrow text keeps the file's end and the line", first)
    _, rc, err = report(a, "--diff", b, fmt="html", ok=False)
    check(rc == 2 and "--diff" in err, "diff: html refused (usage)")


def damaged(cap, tmp):
    data = open(cap, "rb").read()

    def run(name, blob):
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            f.write(blob)
        return memattach("report", "-f", "json", path)

    rc, out, err = run("empty.cap", b"")
    check(rc == 7 and "empty" in err, "empty capture: exit 7, says empty",
          err)
    # the trailer cut: every block of events is there, the end is not
    rc, out, err = run("cut.cap", data[:len(data) - 10])
    ok = rc == 8 and json.loads(out)["truncated"] and "truncated" in err
    check(ok, "capture cut short: a report of what was written, flagged "
          "truncated, exit 8 (partial result)", err)
    blob = bytearray(data)
    for k in range(200, min(len(blob), 4000), 97):
        blob[k] ^= 0x5a
    rc, out, err = run("corrupt.cap", bytes(blob))
    check(rc == 7 and ("damaged" in err or "block" in err) and
          "Traceback" not in err, "corrupt capture: exit 7, names the "
          "damage", err)
    blob = bytearray(data)
    blob[8:12] = (1000).to_bytes(4, "little")
    rc, out, err = run("newer.cap", bytes(blob))
    check(rc == 7 and "newer" in err, "newer format: exit 7, says newer",
          err)
    rc, out, err = memattach("report", os.path.join(tmp, "missing.cap"))
    check(rc == 7 and "missing.cap" in err, "missing capture: exit 7", err)
    rc, out, err = memattach("report", "-f", "bogus", cap)
    check(rc == 2, "unknown format: usage error", err)


PHASES = os.path.join(TARGETS, "phases.py")
MP = marks(PHASES)


def phases_capture(exe, tmp):
    """An aggregated capture of phases.py: phase 1, a 4 s gap, phase 2.
    Returns (cap, the middle of the gap in seconds since the capture's
    start, at most a few tenths late)."""
    cap = os.path.join(tmp, "phases.cap")
    with Target(exe, "phases.py") as t:
        a = Attach(t.pid, output=cap)
        if not check(a.wait_attached(), "phases: attach", a.stderr):
            a.stop()
            return None, None
        t0 = time.time()  # tracking started before it
        time.sleep(0.5)
        t.proc.stdin.write(b"GO1\n")
        t.proc.stdin.flush()
        p1 = p2 = None
        while p1 is None:
            line = t.readline(60).split()
            if not line:
                break
            if line[0] == "P1":
                p1 = float(line[2])
        time.sleep(4)
        t.proc.stdin.write(b"GO2\n")
        t.proc.stdin.flush()
        while p2 is None:
            line = t.readline(60).split()
            if not line:
                break
            if line[0] == "P2":
                p2 = float(line[1])
        time.sleep(2)
        rc = a.stop()
        t.proc.stdin.write(b"EXIT\n")
        t.proc.stdin.flush()
    if not check(rc == 0 and p1 and p2, "phases: both phases tracked",
                 "exit %s\n%s" % (rc, a.stderr)):
        return None, None
    return cap, (p1 + p2) / 2 - t0


def line_row(doc, fn, line):
    for r in doc["rows"]:
        if r["function"] == fn and r["file"].endswith("phases.py") and \
                r["line"] == line:
            return r
    return None


def from_range(cap, mid):
    """--from on an aggregated capture: only the range's allocations, not
    the whole capture's under a range header"""
    whole, _, _ = report(cap)
    doc, _, _ = report(cap, "--from", "%.1f" % mid)
    a = line_row(doc, "alpha_work", MP["alpha_alloc"])
    p2 = line_row(doc, "phase2", MP["phase2_alloc"])
    p2w = line_row(whole, "phase2", MP["phase2_alloc"])
    check(doc["range"] and doc["totals"]["allocated_bytes"] <
          whole["totals"]["allocated_bytes"] and
          doc["totals"]["live_bytes"] < whole["totals"]["live_bytes"],
          "aggregated --from %.1f: the header's totals are the range's" %
          mid,
          "range %s whole %s" % (doc["totals"], whole["totals"]))
    check((a is None or a["live"]["bytes"] == 0) and p2 and p2w and
          p2["live"]["bytes"] == p2w["live"]["bytes"] and
          abs(p2["live"]["bytes"] - 100 * 32768) < 0.1 * 100 * 32768,
          "aggregated --from: phase 2's line, not phase 1's",
          "alpha %s phase2 %s (whole %s)" % (a, p2, p2w))
    check(doc["sums"]["live"]["bytes"] == doc["totals"]["live_bytes"] and
          doc["sums"]["total"]["bytes"] ==
          doc["totals"]["allocated_bytes"],
          "aggregated --from: the rows sum to the header",
          "sums %s totals %s" % (doc["sums"], doc["totals"]))
    check(doc["peak"]["bytes"] is None and doc["peak"].get("note") and
          doc["totals"]["peak_bytes"] is None,
          "aggregated --from after the peak: the peak is said to be "
          "unknown, not the whole capture's", doc["peak"])
    rc, out, _ = memattach("report", "--from", "%.1f" % mid, cap)
    check(rc == 0 and "peak not known" in out and "only the range" in out,
          "aggregated --from: the text says the peak is not known",
          out[:600])
    # the other formats: an empty field, not 0; a format of the peak view
    # alone is refused (the old binary wrote zeros)
    rc, csv, _ = memattach("report", "-f", "csv", "--from", "%.1f" % mid,
                           cap)
    rows = [x.split(",") for x in csv.splitlines()[1:]]
    check(rc == 0 and rows and all(x[9:11] == ["", ""] for x in rows),
          "aggregated --from: csv leaves the peak columns empty",
          csv[:300])
    rc, _, err = memattach("report", "-f", "pprof", "--view", "peak",
                           "--from", "%.1f" % mid, "-o",
                           cap + ".pb.gz", cap)
    check(rc == 2 and "not known" in err,
          "aggregated --from: -f pprof --view peak is refused, exit 2",
          "exit %s: %s" % (rc, err))
    # and so is a diff of that view: it compared the unknown peak as 0 B
    # ("peak: 0 B -> 26.6 MiB")
    for fmt in ("text", "json", "csv"):
        rc, out, err = memattach("report", "-f", fmt, "--view", "peak",
                                 "--from", "%.1f" % mid, cap, "--diff",
                                 cap)
        check(rc == 2 and not out and "not known" in err,
              "aggregated --from: --diff -f %s --view peak is refused, "
              "exit 2" % fmt, "exit %s: %s%s" % (rc, err, out[:300]))


def to_range(cap, mid):
    """--to on an aggregated capture: the stacks' sums come once a second,
    so the rows and totals are those of the last round before the cut;
    the header and JSON say as of when (the old binary said 'figures as
    of its end', that of the range).  --diff-to between two moments says
    which rounds it compares, and --diff with --from divides by the
    range's length, not the capture's."""
    to = mid
    doc, _, _ = report(cap, "--to", "%.1f" % to)
    rng = doc.get("range") or {}
    at = rng.get("aggregated_sums_to_ns")
    check(at is not None and at <= rng["end_ns"] and
          at <= (to + 0.05) * 1e9,
          "aggregated --to %.1f: JSON says the sums' moment, before the cut"
          % to, rng)
    rc, out, _ = memattach("report", "--to", "%.1f" % to, cap)
    check(rc == 0 and "aggregated capture (once a second) as of about"
          in out, "aggregated --to: the text says as of when", out[:700])
    later, _, _ = report(cap, "--to", "%.1f" % (to + 0.3))
    at2 = (later.get("range") or {}).get("aggregated_sums_to_ns")
    rc, out, _ = memattach("report", "--to", "%.1f" % to, "--diff-to",
                           "%.1f" % (to + 0.3), cap)
    want = ("both fall in the round" if at == at2 else
            "its rounds of sums at")
    check(rc == 0 and at2 is not None and want in out,
          "aggregated --to T1 --diff-to T2: the note says which rounds "
          "(%s)" % want, "rounds %s %s\n%s" % (at, at2, out[:600]))
    whole, _, _ = report(cap)
    rc, out, err = memattach("report", "--format", "json", "--from",
                             "%.1f" % mid, "--diff", cap, cap)
    d = json.loads(out) if rc == 0 else {}
    span = whole["totals"].get("duration_ns")
    a_ns = (d.get("before") or {}).get("duration_ns", 0)
    check(rc == 0 and span and a_ns and a_ns < span - (mid - 0.5) * 1e9,
          "--diff --from: each side's duration is the range's, not the "
          "capture's", "%s vs capture %s\n%s" % (a_ns, span, err))
    # a temporary window an aggregated capture's buckets do not fit: the
    # figures are of the largest window they fit, said
    doc, _, _ = report(cap, "--temporary-window", "1000")
    rc, out, _ = memattach("report", "--width", "300",
                           "--temporary-window", "1000", cap)
    check(doc.get("temporary_window_counted") == 511 and
          "window 1000, counted as 511" in out,
          "aggregated --temporary-window 1000: counted as 511, said",
          doc.get("temporary_window_counted"))
    rc, out, err = memattach("report", "--from", "1000", cap)
    check(rc == 2 and not out and "after the last sample" in err,
          "--from after the capture's end: refused with exit 2 (it "
          "printed a backwards range)", "exit %s: %s" % (rc, err))


def thread_peak(cap):
    """--thread: the header's peak is the selected threads' (the peak
    view's sum), in text and JSON; each thread's frees of its blocks add up
    to the capture's"""
    whole, _, _ = report(cap)
    names = [t["name"] for t in whole["threads"]]
    frees = [report(cap, "--thread", n)[0]["totals"]["frees"]
             for n in names]
    check(sum(frees) == whole["totals"]["frees"],
          "aggregated --thread: the threads' frees add up to the "
          "capture's (the capture's unknown frees were taken off each)",
          "threads %s, capture %s (unknown %s)" % (
              frees, whole["totals"]["frees"],
              whole["totals"]["unknown_frees"]))
    doc, _, _ = report(cap, "--thread", "alpha-worker", "--view", "peak")
    pk = doc["sums"]["peak"]
    check(doc["peak"]["bytes"] == pk["bytes"] and
          doc["totals"]["peak_bytes"] == pk["bytes"] and
          doc["peak"]["count"] == pk["count"] and
          0 < pk["bytes"] < whole["peak"]["bytes"] and
          doc["peak"].get("note"),
          "--thread alpha-worker: the peak is the thread's",
          "peak %s, view %s, whole %s" % (doc["peak"], pk, whole["peak"]))
    rc, out, _ = memattach("report", "--thread", "alpha-worker", "--view",
                           "peak", "--top", "0", "--callers", "0", cap)
    m = re.search(r"peak (\S+ \S+) in (\S+(?: k)?) blocks", out)
    m2 = re.search(r"\n\s*peak: live at the moment[^(]*\((\S+ \S+) in "
                   r"(\S+(?: k)?) blocks", out)
    check(rc == 0 and m and m2 and m.groups() == m2.groups(),
          "--thread alpha-worker: the text header's peak is the view's",
          out[:800])


def children_from(exe, tmp):
    """--from on an aggregated --children capture whose peak comes in the
    range (pool.py's tasks run after the start): the peak is not known,
    and the processes' table and JSON say so as the header does, not
    "0 B" for each process"""
    cap = os.path.join(tmp, "pool.cap")
    with Target(exe, "pool.py") as t:
        a = Attach(t.pid, "--children", output=cap)
        if not check(a.wait_attached(), "pool --children: attach",
                     a.stderr):
            a.stop()
            return
        time.sleep(1.5)
        t.proc.stdin.write(b"go\n")
        t.proc.stdin.flush()
        done = None
        while done not in ("DONE", ""):
            done = t.readline(60).strip()
        # the workers' sums move once a second: two rounds after the tasks
        time.sleep(2.2)
        rc = a.stop()
        t.proc.stdin.write(b"quit\n")
        t.proc.stdin.flush()
    if not check(rc == 0 and done == "DONE", "pool --children: attach "
                 "exits 0", "exit %s\n%s" % (rc, a.stderr)):
        return
    doc, _, _ = report(cap, "--from", "0.5")
    procs = doc.get("processes") or []
    check(doc["peak"]["bytes"] is None and len(procs) >= 3 and
          doc["sums"]["peak"] is None and
          all(p["peak"] is None for p in procs) and
          all(r["peak"] is None for r in doc["rows"]) and
          all(th.get("peak", None) is None for th in doc["threads"]),
          "pool --children --from: the peak is not known in the header, "
          "and null in sums, each process, thread and row (not 0)",
          "peak %s sums %s processes %s" % (
              doc["peak"], doc["sums"].get("peak"),
              [(p["pid"], p["peak"]) for p in procs]))
    rc, out, _ = memattach("report", "--from", "0.5", "--pids", cap)
    tab = out.split("Processes by live bytes")[-1].splitlines()[2:]
    tab = [x.split() for x in tab if re.match(r"\s+\d+\s+(\d+|-) ", x)]
    # PID PARENT STATE THREADS LIVE(2) COUNT SHARE PEAK TOTAL(2) TEMP(2)
    check(rc == 0 and "peak not known" in out and len(tab) >= 3 and
          all(x[8] == "-" for x in tab),
          "pool --children --from: the text's processes table shows the "
          "peak as '-', not 0 B", out[:1500])
    rc, out, _ = memattach("report", "--from", "0.5", "--pids", "--view",
                           "peak", cap)
    tab = out.split("Processes by peak bytes")[-1].splitlines()[2:]
    tab = [x.split() for x in tab if re.match(r"\s+\d+\s+(\d+|-) ", x)]
    check(rc == 0 and len(tab) >= 3 and
          all(x[4:7] == ["-", "-", "-"] for x in tab),
          "pool --children --from --view peak: the peak columns are '-'",
          out[:1500])


def truncated_stacks(exe, tmp):
    """Stacks cut at attach --max-frames: an 80-deep recursion that
    allocates at its bottom, tracked with --max-frames 8, then 128: the
    first report says how many stacks were cut (text footnote, JSON
    totals.truncated_stacks, as the attach summary), the second none, and
    its JSON rows have every frame (64 at most before, silently)"""
    code = ("import sys, time\n"
            "def rec(n, keep):\n"
            "    if n == 0:\n"
            "        keep.append(bytearray(4096))\n"
            "        for _ in range(20):\n"
            "            keep.append({i: i for i in range(10)})\n"
            "        return\n"
            "    rec(n - 1, keep)\n"
            "keep = []\n"
            "print('READY', flush=True)\n"
            "while True:\n"
            "    rec(80, keep)\n"
            "    del keep[:-100]\n"
            "    time.sleep(0.001)\n")
    for frames, cut in ((8, True), (128, False)):
        cap = os.path.join(tmp, "deep%d.cap" % frames)
        p = subprocess.Popen([exe, "-c", code], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE)
        try:
            p.stdout.readline()
            rc, out, err = memattach("attach", "-d", "1.5", "--max-frames",
                                     frames, "-o", cap, p.pid)
        finally:
            p.kill()
            p.wait()
        m = re.search(r"truncated stacks: (\S+(?: [kM])?)", out + err)
        if not check(rc == 0 and m, "deep recursion, --max-frames %d: "
                     "attach exits 0 with its summary" % frames,
                     "exit %d\n%s%s" % (rc, out, err)):
            continue
        doc, _, _ = report(cap)
        n = doc["totals"].get("truncated_stacks")
        rc, text, _ = memattach("report", "--width", "300", cap)
        foot = re.search(r"\n(\S+(?: [kM])?) allocations?'s? stacks? "
                         r"(?:was|were) cut at "
                         r"the frame limit \(attach --max-frames\); "
                         r"(?:its|their) outer frames are missing\.", text)
        if cut:
            check(n and n > 0 and foot and foot.group(1) == m.group(1),
                  "--max-frames 8: JSON totals.truncated_stacks and the "
                  "text footnote give the attach summary's count",
                  "json %s, summary %s, text %s" % (
                      n, m.group(1), foot and foot.group(0)))
            # one count per allocation at most (a comprehension's frame
            # made the payload count some stacks twice: 790 k cut
            # stacks for 535 k allocations)
            check(n and n <= doc["totals"]["allocations"],
                  "--max-frames 8: no more cut stacks than allocations",
                  "cut %s, allocations %s" % (
                      n, doc["totals"]["allocations"]))
        else:
            check(n == 0 and not foot and m.group(1) == "0",
                  "--max-frames 128: no stack cut, no footnote",
                  "json %s, summary %s" % (n, m.group(1)))
            deepest = max(len(r.get("stack") or []) for r in doc["rows"])
            check(deepest >= 82, "--max-frames 128: JSON stacks have "
                  "every frame (%d, the recursion's 81 and <module>)"
                  % deepest)


def no_python_frame(exe, tmp):
    """Thread stacks (mmaps made before the thread runs Python) are the
    <no Python frame> row in every format, and each view sums to the
    header"""
    cap = os.path.join(tmp, "spawner.cap")
    with Target(exe, "spawner.py") as t:
        a = Attach(t.pid, "--duration", 2, output=cap)
        if not check(a.wait_attached(), "spawner: attach", a.stderr):
            a.stop()
            return
        rc = a.wait(timeout=60)
    if not check(rc == 0, "spawner: attach exits 0", a.stderr):
        return
    doc, _, _ = report(cap, "--view", "total")
    tot = doc["totals"]["allocated_bytes"]
    nopy = [r for r in doc["rows"] if r["function"] == "<no Python frame>"]
    if not check(nopy and nopy[0]["total"]["bytes"] > 0,
                 "spawner: JSON has the <no Python frame> row",
                 [r["function"] for r in doc["rows"]]):
        return
    out, _, _ = report(cap, "--view", "total", "--top", "0", fmt="csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    check(any(r["function"] == "<no Python frame>" for r in rows) and
          sum(int(r["bytes"]) for r in rows) == tot,
          "spawner: csv has <no Python frame>, its rows sum to the total",
          "%d rows, %d of %d" % (len(rows),
                                 sum(int(r["bytes"]) for r in rows), tot))
    out, _, _ = report(cap, "--view", "total", fmt="collapsed")
    lines = out.splitlines()
    check(any(x.startswith("<no Python frame> ") for x in lines) and
          sum(int(x.rsplit(" ", 1)[1]) for x in lines) == tot,
          "spawner: collapsed has <no Python frame>, its stacks sum to "
          "the total", [x for x in lines if "no Python" in x])
    out, _, _ = report(cap, "--view", "total", "--top", "0", "--callers",
                       "0", "--width", "200", fmt="text")
    head = re.search(r"allocated (\S+ \S+) in (\S+(?: [kM])?) "
                     r"allocations", out)
    title = re.search(r"\ntotal: [^(]*\((\S+ \S+) in (\S+(?: [kM])?) "
                      r"allocations", out)
    check(head and title and head.groups() == title.groups() and
          "<no Python frame>" in out,
          "spawner: the text view's title sums to the header, with the "
          "<no Python frame> row", out[:900])


def still_written(exe, tmp):
    """A report of a capture that a session is still writing: it says so
    (before: 'memattach did not finish it ... the rest is lost')"""
    code = ("import time\nkeep = []\nprint('READY', flush=True)\n"
            "while True:\n    keep.append(bytes(1000))\n"
            "    del keep[:-1000]\n    time.sleep(0.001)\n")
    cap = os.path.join(tmp, "writing.cap")
    p = subprocess.Popen([exe, "-c", code], stdout=subprocess.PIPE)
    a = None
    try:
        p.stdout.readline()
        a = subprocess.Popen([MEMATTACH, "attach", "-q", "-d", "30", "-o",
                              cap, str(p.pid)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(2.5)  # the header, then a first block a second in
        rc, out, err = memattach("report", cap)
        check(rc in (0, 8) and "still being written by memattach %d" %
              a.pid in err, "a capture still being written: said so",
              "exit %s: %s" % (rc, err))
    finally:
        if a:
            a.send_signal(signal.SIGINT)
            a.wait(timeout=60)
        p.kill()
        p.wait()


def multiline_command(exe, tmp):
    """The header's command: line of a capture of python -c with three
    lines: one line, the newlines escaped"""
    cap = os.path.join(tmp, "multiline.cap")
    code = ("import sys\nprint('READY', flush=True)\n"
            "x = [bytearray(99) for _ in range(9)]; sys.stdin.readline()")
    p = subprocess.Popen([exe, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    try:
        p.stdout.readline()
        rc, _, err = memattach("attach", "-q", "-d", "0.5", "-o", cap, p.pid)
    finally:
        p.kill()
        p.wait()
    if not check(rc == 0, "multi-line command: attach exits 0", err):
        return
    rc, out, err = memattach("report", "--width", "300", "--top", "1", cap)
    want = "  command: %s -c %s\n" % (exe, code.replace("\n", "\\n"))
    check(rc == 0 and want in out,
          "multi-line command: the header's command line on one line",
          "exit %d, want %r\n%s%s" % (rc, want, out[:600], err))


def main():
    found = interpreters(announce=False)
    if not found:
        skip("report", "no Python interpreter")
        finish()
    label, exe = found[0]
    print("# interpreter: %s (%s)" % (label, exe))
    tmp = tempfile.mkdtemp(prefix="ma-report-e2e-")
    try:
        caps, stored = track(exe, tmp)
        if caps:
            doc = views(caps[0], stored)
            formats(caps[0], doc, tmp)
            diff(caps)
            damaged(caps[0], tmp)
        cap, mid = phases_capture(exe, tmp)
        if cap:
            from_range(cap, mid)
            to_range(cap, mid)
            thread_peak(cap)
        children_from(exe, tmp)
        truncated_stacks(exe, tmp)
        no_python_frame(exe, tmp)
        multiline_command(exe, tmp)
        still_written(exe, tmp)
    finally:
        for f in glob.glob(os.path.join(tmp, "*")):
            if os.path.isdir(f):
                shutil.rmtree(f, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
