"""The HTML report's thread filter, time ranges, recursion folding, hidden
import/threading frames, flame/icicle switch, sortable table and plot
hover, on real captures of tests/targets/phases.py, driven in headless
Chromium.

The page runs a script of user actions given in its URL (#steps=JSON):
each goes through the page's own handlers (a drag on the plot is
mousedown, mousemove, mouseup on its canvas; a click on a table header;
the thread <select>'s change event), and snapshots of what is shown (the
flame graph's frames, the table's rows, the plot's thread series) come
back as JSON in #ma-selftest, read with --dump-dom.  Every expectation
comes from the target: its MARK lines, the bytes it says it kept, the
wall-clock times of its phases, its recursion depth.

Aggregated capture (the default) on every interpreter; an --every-event
capture on the first one (the exact timeline path).
"""
import html
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
import urllib.parse

from ma_test import (TARGETS, Attach, Target, check, finish, interpreters,
                     marks, memattach, skip)

PHASES = os.path.join(TARGETS, "phases.py")
MARKS = marks(PHASES)
MOD_MARKS = marks(os.path.join(TARGETS, "phases_mod.py"))
DEPTH = 45


def chromium_steps(html_path, steps, tmp):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        return None, "chromium is not installed"
    prof = tempfile.mkdtemp(dir=tmp)
    url = "file://" + html_path + "#steps=" + urllib.parse.quote(
        json.dumps(steps))
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--no-first-run", "--user-data-dir=" + prof,
           "--window-size=1200,900", "--virtual-time-budget=20000",
           "--dump-dom", url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    dom = p.stdout
    errs = re.search(r'<div id="ma-errors">(.*?)</div>', dom, re.S)
    st = re.search(r'<pre id="ma-selftest"[^>]*>(.*?)</pre>', dom, re.S)
    if not st or (errs and errs.group(1).strip()) or \
            'data-ready="1"' not in dom:
        return None, "page errors: %s\n%s" % (
            errs and html.unescape(errs.group(1)), p.stderr[-800:])
    return json.loads(html.unescape(st.group(1))), ""


class Devtools:
    """Headless Chromium driven through the DevTools protocol on a pipe
    (--remote-debugging-pipe: commands on its fd 3, replies on fd 4, JSON
    ended by NUL), for real (trusted) mouse input."""

    def __init__(self, exe, tmp):
        self.r_in, self.w_in = os.pipe()    # we write, Chromium reads
        self.r_out, self.w_out = os.pipe()  # Chromium writes, we read

        def fds():
            os.dup2(self.r_in, 3)
            os.dup2(self.w_out, 4)
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--no-first-run",
             "--remote-debugging-pipe",
             "--user-data-dir=" + tempfile.mkdtemp(dir=tmp), "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=fds)
        os.close(self.r_in)
        os.close(self.w_out)
        self.buf, self.id, self.session = b"", 0, None

    def send(self, method, params=None, timeout=60):
        self.id += 1
        msg = {"id": self.id, "method": method, "params": params or {}}
        if self.session:
            msg["sessionId"] = self.session
        os.write(self.w_in, json.dumps(msg).encode() + b"\0")
        end = time.time() + timeout
        while time.time() < end:
            while b"\0" in self.buf:
                raw, self.buf = self.buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self.id:
                    if "error" in reply:
                        raise RuntimeError("%s: %s" % (method, reply["error"]))
                    return reply.get("result", {})
            r, _, _ = select.select([self.r_out], [], [], 1)
            if r:
                chunk = os.read(self.r_out, 1 << 16)
                if not chunk:
                    break
                self.buf += chunk
        raise RuntimeError("%s: no reply" % method)

    def open(self, url):
        tid = self.send("Target.createTarget", {"url": "about:blank"})
        self.session = self.send("Target.attachToTarget", {
            "targetId": tid["targetId"], "flatten": True})["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride", {
            "width": 1200, "height": 4000, "deviceScaleFactor": 1,
            "mobile": False})
        self.send("Page.navigate", {"url": url})
        end = time.time() + 60
        while time.time() < end:
            if self.eval("document.body && document.body.getAttribute("
                         "'data-ready')") == "1":
                return True
            time.sleep(0.2)
        return False

    def eval(self, expr):
        return self.send("Runtime.evaluate", {
            "expression": expr, "returnByValue": True})["result"].get("value")

    def steps(self, steps):
        return json.loads(self.eval("maSteps(%s)" % json.dumps(steps)))

    def mouse(self, kind, x, y, buttons=0):
        self.send("Input.dispatchMouseEvent", {
            "type": kind, "x": x, "y": y, "button": "left",
            "buttons": buttons, "clickCount": 1})

    def close(self):
        for fd in (self.w_in, self.r_out):
            os.close(fd)
        self.proc.kill()
        self.proc.wait()


def real_input(label, html_path, times, kept, tmp):
    """A real drag on the plot over phase 2, a real hover, a real click on
    the Count header: trusted events, as a person's"""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        skip("html: real input", "chromium is not installed")
        return
    d = Devtools(exe, tmp)
    try:
        if not check(d.open("file://" + html_path),
                     "%s: real input: the page loads" % label):
            return
        p2 = times["p2"]
        c = d.steps([["coords", p2[0] - 0.6, p2[1] + 10, "c"]])["snaps"]["c"]
        d.mouse("mouseMoved", c["x0"], c["y"])
        d.mouse("mousePressed", c["x0"], c["y"], 1)
        for k in range(1, 6):
            d.mouse("mouseMoved", c["x0"] + (c["x1"] - c["x0"]) * k / 5,
                    c["y"], 1)
        d.mouse("mouseReleased", c["x1"], c["y"])
        tip = d.eval("document.getElementById('ma-plot-tip').textContent")
        snap = d.steps([["snap", "s"]])["snaps"]["s"]
        check(snap["range"] and near(row(snap, "phase2", "phases.py",
                                         MARKS["phase2_alloc"]),
                                     kept["phase2"]) and
              row(snap, "alpha_work", "phases.py",
                  MARKS["alpha_alloc"]) is None,
              "%s: a real mouse drag on the plot selects phase 2" % label,
              "%s %s" % (snap["range"], snap["list"][:4]))
        check(re.search(r"t = [\d.]+ s\ntracked live", tip or ""),
              "%s: real hover on the plot: time and bytes" % label, tip)
        # the table moved: the range's flame graph has fewer rows
        c = d.steps([["coords", p2[0], p2[1], "c"]])["snaps"]["c"]
        d.mouse("mousePressed", c["hx"], c["hy"], 1)
        d.mouse("mouseReleased", c["hx"], c["hy"])
        lst = d.steps([["snap", "t"]])["snaps"]["t"]["list"]
        check(len(lst) > 0 and [r[4] for r in lst] ==
              sorted((r[4] for r in lst), reverse=True) and
              d.eval("document.querySelector('#ma-top th.sorted')"
                     ".textContent") == "Count",
              "%s: a real click on Count sorts the table by count" % label)
    except (RuntimeError, OSError, ValueError) as e:
        check(False, "%s: real input through the DevTools protocol" % label,
              str(e))
    finally:
        d.close()


def capture(exe, tmp, label, every):
    """Track phases.py through both phases; returns (cap, times, kept)."""
    cap = os.path.join(tmp, "%s%s.cap" % (label, "-ev" if every else ""))
    kept, times = {}, {}
    with Target(exe, "phases.py") as t:
        a = Attach(t.pid, *(["--every-event"] if every else []), output=cap)
        if not check(a.wait_attached(), "%s: attach" % label, a.stderr):
            a.stop()
            return None, None, None
        time.sleep(0.5)
        t.proc.stdin.write(b"GO1\n")
        t.proc.stdin.flush()
        while len(kept) < 4:
            line = t.readline(60).split()
            if line and line[0] == "P1":
                times["p1"] = (float(line[1]), float(line[2]))
            elif line and line[0] == "KEPT":
                kept[line[1]] = int(line[2])
            elif not line:
                break
        # the gap: aggregated captures carry sums once a second
        time.sleep(2.5)
        t.proc.stdin.write(b"GO2\n")
        t.proc.stdin.flush()
        line = t.readline(60).split()
        if line and line[0] == "P2":
            times["p2"] = (float(line[1]), float(line[2]))
        time.sleep(2)
        rc = a.stop()
        t.proc.stdin.write(b"EXIT\n")
        t.proc.stdin.flush()
    if not check(rc == 0 and "p1" in times and "p2" in times and
                 len(kept) == 4, "%s: both phases tracked" % label,
                 "exit %s, %s %s\n%s" % (rc, times, kept, a.stderr)):
        return None, None, None
    return cap, times, kept


def row(snap, fn, file_end, line):
    """bytes of the table row (function, file, line), or None"""
    for r in snap["list"]:
        if r[0] == fn and r[1].endswith(file_end) and r[2] == line:
            return r[3]
    return None


def near(got, want, tol=0.10):
    return got is not None and abs(got - want) <= tol * want


def run(label, exe, tmp, every=False):
    cap, times, kept = capture(exe, tmp, label, every)
    if not cap:
        return
    label += " every-event" if every else ""
    out = cap + ".html"
    rc, _, err = memattach("report", "-f", "html", "-o", out, cap,
                           timeout=120)
    if not check(rc == 0, "%s: report -f html" % label, err):
        return
    p1, p2 = times["p1"], times["p2"]
    end = p2[1] + 10  # past the capture's end: clamped to it
    steps = [
        ["snap", "all"],
        ["thread", "alpha-worker"], ["snap", "alpha"],
        ["thread", "beta-worker"], ["snap", "beta"],
        ["drag", p1[0] - 1, p1[1] + 1.2], ["snap", "beta_r1"],
        ["thread", None],
        ["drag", p2[0] - 0.6, end], ["snap", "r2"],
        ["drag", p1[0] - 1, p1[1] + 1.2], ["snap", "r1"],
        ["hover-plot", p1[1] + 1, "hover"],
        ["click-plot"], ["snap", "cleared"],
        ["fold", 0], ["snap", "nofold"], ["fold", 1],
        ["hide", 0], ["snap", "nohide"], ["hide", 1],
        ["orient", "flame"], ["snap", "flame"], ["orient", "icicle"],
        ["sort", "Count"], ["snap", "bycount"],
        ["sort", "Function"], ["snap", "byfn"],
    ]
    if every:
        real_input(label, out, times, kept, tmp)
    res, why = chromium_steps(out, steps, tmp)
    if res is None:
        if "not installed" in why:
            skip("html in Chromium", why)
        else:
            check(False, "%s: the page runs the steps" % label, why)
        return
    s = res["snaps"]
    ph = "phases.py"
    A = ("alpha_work", ph, MARKS["alpha_alloc"])
    B = ("beta_work", ph, MARKS["beta_alloc"])
    R = ("rec", ph, MARKS["rec_alloc"])
    P2 = ("phase2", ph, MARKS["phase2_alloc"])

    # thread filter
    al, be = s["alpha"], s["beta"]
    check(al["thread"] == "alpha-worker" and
          near(row(al, *A), kept["alpha"]) and row(al, *B) is None and
          row(al, *R) is None and row(al, *P2) is None,
          "%s: thread alpha-worker: its line only, %d bytes" %
          (label, kept["alpha"]), [r for r in al["list"][:5]])
    check(near(row(be, *B), kept["beta"]) and row(be, *A) is None and
          row(be, *R) is None,
          "%s: thread beta-worker: its line only" % label,
          [r for r in be["list"][:5]])
    check(al["tlive"] and near(max(al["tlive"]), kept["alpha"], 0.15) and
          be["tlive"] and near(max(be["tlive"]), kept["beta"], 0.15),
          "%s: the plot shows the chosen thread's live bytes" % label,
          "alpha max %s, beta max %s" % (
              al["tlive"] and max(al["tlive"]),
              be["tlive"] and max(be["tlive"])))
    check(near(al["total"], kept["alpha"], 0.2) and
          near(be["total"], kept["beta"], 0.2),
          "%s: the flame graph's total is the thread's" % label,
          "%s %s" % (al["total"], be["total"]))

    # the timeline agrees with the live view: what it has never freed
    check(s["all"]["liveEnd"] == s["all"]["total"] and
          al["liveEnd"] == al["total"],
          "%s: the timeline's blocks live at the end are the live view's"
          % label, "%s %s / %s %s" % (s["all"]["liveEnd"], s["all"]["total"],
                                      al["liveEnd"], al["total"]))

    # time ranges
    r1, r2 = s["r1"], s["r2"]
    check(r2["range"] and near(row(r2, *P2), kept["phase2"]) and
          all(row(r2, *x) is None for x in (A, B, R)),
          "%s: range over phase 2: phase2's %d bytes, nothing of phase 1"
          % (label, kept["phase2"]),
          "%s %s" % (r2["range"], r2["list"][:6]))
    check(r1["range"] and near(row(r1, *A), kept["alpha"]) and
          near(row(r1, *B), kept["beta"]) and near(row(r1, *R), kept["rec"])
          and row(r1, *P2) is None,
          "%s: range over phase 1: alpha, beta, rec; not phase 2" % label,
          "%s %s" % (r1["range"], r1["list"][:6]))
    br = s["beta_r1"]
    check(br["range"] and br["thread"] == "beta-worker" and
          near(row(br, *B), kept["beta"]) and row(br, *A) is None and
          row(br, *R) is None,
          "%s: thread and range together: beta's line only" % label,
          br["list"][:5])
    check(s["cleared"]["range"] is None and
          s["cleared"]["total"] == s["all"]["total"],
          "%s: a click on the plot clears the range" % label)
    check(re.search(r"t = [\d.]+ s\ntracked live [\d.]+ \S*B", s["hover"]),
          "%s: hover on the plot: time and bytes" % label, s["hover"])

    # recursion folding
    alls, nf = s["all"], s["nofold"]
    recs = [f for f in alls["frames"] if f["fn"] == "rec"]
    check(len(recs) == 1 and recs[0]["times"] == DEPTH and
          max(f["depth"] for f in alls["frames"]) < 15,
          "%s: %d frames of rec() folded into one, x%d" %
          (label, DEPTH, DEPTH),
          [(f["fn"], f["times"], f["depth"]) for f in recs])
    nrec = [f for f in nf["frames"] if f["fn"] == "rec"]
    check(len(nrec) == DEPTH and nf["nrows"] > DEPTH,
          "%s: unfolded: %d rows of rec()" % (label, DEPTH),
          "%d rec frames, %d rows" % (len(nrec), nf["nrows"]))

    # hidden import and threading frames
    def boot(snap):
        return [f for f in snap["frames"]
                if "importlib" in f["file"] or
                (f["file"].endswith("threading.py") and
                 f["fn"].split(".")[-1] in ("_bootstrap", "_bootstrap_inner",
                                            "run"))]
    imp = [f for f in s["all"]["frames"] if f["file"].endswith("phases_mod.py")]
    check(not boot(s["all"]) and imp and
          any("importlib" in f["file"] for f in boot(s["nohide"])) and
          any(f["fn"].endswith("_bootstrap_inner")
              for f in boot(s["nohide"])),
          "%s: import system and threading bootstrap frames hidden, and "
          "shown when asked" % label,
          "hidden: %s; shown: %s" % (
              boot(s["all"])[:3],
              sorted(set((f["fn"], f["file"]) for f in boot(s["nohide"])))))
    check(imp and near(sum(f["self"] for f in imp), 100 * 2000, 0.3),
          "%s: the module's import-time allocation still counted" % label,
          imp)

    # flame / icicle
    def y_of(snap, depth):
        return [f["y"] for f in snap["frames"] if f["depth"] == depth]
    check(y_of(alls, 1) and y_of(alls, 2) and
          max(y_of(alls, 1)) < min(y_of(alls, 2)) and
          min(y_of(s["flame"], 1)) > max(y_of(s["flame"], 2)),
          "%s: icicle: callers above; flame: callers below" % label)

    # the table: every row, sortable
    gens = [(("gen%d" % i), "gen_lines.py", 4 * i + 3) for i in range(40)]
    gb = [row(alls, *g) for g in gens]
    want = [(2 + i) * (1000 + 100 * i) for i in range(40)]
    check(all(b is not None and w <= b <= w * 1.1 + 100 * (2 + i)
              for i, (b, w) in enumerate(zip(gb, want))),
          "%s: the 40 generated lines in the table with their bytes" %
          label, list(zip(gb, want))[:6])
    nl = len(alls["list"])
    check(nl > 40 and len(alls["rows"]) == min(nl, 100),
          "%s: the table has every row (%d), 100 a page" % (label, nl),
          "%d rows shown, %s" % (len(alls["rows"]), alls["page"]))
    bc, bf = s["bycount"]["list"], s["byfn"]["list"]
    check([r[4] for r in bc] == sorted((r[4] for r in bc), reverse=True) and
          [r[3] for r in alls["list"]] ==
          sorted((r[3] for r in alls["list"]), reverse=True) and
          [r[0] for r in bf] == sorted(r[0] for r in bf),
          "%s: table sorted by bytes, then by a click on Count, on "
          "Function" % label)


def main():
    tmp = tempfile.mkdtemp(prefix="memattach-html-")
    try:
        for k, (label, exe) in enumerate(interpreters()):
            run(label, exe, tmp)
            if k == 0:
                run(label, exe, tmp, every=True)
    finally:
        if not os.environ.get("MA_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept", tmp)
    finish()


if __name__ == "__main__":
    main()
