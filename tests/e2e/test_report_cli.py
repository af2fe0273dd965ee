"""memattach report as a user meets it, on synthetic captures whose every
figure is known (written by tests/unit/test_report.c, report/write_fixtures;
the arithmetic is in its comments): option errors, exit codes, where the
output goes, progress on a terminal, truncated and empty captures, the
caller trees of a deep recursion, --diff, --thread and --threads, the pprof
profile read by `go tool pprof`, the speedscope file, -f stats.

No target process is needed: every check runs the real memattach binary on
files, so the whole script takes a few seconds.
"""
import gzip
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from ma_test import (MEMATTACH, check, finish, memattach, on_terminal,
                     skip)

BUILD = os.environ.get("MA_BINARY_DIR",
                       os.path.join(os.path.dirname(MEMATTACH)))
EXIT_USAGE, EXIT_CAPTURE, EXIT_PARTIAL = 2, 7, 8


def fixtures(tmp):
    exe = os.path.join(BUILD, "tests", "test_report")
    p = subprocess.run([exe, "--jobs", "1", "--filter",
                        "report/write_fixtures"],
                       env=dict(os.environ, MA_REPORT_FIXTURES=tmp),
                       capture_output=True, text=True, timeout=120)
    fx = {n[:-4]: os.path.join(tmp, n) for n in os.listdir(tmp)
          if n.endswith(".cap")}
    check(p.returncode == 0 and len(fx) == 6, "fixtures written (and "
          "each loads, or fails, as it should)", p.stdout + p.stderr)
    if len(fx) != 6:
        raise RuntimeError("writing the fixtures: %s%s" % (p.stdout,
                                                           p.stderr))
    return fx


def option_errors(fx):
    # issue 11, defect 2: the message names the option, not its value
    for args, opt in ((["--group", "thread"], "--group"),
                      (["--view", "leak"], "--view"),
                      (["-f", "svg"], "--format"),
                      (["--top", "many"], "--top"),
                      (["--color", "pink"], "--color")):
        rc, out, err = memattach("report", *args, fx["scenario"])
        first = err.splitlines()[0] if err else ""
        check(rc == EXIT_USAGE and first.startswith(
            "memattach: report: bad value for %s: '%s'" % (opt, args[1])),
            "option error names %s and the value" % opt, err)
    # one strict rule for numbers (attacher/cli/cli.c): strtol and strtod
    # took a blank, a sign, "-0" and hexadecimal seconds; and the error is
    # one line (the whole usage followed it)
    for args in ((["--top", "+5"]), (["--top", " 5"]), (["--callers", "-0"]),
                 (["--width", "80x"]), (["--pid", " 7"]),
                 (["--from", "0x10"]), (["--to", "nan"]),
                 (["--temporary-window", "99999999999"])):
        rc, out, err = memattach("report", *args, fx["scenario"])
        check(rc == EXIT_USAGE and err.splitlines() == [
            err.splitlines()[0]] and err.startswith(
            "memattach: report: bad value for %s: '%s' (" % tuple(args)),
            "report %s %r: refused, one line" % tuple(args),
            "exit %d: %s" % (rc, err))
    # --pids of a capture of one process: said, not a table of "(none)"
    rc, out, err = memattach("report", "--pids", fx["scenario"])
    check(rc == 0 and "Processes: one, " in out and "(none)" not in out,
          "report --pids of one process: said so", out[-600:])
    # out of range: the bound is said (1e30 named "more than 0" alone)
    rc, out, err = memattach("report", "--to", "1e30", fx["scenario"])
    check(rc == EXIT_USAGE and "at most 1e9" in err,
          "report --to 1e30: refused, its upper bound said", err)
    rc, out, err = memattach("report", "--help")
    check(rc == 0 and re.search(r"^ +--no-color +text: ", out, re.M),
          "report --help lists --no-color", out)
    rc, out, err = memattach("report", "--no-color", "--color", "always",
                             "--no-color", fx["scenario"])
    check(rc == 0 and "\x1b[" not in out, "--no-color: no colour", out)
    colored = os.path.join(os.path.dirname(fx["scenario"]), "color.txt")
    rc, _, err = memattach("report", "--color", "always", "-o", colored,
                           fx["scenario"])
    with open(colored) as f:
        text = f.read() if rc == 0 else ""
    check(rc == 0 and "\x1b[" in text,
          "--color always -o FILE: the file has colour (it was dropped)",
          err)
    rc, out, err = memattach("--help")
    check(rc == 0 and all(f in out for f in
                          ("text", "html", "pprof", "speedscope",
                           "collapsed", "csv", "json", "stats")),
          "memattach --help lists every report format", out)


def output_and_exit_codes(fx, tmp):
    # defect 8: -o into a missing directory fails before the capture is
    # read (a damaged capture is then never looked at), exit 7
    bad = os.path.join(tmp, "damaged.cap")
    with open(fx["scenario"], "rb") as f:
        blob = bytearray(f.read())
    for k in range(200, len(blob), 37):
        blob[k] ^= 0x5a
    with open(bad, "wb") as f:
        f.write(blob)
    missing = os.path.join(tmp, "no-such-dir", "r.json")
    rc, out, err = memattach("report", "-f", "json", "-o", missing, bad)
    check(rc == EXIT_CAPTURE and missing in err and "No such file" in err,
          "-o into a missing directory: exit 7 naming the output, before "
          "the capture is read", "exit %d: %s" % (rc, err))

    # defect 5: a truncated capture gives its report and exit 8 (partial)
    # in every format; a capture with no events exits 7
    for fmt in ("text", "json", "csv", "collapsed", "speedscope"):
        rc, out, err = memattach("report", "-f", fmt, fx["truncated"])
        check(rc == EXIT_PARTIAL and out and "truncated" in (out + err),
              "truncated capture, -f %s: the report, and exit 8" % fmt,
              "exit %d: %s" % (rc, err))
    # a truncated capture diffed with itself: its warning once (twice,
    # one per side, before)
    for fmt in ("text", "csv"):
        rc, out, err = memattach("report", "-f", fmt, "--diff",
                                 fx["truncated"], fx["truncated"])
        check(rc == EXIT_PARTIAL and (out + err).count("warning:") == 1,
              "truncated capture diffed with itself, -f %s: one warning" %
              fmt, "exit %d: %s%s" % (rc, out[-400:], err))
    rc, out, err = memattach("report", fx["empty-truncated"])
    check(rc == EXIT_CAPTURE and "no events" in err and not out,
          "capture with no events: exit 7, says so", "exit %d: %s%s" %
          (rc, out, err))
    rc, out, err = memattach("report", fx["scenario"])
    check(rc == 0, "complete capture: exit 0", err)
    # a standard output that cannot be written (closed, a full disk) is
    # exit 7, said once, as for every other command: report exited 1
    # ("internal error") and said it twice
    for how, fmt in (("closed", "text"), ("/dev/full", "json")):
        if how == "closed":
            p = subprocess.run("exec %s report -f %s %s >&-" %
                               (MEMATTACH, fmt, fx["scenario"]),
                               shell=True, capture_output=True, text=True,
                               timeout=60)
        else:
            with open("/dev/full", "w") as full:
                p = subprocess.run([MEMATTACH, "report", "-f", fmt,
                                    fx["scenario"]], stdout=full,
                                   stderr=subprocess.PIPE, text=True,
                                   timeout=60)
        check(p.returncode == EXIT_CAPTURE and
              p.stderr.count("memattach:") == 1,
              "report -f %s, stdout %s: exit 7, one message" % (fmt, how),
              "exit %d: %s" % (p.returncode, p.stderr))
    # a FIFO is refused as any other file that is not a regular one: the
    # snapshot and capture sniffers opened it without O_NONBLOCK and
    # waited for a writer forever
    fifo = os.path.join(tmp, "fifo.cap")
    os.mkfifo(fifo)
    for args in (["report", fifo], ["report", fx["scenario"], "--diff",
                                    fifo]):
        try:
            rc, out, err = memattach(*args, timeout=10)
        except subprocess.TimeoutExpired:
            rc, err = None, "hung (no writer on the FIFO)"
        check(rc == EXIT_CAPTURE and "not a regular file" in err,
              "report %s: a FIFO is refused at once (exit 7)" %
              " ".join(args[1:]).replace(tmp, "TMP"),
              "exit %s: %s" % (rc, err))
    # -o naming the capture itself (or the --diff one): the report was
    # renamed over it, and the capture was gone
    own = os.path.join(tmp, "own.cap")
    shutil.copy(fx["scenario"], own)
    for args in (["-f", "json", "-o", own, own],
                 ["-f", "csv", "-o", own, fx["scenario"], "--diff", own]):
        rc, out, err = memattach("report", *args)
        with open(own, "rb") as f:
            kept = f.read(8) == b"MEMATCAP"
        check(rc == EXIT_CAPTURE and "being reported" in err and kept,
              "report -o THE CAPTURE%s: refused (exit 7), the capture "
              "kept" % (" (--diff)" if "--diff" in args else ""),
              "exit %d: %s" % (rc, err))
    # another memattach that only reads the capture (a second report of
    # it running) is not a session writing it: the note named any
    # memattach with the file open.  A copy of sleep, so that its comm is
    # "memattach", holds it: read-only, then read-write as a session does
    fake = os.path.join(tmp, "memattach")
    shutil.copy(shutil.which("sleep"), fake)
    for mode, writes in (("rb", False), ("r+b", True)):
        with open(fx["scenario"], mode) as held:
            p = subprocess.Popen([fake, "30"], stdin=held)
        try:
            time.sleep(0.2)
            rc, out, err = memattach("report", fx["scenario"])
        finally:
            p.kill()
            p.wait()
        noted = "still being written by memattach %d" % p.pid in err
        check(rc == 0 and noted == writes,
              "a memattach holding the capture %s: %s" %
              ("for writing" if writes else "read-only",
               "'still being written'" if writes else "no such note"),
              "exit %d: %s" % (rc, err))
    # a symbolic link at -o is neither written through nor replaced (the
    # old binary renamed the report over it), as a capture's -o
    victim = os.path.join(tmp, "victim.txt")
    link = os.path.join(tmp, "link.json")
    with open(victim, "w") as f:
        f.write("mine\n")
    os.symlink(victim, link)
    rc, out, err = memattach("report", "-f", "json", "-o", link,
                             fx["scenario"])
    check(rc == EXIT_CAPTURE and "symbolic link" in err and
          os.path.islink(link) and open(victim).read() == "mine\n",
          "report -o SYMLINK: refused (exit 7), the link left alone",
          "exit %d: %s" % (rc, err))


def terminal(fx, tmp):
    # defect 9: speedscope, like html and pprof, is not dumped on a
    # terminal: it goes to FILE.speedscope.json in the current directory
    rc, out = on_terminal(["report", "-f", "speedscope", fx["scenario"]],
                          cwd=tmp)
    dest = os.path.join(tmp, "scenario.speedscope.json")
    check(rc == 0 and os.path.exists(dest) and '"frames"' not in out and
          "scenario.speedscope.json" in out,
          "speedscope on a terminal: written to FILE.speedscope.json", out)
    # defect 8: on a terminal, reading a capture shows progress, and the
    # line is erased before the report
    rc, out = on_terminal(["report", "-f", "json", "-o",
                           os.path.join(tmp, "p.json"), fx["scenario"]],
                          cwd=tmp)
    check(rc == 0 and "reading scenario.cap" in out and "\x1b[K" in out,
          "progress while reading, on a terminal", repr(out))
    rc, out, err = memattach("report", "-f", "json", fx["scenario"])
    check(rc == 0 and "reading" not in err,
          "no progress line when stderr is not a terminal", err)


def threads(fx):
    # threads as a dimension: --threads lists each thread with its
    # figures (scenario: main 100 keeps 3000 B live in 2 blocks, peak
    # 1700, total 3780, temporary 80; worker 101: 0, 4300, 4300, 300)
    rc, out, err = memattach("report", "--threads", "--width", "100",
                             fx["scenario"])
    rows = {m.group(2): m.group(0) for m in re.finditer(
        r"^ +(\d+)  (\w+) +(.*)$", out, re.M)}
    check(rc == 0 and re.search(r"100 +main +2\.93 KiB +2 +100\.0% +"
                                r"1\.66 KiB +3\.69 KiB +80 B", out) and
          re.search(r"101 +worker +0 B +0 +0\.0% +4\.20 KiB +4\.20 KiB "
                    r"+300 B", out),
          "--threads: a line per thread with every view's bytes", out)
    rc, out, err = memattach("report", "--threads", "-f", "csv", "--view",
                             "peak", fx["scenario"])
    check(rc == 0 and out.splitlines()[1:] ==
          ["101,worker,0,0,4300,2,4300,2,300,1",
           "100,main,3000,2,1700,2,3780,6,80,3"],
          "--threads -f csv: exact figures, by the view (peak)", out)
    rc, out, err = memattach("report", "-f", "json", fx["scenario"])
    doc = json.loads(out) if rc == 0 else {}
    th = {t["name"]: t for t in doc.get("threads", [])}
    check(th.get("main", {}).get("tid") == 100 and
          th["main"]["live"] == {"bytes": 3000, "count": 2} and
          th.get("worker", {}).get("peak") == {"bytes": 4300, "count": 2},
          "json lists the threads with their figures", doc.get("threads"))
    rc, out, err = memattach("report", "--threads", "-f", "html",
                             fx["scenario"])
    check(rc == EXIT_USAGE and "--threads" in err,
          "--threads with another format: usage error", err)
    # defect 3: a --thread that matches nothing is an error that lists
    # the capture's threads, not an empty report with exit 0
    rc, out, err = memattach("report", "--thread", "nobody", fx["scenario"])
    check(rc == EXIT_USAGE and not out and '100 "main"' in err and
          '101 "worker"' in err, "--thread matching nothing: exit 2, names "
          "the capture's threads", "exit %d: %s" % (rc, err))
    rc, out, err = memattach("report", "--thread", "worker", fx["scenario"])
    check(rc == 0 and "2 frees of their blocks" in out,
          "--thread: the header's frees are the thread's blocks' (2, not "
          "the capture's 7)", out)


def go_pprof(args, tmp):
    p = subprocess.run(["go", "tool", "pprof"] + args, capture_output=True,
                       text=True, timeout=120,
                       env=dict(os.environ, HOME=tmp,
                                GOCACHE=os.path.join(tmp, "gocache"),
                                PPROF_TMPDIR=tmp))
    return p.returncode, p.stdout + p.stderr


def pprof(fx, tmp):
    # defect 6, and threads: read by pprof itself
    if not shutil.which("go"):
        skip("pprof through go tool pprof", "Go (golang-go) not installed")
        return
    pb = os.path.join(tmp, "s.pb.gz")
    rc, out, err = memattach("report", "-f", "pprof", "-o", pb,
                             fx["scenario"])
    rc, out = go_pprof(["-tags", pb], tmp)
    # live view (inuse_space): main holds all 3000 B, worker none
    check(rc == 0 and re.search(r"thread: Total 2\.9kB\s+2\.9kB \(\s*100%\)"
                                r": main", out) and
          re.search(r"tid: Total 2\.9kB\s+2\.9kB \(\s*100%\): 100", out)
          and "bytes:" in out,
          "go tool pprof -tags: thread, tid and bytes labels", out)
    check("Main binary filename not available" not in out,
          "pprof knows the main binary (a mapping)", out)
    rc, out = go_pprof(["-sample_index=alloc_space", "-tagfocus=thread=worker",
                        "-top", pb], tmp)
    check(rc == 0 and "Showing nodes accounting for 4300B" in out and
          re.search(r"4000B .* helper$", out, re.M),
          "go tool pprof -sample_index=alloc_space -tagfocus=thread=worker: "
          "the worker's 4300 B", out)
    rc, out, err = memattach("report", "-f", "pprof", "--view", "temporary",
                             "-o", pb, fx["scenario"])
    rc, out = go_pprof(["-sample_index=temporary_space", "-top", pb], tmp)
    check(rc == 0 and "Type: temporary_space" in out and
          "Total samples = 380B" in out,
          "--view temporary: temporary_space, not alloc_space (380 B)", out)
    rc, out, err = memattach("report", "-f", "pprof", "-o", pb,
                             fx["truncated"])
    rc2, txt = go_pprof(["-raw", pb], tmp)
    check(rc == EXIT_PARTIAL and "TRUNCATED" in txt,
          "truncated capture: the profile says so, exit 8", txt[:600])


# What speedscope's file format requires (its documented schema, the
# parts a sampled profile uses), as a JSON schema of our own
SPEEDSCOPE = {
    "type": "object",
    "required": ["$schema", "profiles", "shared"],
    "properties": {
        "$schema": {"enum": [
            "https://www.speedscope.app/file-format-schema.json"]},
        "name": {"type": "string"},
        "exporter": {"type": "string"},
        "activeProfileIndex": {"type": "number"},
        "shared": {
            "type": "object", "required": ["frames"],
            "properties": {"frames": {"type": "array", "items": {
                "type": "object", "required": ["name"],
                "properties": {"name": {"type": "string"},
                               "file": {"type": "string"},
                               "line": {"type": "number"},
                               "col": {"type": "number"}}}}}},
        "profiles": {"type": "array", "items": {
            "type": "object",
            "required": ["type", "name", "unit", "startValue", "endValue",
                         "samples", "weights"],
            "properties": {
                "type": {"enum": ["sampled"]},
                "name": {"type": "string"},
                "unit": {"enum": ["bytes", "microseconds", "milliseconds",
                                  "nanoseconds", "none", "seconds"]},
                "startValue": {"type": "number"},
                "endValue": {"type": "number"},
                "samples": {"type": "array", "items": {
                    "type": "array", "items": {"type": "number"}}},
                "weights": {"type": "array",
                            "items": {"type": "number"}}}}},
    },
}


def speedscope(fx):
    try:
        import jsonschema
    except ImportError:
        jsonschema = None
    docs = {}
    for name in ("scenario", "deep", "truncated"):
        rc, out, err = memattach("report", "-f", "speedscope", "-o", "-",
                                 fx[name])
        docs[name] = json.loads(out) if out else {}
        if jsonschema:
            try:
                jsonschema.validate(docs[name], SPEEDSCOPE)
                err = None
            except jsonschema.ValidationError as e:
                err = str(e)[:500]
            check(err is None, "speedscope (%s): valid against the file "
                  "format's schema" % name, err)
        d = docs[name]
        frames = d.get("shared", {}).get("frames", [])
        check(d and all(0 <= i < len(frames) for p in d["profiles"]
                        for smp in p["samples"] for i in smp) and
              all(len(p["samples"]) == len(p["weights"]) and
                  sum(p["weights"]) == p["endValue"] for p in d["profiles"]),
              "speedscope (%s): frame indices in range, weights add up to "
              "endValue" % name)
    if not jsonschema:
        skip("speedscope schema", "python3-jsonschema not installed")
    # defect 7: a frame per function: rec, called on line 21 and
    # allocating on line 22, is one frame, named with its def line
    names = [f["name"] for f in docs["deep"]["shared"]["frames"]]
    check(names.count("rec (/app/deep.py:20)") == 1 and
          not [n for n in names if n.startswith("rec ") and
               n != "rec (/app/deep.py:20)"],
          "speedscope: one frame per function, keyed by its def line", names)
    # threads: after the four views, one profile per thread
    profs = [p["name"] for p in docs["scenario"]["profiles"]]
    check(len(profs) == 5 and profs[4] == "live bytes of thread main (100)"
          and docs["scenario"]["profiles"][4]["endValue"] == 3000,
          "speedscope: a profile per thread with bytes in the view", profs)
    # defect 5: a cut capture says so in the file itself
    t = docs["truncated"]
    check("TRUNCATED" in t.get("name", "") and
          all("TRUNCATED" in p["name"] for p in t.get("profiles", [])),
          "speedscope: a truncated capture says so in its names",
          t.get("name"))


def diff(fx):
    # defect 4: --diff says what shrank, that it compares two windows
    # (with their lengths and rates), refuses captures of different
    # programs and captures with no events; its CSV key is readable
    a, b = fx["scenario"], fx["scenario-b"]
    rc, out, err = memattach("report", b, "--diff", a, "--width", "100")
    check(rc == 0 and "SHRANK" in out and
          re.search(r"-4\.88 KiB +4\.88 KiB +0 B  alloc_b \(/app/b\.py:22\)",
                    out) and "0 of 3 locations grew; 1 shrank" in out,
          "--diff text: lists what shrank (alloc_b, -5000 B)", out)
    check("3.0 s tracked" in out and "compares the two windows" in out and
          "/s)" in out, "--diff text: says it compares two windows, with "
          "their lengths and rates", out)
    rc, out, err = memattach("report", "-f", "json", b, "--diff", a)
    d = json.loads(out) if rc == 0 else {}
    check(d.get("compares") == "windows" and d.get("rows") == [] and
          len(d.get("shrank_rows", [])) == 1 and
          d["shrank_rows"][0]["delta"]["bytes"] == -5000 and
          d["before"]["duration_ns"] == 3000000000,
          "--diff json: shrank_rows, each window's length", out)
    rc, out, err = memattach("report", "-f", "csv", b, "--diff", a)
    check(rc == 0 and "\x1f" not in out and
          out.splitlines()[1:] == ["alloc_b,/app/b.py,22,5000,1,0,0,-5000,"
                                   "-1,alloc_b (/app/b.py:22)"],
          "--diff csv: the row that shrank, a readable key", repr(out))
    rc, out, err = memattach("report", a, "--diff", fx["other"])
    check(rc == EXIT_USAGE and "different programs" in err and
          "python3 other.py" in err and not out,
          "--diff of two programs: refused, exit 2", err)
    rc, out, err = memattach("report", a, "--diff", fx["other"], "--force")
    check(rc == 0 and "different programs" in out,
          "--diff --force: compared, with a note", out + err)
    rc, out, err = memattach("report", a, "--diff", fx["empty-truncated"])
    check(rc == EXIT_CAPTURE and "no events" in err,
          "--diff with a capture of no events: exit 7", err)
    rc, out, err = memattach("report", a, "--diff", fx["truncated"],
                             "--force")
    check(rc == EXIT_PARTIAL and "warning: TRUNCATED" in out,
          "--diff with a cut capture: exit 8, the text says so", out + err)
    rc, out, err = memattach("report", "-f", "csv", a, "--diff",
                             fx["truncated"], "--force")
    check(rc == EXIT_PARTIAL and "truncated" in err,
          "--diff -f csv with a cut capture: exit 8, warned on stderr", err)


def stats(fx):
    # -f stats on the scenario: 2 pymalloc blocks (4300 B), 6 malloc ones
    # (3780 B); alloc_a allocates most often (4 times); the largest block
    # is the worker's 4000 B in helper
    rc, out, err = memattach("report", "-f", "stats", "--width", "100",
                             fx["scenario"])
    check(rc == 0 and re.search(r"pymalloc +2 +4\.20 KiB +53\.2%", out) and
          re.search(r"malloc +6 +3\.69 KiB +46\.8%", out) and
          re.search(r"Locations by number of allocations.*\n.*\n +4 +"
                    r"3\.63 KiB  alloc_a \(/app/a\.py:11\)", out) and
          re.search(r"Largest single allocations:\n.*\n +3\.91 KiB "
                    r"pymalloc +worker \(101\) +1\.0 s  helper", out),
          "-f stats: by allocator, by count, the largest", out)
    rc, out, err = memattach("report", "-f", "json", fx["scenario"])
    st = json.loads(out)["stats"] if rc == 0 else {}
    check(st.get("by_allocator", {}).get("malloc") ==
          {"bytes": 3780, "count": 6} and
          [b["size"] for b in st.get("largest", [])] ==
          [4000, 2000, 1000, 700, 300, 50, 20, 10] and
          st["largest"][0]["tid"] == 101 and
          sum(v["count"] for h in st["histogram"] for k, v in h.items()
              if k != "le") == 8,
          "json: the same statistics", st)


def ranges(fx):
    # --from/--to on the scenario (samples at 1, 2 and 3 s): the header
    # says the range counted; --to T1 --diff-to T2 is one capture's growth
    # between two moments (alloc_a: 1000 B live at 1 s, 3000 B at 3 s)
    rc, out, err = memattach("report", "--from", "1.5", "--view", "total",
                             "-f", "json", fx["scenario"])
    d = json.loads(out) if rc == 0 else {}
    check(d.get("sums", {}).get("total") == {"bytes": 2030, "count": 3} and
          d.get("range", {}).get("start_ns") == 2000000000 and
          d["totals"]["allocations"] == 3,
          "--from 1.5: only what was allocated from the 2 s sample", out)
    rc, out, err = memattach("report", "--to", "1.5", fx["scenario"])
    check(rc == 0 and "only the range 0.0 s - 2.0 s" in out and
          "allocated 5.91 KiB in 5 allocations, 2 frees" in out,
          "--to 1.5: figures as of the 2 s sample, the header says so", out)
    # past the last sample: the whole capture, and the header says why
    rc, out, err = memattach("report", "--to", "60", fx["scenario"])
    check(rc == 0 and "--to 60.0 s is after the capture's last sample" in
          out, "--to past the end: said in the header", out + err)
    rc, out, err = memattach("report", "--to", "1", "--diff-to", "3",
                             "-f", "json", fx["scenario"])
    d = json.loads(out) if rc == 0 else {}
    rows = d.get("rows", [])
    check(d.get("compares") == "moments" and len(rows) == 1 and
          rows[0]["function"] == "alloc_a" and
          rows[0]["before"]["bytes"] == 1000 and
          rows[0]["after"]["bytes"] == 3000,
          "--to 1 --diff-to 3: growth between two moments of one capture",
          out + err)
    rc, out, err = memattach("report", "--from", "2", "--to", "1",
                             fx["scenario"])
    check(rc == EXIT_USAGE, "--from after --to: usage error", err)
    # --from just past the last sample (3 s): the message must not say
    # "--from 3.0 s is after the last sample (3.0 s)"
    rc, out, err = memattach("report", "--from", "3.04", fx["scenario"])
    check(rc == EXIT_USAGE and "--from 3.04 s is after the last sample" in
          err and "(3.000 s)" in err,
          "--from past the last sample: both times told apart", err)


def main():
    tmp = tempfile.mkdtemp(prefix="ma-report-cli-")
    try:
        fx = fixtures(tmp)
        option_errors(fx)
        output_and_exit_codes(fx, tmp)
        terminal(fx, tmp)
        threads(fx)
        pprof(fx, tmp)
        speedscope(fx)
        diff(fx)
        stats(fx)
        ranges(fx)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
