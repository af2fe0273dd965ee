"""attach --live in a real terminal: tmux drives it and reads its screen.

On every interpreter, a target with two sites growing at known rates (one
four times the other) and one of many small blocks
(tests/targets/two_rates.py) is tracked by `memattach attach --live` in a
120x40 tmux window.  The screen must show the header (PID, the target's
Python version), the fast site's function and file:line as the top row,
its growth rate within a wide factor of the rate the target itself
reports (speeds vary under load: no timed assertion), the slow site's rate
about a quarter of it; `s` must sort by growth then by blocks (the
many-blocks line on top); `t` must show the lines by thread (the slow
site, in a thread of its own, under that thread's ID); `q` must detach
(exit 0, the capture written and readable, the target still running and
no longer tracked) and give the shell its screen back: the main screen,
the cursor shown, the terminal in its modes of before (icanon, echo).
A narrower window must be followed (SIGWINCH).  On one interpreter also:
Ctrl-C stops it alike, --duration shows the time left, and a memattach
killed by SIGABRT in the view gives the terminal back before it dies, and
SIGHUP stops it as Ctrl-C does.

tmux runs its own server (-L) in the foreground (-D): a daemonised server
needs /dev/null to be the character device, which it is not on every test
machine.  The first window of such a server did not take keys here, so the
shell is a second window.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ma_test import (MEMATTACH, TARGETS, Target, check,  # noqa: E402
                     children, finish, interpreters, marks, memattach,
                     py_version, report_json, row_at, skip)

SCRIPT = os.path.join(TARGETS, "two_rates.py")
MARK = marks(SCRIPT)
FAST, SLOW = 32 * 1024, 8 * 1024
UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


class Tmux:
    def __init__(self, name):
        self.name = name
        self.server = subprocess.Popen(
            ["tmux", "-D", "-L", name, "-f", os.devnull],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        end = time.time() + 20
        while True:
            if self.tmux("new-session", "-d", "-x", "120", "-y", "40",
                         "-s", "t", "cat").returncode == 0:
                break
            if time.time() > end:
                raise RuntimeError("tmux -D -L %s: no server" % name)
            time.sleep(0.1)
        env = ["env", "PS1=$ ", "bash", "--norc", "--noprofile"]
        self.tmux("new-window", "-t", "t", "-n", "sh", " ".join(
            "'%s'" % a for a in env))
        self.wait_for(lambda s: "$" in s, 20)

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.name] + list(args),
                              capture_output=True, text=True, timeout=30)

    def screen(self):
        # -J: lines the width wrapped joined again
        return self.tmux("capture-pane", "-p", "-J", "-t", "t:sh").stdout

    def flags(self):
        out = self.tmux("display", "-p", "-t", "t:sh",
                        "#{alternate_on} #{cursor_flag}").stdout.split()
        return tuple(int(x) for x in out) if len(out) == 2 else (None, None)

    def keys(self, *keys, literal=False):
        self.tmux("send-keys", "-t", "t:sh", *(["-l"] if literal else []),
                  *keys)

    def type_line(self, text):
        self.keys(text, literal=True)
        self.keys("Enter")

    def wait_for(self, cond, timeout):
        """The screen once cond(screen) holds, or the last one seen"""
        end = time.time() + timeout
        s = self.screen()
        while not cond(s) and time.time() < end:
            time.sleep(0.3)
            s = self.screen()
        return s

    def close(self):
        self.tmux("kill-server")
        try:
            self.server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()


def exited(screen, tag):
    """memattach's exit code as the shell echoed it after the run named
    tag (not the DONE-tag=$? of the command line), or None"""
    m = re.search(r"^DONE-%s=(\d+)" % re.escape(tag), screen, re.M)
    return m.group(1) if m else None


def rate(text):
    """'+1.50 MiB/s' -> bytes per second; None for '-' or garbage"""
    m = re.fullmatch(r"([+-]?)([\d.]+) (B|KiB|MiB|GiB)/s", text.strip())
    if not m:
        return None
    v = float(m.group(2)) * UNITS[m.group(3)]
    return -v if m.group(1) == "-" else v


def rows(screen):
    """The table's rows: (live, growth, blocks, location), best first.
    Columns are fixed: '%10s %12s %9s  %s'."""
    lines = screen.splitlines()
    for i, line in enumerate(lines):
        if "FUNCTION (FILE:LINE)" in line:
            return [(r[0:10].strip(), r[11:23].strip(), r[24:33].strip(),
                     r[35:].strip()) for r in lines[i + 1:] if r.strip()]
    return []


def is_site(loc, func, mark):
    return "%s (" % func in loc and loc.endswith(
        "two_rates.py:%d)" % MARK[mark])


def target_rate(t, lines):
    """Ticks per second of the target over what it printed: its own
    clock, its own count"""
    lines += [l for l in t.drain() if l.startswith("ticks ")]
    if len(lines) < 2:
        return None
    a, b = lines[max(0, len(lines) - 20)].split(), lines[-1].split()
    dt = float(b[2]) - float(a[2])
    return (int(b[1]) - int(a[1])) / dt if dt > 0 else None


def term_modes(tm, tmp):
    path = os.path.join(tmp, "stty.txt")
    if os.path.exists(path):
        os.unlink(path)
    tm.type_line("stty -a > %s" % path)
    end = time.time() + 20
    while time.time() < end and not (os.path.exists(path) and
                                     os.path.getsize(path)):
        time.sleep(0.2)
    time.sleep(0.2)
    try:
        with open(path) as f:
            return set(f.read().replace(";", " ").split())
    except OSError:
        return set()


def one(label, exe, tm, tmp, ctrl_c):
    cap = os.path.join(tmp, "live-%s.cap" % label)
    tag = "live-" + label
    ver = "%d.%d.%d" % py_version(exe)
    with Target(exe, "two_rates.py") as t:
        ticks = []
        tm.type_line("clear; %s attach --live -o %s %d; echo DONE-%s=$?" %
                     (MEMATTACH, cap, t.pid, tag))

        def ready(s):
            r = rows(s)
            m = re.search(r"python \S+\s+(\d+) s", s)
            return (m and int(m.group(1)) >= 6 and r and
                    rate(r[0][1]) is not None) or exited(s, tag)
        s = tm.wait_for(ready, 60)
        alt, cursor = tm.flags()
        check(alt == 1 and cursor == 0,
              "%s: the view on the alternate screen, cursor hidden" % label,
              "alternate_on %s, cursor_flag %s" % (alt, cursor))
        check("memattach --live  PID %d  python %s" % (t.pid, ver) in s,
              "%s: the header names PID %d and python %s" %
              (label, t.pid, ver), s)
        check(re.search(r"^live \S+ \S+ \([+-]", s, re.M) and
              "allocations tracked" in s,
              "%s: the header has live bytes, their rate, allocations" %
              label, s)
        r = rows(s)
        check(r and is_site(r[0][3], "grow_fast", "fast"),
              "%s: the fast site (line %d) is the top row" %
              (label, MARK["fast"]), s)
        fast = next((rate(x[1]) for x in r
                     if is_site(x[3], "grow_fast", "fast")), None)
        slow = next((rate(x[1]) for x in r
                     if is_site(x[3], "grow_slow", "slow")), None)
        tps = target_rate(t, ticks)
        want = tps * FAST if tps else None
        check(fast and want and want / 3 < fast < want * 3,
              "%s: its growth %s/s is within a factor 3 of the target's "
              "own %s/s" % (label, fast, want), s)
        check(fast and slow and 2 < fast / slow < 8,
              "%s: the slow site grows about a quarter as fast (%s, %s)" %
              (label, fast, slow), s)

        # a narrower window: the view follows it (SIGWINCH); at 72
        # columns the fast site's row is cut by the view (tmux would cut
        # the row's end instead)
        def narrow(s):
            r = rows(s)
            return r and r[0][3].startswith("grow_fast (...") and \
                r[0][3].endswith(".py:%d)" % MARK["fast"])
        tm.tmux("resize-window", "-t", "t:sh", "-x", "72", "-y", "30")
        s = tm.wait_for(narrow, 20)
        check(narrow(s) and max(map(len, s.splitlines())) <= 72,
              "%s: resized to 72 columns: the rows fit, the file cut on "
              "the left" % label, s)
        # 4 rows: no room for a row, said in one line (it scrolled its
        # header off and said "(nothing live yet)" with MiB live)
        tm.tmux("resize-window", "-t", "t:sh", "-x", "100", "-y", "4")
        s = tm.wait_for(lambda s: "terminal too small" in s, 20)
        check("terminal too small" in s and "nothing live yet" not in s,
              "%s: resized to 4 rows: the view says the terminal is too "
              "small" % label, s)
        tm.tmux("resize-window", "-t", "t:sh", "-x", "120", "-y", "40")

        tm.keys("s")
        s = tm.wait_for(lambda s: "sorted by growth" in s, 20)
        r = rows(s)
        check("sorted by growth" in s and r and
              is_site(r[0][3], "grow_fast", "fast") and
              r == sorted(r, key=lambda x: -(rate(x[1]) or 0)),
              "%s: s sorts by growth, fast site first" % label, s)
        tm.keys("s")
        s = tm.wait_for(lambda s: "sorted by blocks" in s, 20)
        r = rows(s)
        # the tuples: the comprehension's own frame before 3.12
        # ('<listcomp>' before 3.11, then 'many_small.<locals>.<listcomp>')
        check("sorted by blocks" in s and r and
              ("many_small" in r[0][3] or "<listcomp>" in r[0][3]) and
              r[0][3].endswith("two_rates.py:%d)" % MARK["small"]),
              "%s: s again sorts by blocks: the many-blocks line first" %
              label, s)

        # t: by thread; the slow site is its own thread's
        slow_tid = int(t.ready_line.split("slow_tid=")[1])
        tm.keys("s")
        tm.keys("t")
        s = tm.wait_for(lambda s: "sorted by live bytes, by thread" in s,
                        20)
        r = rows(s)
        check(r and is_site(r[0][3], "grow_fast", "fast") and
              r[0][3].startswith("[%d " % t.pid) and
              any(is_site(x[3], "grow_slow", "slow") and
                  x[3].startswith("[%d " % slow_tid) for x in r),
              "%s: t groups by thread: grow_fast in the main thread (%d), "
              "grow_slow in its own (%d)" % (label, t.pid, slow_tid), s)
        tm.keys("t")
        s = tm.wait_for(lambda s: "sorted by live bytes;" in s, 20)
        r = rows(s)
        check(r and not any(x[3].startswith("[") for x in r),
              "%s: t again: every thread's lines together" % label, s)

        tm.keys("C-c" if ctrl_c else "q")
        s = tm.wait_for(lambda s: exited(s, tag), 60)
        alt, cursor = tm.flags()
        check(exited(s, tag) == "0" and ("(interrupted)" if ctrl_c else
                                 "(q pressed)") in s and
              "target running; capture written to %s" % cap in s,
              "%s: %s detaches, exit 0" % (label, "Ctrl-C" if ctrl_c
                                            else "q"), s)
        check(alt == 0 and cursor == 1 and
              "memattach --live  PID" not in s and
              "memattach: attached to %d" % t.pid in s and
              s.rstrip().endswith("$"),
              "%s: the shell's screen is back, cursor shown" % label,
              "alternate_on %s, cursor_flag %s\n%s" % (alt, cursor, s))
        modes = term_modes(tm, tmp)
        check({"icanon", "echo", "isig"} <= modes and
              not {"-icanon", "-echo"} & modes,
              "%s: the terminal's modes restored (icanon echo isig)" % label,
              " ".join(sorted(modes)))

        check(t.alive(), "%s: the target runs on" % label)
        n = len(ticks)
        end = time.time() + 10
        while len(ticks) == n and time.time() < end:
            time.sleep(0.3)
            target_rate(t, ticks)
        check(len(ticks) > n, "%s: ... and goes on printing" % label)
        rc, out, _ = memattach("info", t.pid)
        check(rc == 0 and "tracking now" not in out,
              "%s: no longer tracked" % label, out)
        try:
            doc = report_json(cap)
            fr = row_at(doc, SCRIPT, MARK["fast"])
            check(fr is not None and fr["live"]["bytes"] >= FAST,
                  "%s: the capture is written and has the fast site" %
                  label, fr)
        except (RuntimeError, ValueError) as e:
            check(False, "%s: the capture is written and readable" % label,
                  e)


def duration(label, exe, tm, tmp):
    """--duration: the time left in the header; it ends by itself"""
    cap = os.path.join(tmp, "dur-%s.cap" % label)
    tag = "dur-" + label
    with Target(exe, "two_rates.py") as t:
        tm.type_line("clear; %s attach --live -d 6 -o %s %d; "
                     "echo DONE-%s=$?" % (MEMATTACH, cap, t.pid, tag))
        s = tm.wait_for(lambda s: re.search(r"\d+ s, \d s left", s) or
                        exited(s, tag), 60)
        check(re.search(r"\d+ s, [1-6] s left", s),
              "%s: --duration: the time left in the header" % label, s)
        s = tm.wait_for(lambda s: exited(s, tag), 60)
        check(exited(s, tag) == "0" and "(duration reached)" in s and
              tm.flags() == (0, 1),
              "%s: --duration ends it, the shell's screen back" % label, s)


def sampled(label, exe, tm, tmp):
    """--sample: the header says the figures are estimates, as the summary
    does (the view showed them as counts)"""
    cap = os.path.join(tmp, "samp-%s.cap" % label)
    tag = "samp-" + label
    with Target(exe, "two_rates.py") as t:
        tm.type_line("clear; %s attach --live --sample 64K -d 4 -o %s %d; "
                     "echo DONE-%s=$?" % (MEMATTACH, cap, t.pid, tag))
        s = tm.wait_for(lambda s: rows(s) or exited(s, tag), 60)
        check("ESTIMATES (--sample 64.0 KiB)" in s,
              "%s: --sample: the header says estimates" % label, s)
        s = tm.wait_for(lambda s: exited(s, tag), 60)
        check(exited(s, tag) == "0",
              "%s: --sample: the view ends with --duration" % label, s)


def crash(label, exe, tm, tmp, sig):
    """memattach killed by a fatal signal (SIGABRT) in the view: the
    shell's screen and the terminal's modes come back before it dies.
    SIGHUP (the terminal closed): tracking stops as on Ctrl-C, the capture
    written."""
    name = signal.Signals(sig).name
    cap = os.path.join(tmp, "%s-%s.cap" % (name, label))
    tag = "%s-%s" % (name, label)
    with Target(exe, "two_rates.py") as t:
        # no core file left behind, whatever the machine's limit
        tm.type_line("ulimit -c 0; clear; %s attach --live -o %s %d; "
                     "echo DONE-%s=$?" % (MEMATTACH, cap, t.pid, tag))
        s = tm.wait_for(lambda s: rows(s) or exited(s, tag), 60)
        shell = int(tm.tmux("display", "-p", "-t", "t:sh",
                            "#{pane_pid}").stdout)
        kids = children(shell)
        check(len(kids) == 1 and tm.flags() == (1, 0),
              "%s: the view is up (memattach %s)" % (label, kids), s)
        for k in kids:
            os.kill(k, sig)
        s = tm.wait_for(lambda s: exited(s, tag), 60)
        if sig == signal.SIGHUP:
            check(exited(s, tag) == "0" and "(interrupted)" in s and
                  "capture written to %s" % cap in s and
                  tm.flags() == (0, 1),
                  "%s: SIGHUP: memattach detaches (exit 0, capture "
                  "written), the shell's screen back" % label, s)
        else:
            check(exited(s, tag) == str(128 + sig) and
                  tm.flags() == (0, 1),
                  "%s: %s: memattach dies of it (exit %s), the shell's "
                  "screen back, cursor shown" % (label, name,
                                                 exited(s, tag)), s)
        modes = term_modes(tm, tmp)
        check({"icanon", "echo", "isig"} <= modes and
              not {"-icanon", "-echo"} & modes,
              "%s: ... and the terminal's modes" % label,
              " ".join(sorted(modes)))
        check(t.alive(), "%s: the target runs on" % label)


def main():
    if not shutil.which("tmux"):
        skip("attach --live", "tmux is not installed")
        finish()
    tmp = tempfile.mkdtemp(prefix="ma-live-")
    tm = Tmux("ma-live-%d" % os.getpid())
    try:
        # Debian's 3.11 and the oldest and newest pyenv: the view is the
        # attacher's, the same on every interpreter (MA_LIVE_ALL=1: all)
        minors = range(8, 14) if os.environ.get("MA_LIVE_ALL") == "1" \
            else [8, 13]
        for i, (label, exe) in enumerate(interpreters(minors=minors)):
            one(label, exe, tm, tmp, ctrl_c=(i == 1))
            if i == 0:
                duration(label, exe, tm, tmp)
                sampled(label, exe, tm, tmp)
                crash(label, exe, tm, tmp, signal.SIGABRT)
                crash(label, exe, tm, tmp, signal.SIGHUP)
    finally:
        tm.close()
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
