"""memattach stacks on real processes of every interpreter present.

A target with known nested functions in two threads (main blocked in read(),
a second thread spinning in pure Python): function names and line numbers
must match the target's source exactly, threading.py's frames included; the
spinning thread holds the GIL; the blocked read() later returns its data
intact.  A thread asleep in a write is read without cutting its write
short (hazard 11), a main thread that starts a thread per iteration keeps
its own frames in every read, a thread running a subinterpreter is listed
with its state in each interpreter, and a stack deeper than the reader's
cap is cut and says so, and a command line of several lines (python -c)
is shown on one, its control characters escaped.  Each interpreter is checked with its best offsets (DWARF) and
with DWARF out of the picture (the built-in table; _Py_DebugOffsets on
3.13).
"""
import json
import os
import re
import subprocess
import tempfile
import time

from ma_test import (TARGETS, Target, check, finish, interpreters, line_of,
                     marks, memattach, py_version, skip, stacks_json,
                     thread_by_tid, wait_in_syscall)

SCRIPT = os.path.join(TARGETS, "stacks_target.py")
M = marks(SCRIPT)


def threading_frames(exe, ver):
    """Expected frames of threading.Thread's bootstrap, from the source of
    this interpreter's own threading.py."""
    path = subprocess.run([exe, "-c", "import threading; "
                           "print(threading.__file__)"], capture_output=True,
                          text=True).stdout.strip()
    q = "Thread." if ver >= (3, 11) else ""
    return [
        (q + "run", path, line_of(path, "run", "self._target(")),
        (q + "_bootstrap_inner", path,
         line_of(path, "_bootstrap_inner", "self.run()")),
        (q + "_bootstrap", path,
         line_of(path, "_bootstrap", "self._bootstrap_inner()")),
    ]


def frames_of(thread):
    return [(f["function"], f["file"], f["line"]) for f in thread["frames"]]


def expected(exe, ver):
    main = [("wait_for_quit", SCRIPT, M["blocked_read"]),
            ("main", SCRIPT, M["main_calls_wait"]),
            ("<module>", SCRIPT, M["module_calls_main"])]
    spin = [("spin", SCRIPT, M["spin"]),
            ("middle", SCRIPT, M["middle_calls_spin"]),
            ("outer", SCRIPT, M["outer_calls_middle"])] + \
        threading_frames(exe, ver)
    return main, spin


def fmt(frames):
    return "\n".join("%s (%s:%s)" % f for f in frames)


def check_doc(label, doc, tmain, tspin, exp_main, exp_spin):
    main = thread_by_tid(doc, tmain)
    spin = thread_by_tid(doc, tspin)
    if not check(main is not None and spin is not None,
                 "%s: both threads listed" % label, doc):
        return
    check(frames_of(main) == exp_main, "%s: main thread stack exact" % label,
          "got:\n%s\nwant:\n%s" % (fmt(frames_of(main)), fmt(exp_main)))
    check(frames_of(spin) == exp_spin, "%s: spinner stack exact" % label,
          "got:\n%s\nwant:\n%s" % (fmt(frames_of(spin)), fmt(exp_spin)))
    check(spin["holds_gil"] and not main["holds_gil"],
          "%s: the spinning thread holds the GIL" % label,
          "main %s spinner %s" % (main["holds_gil"], spin["holds_gil"]))
    check(main["main"] and not spin["main"], "%s: main thread marked" % label)


def check_text(label, pid, tmain, tspin, exp_main, exp_spin, ver):
    rc, out, err = memattach("stacks", pid)
    if not check(rc == 0, "%s: text output exit 0" % label, err):
        return
    # threads are called by their threading.Thread names
    # (stacks_target.py names its thread "spinner")
    want_main = 'Thread %d "MainThread" (main thread)\n' % tmain + \
        "".join("    %s (%s:%d)\n" % f for f in exp_main)
    want_spin = 'Thread %d "spinner" (holds the GIL)\n' % tspin + \
        "".join("    %s (%s:%d)\n" % f for f in exp_spin)
    blocks = out.split("\n\n")
    check(out.startswith("Process %d: " % pid) and
          ("(Python %d.%d.%d)" % ver) in out.splitlines()[0],
          "%s: text header names the process and version" % label, out)
    check(want_main.rstrip("\n") in blocks,
          "%s: text block of the main thread" % label,
          "got:\n%s\nwant:\n%s" % (out, want_main))
    check(want_spin.rstrip("\n") in blocks,
          "%s: text block of the spinning thread" % label,
          "got:\n%s\nwant:\n%s" % (out, want_spin))


def check_native(label, pid, tmain, exp_main):
    rc, out, err = memattach("stacks", "--native", "--json", pid)
    if not check(rc == 0, "%s: --native exit 0" % label, err):
        return
    import json
    doc = json.loads(out)
    main = thread_by_tid(doc, tmain)
    nat = main.get("native", [])
    syms = [n["symbol"] or "" for n in nat]
    check(any("read" in s for s in syms[:6]),
          "%s: --native shows the read() the main thread is blocked in"
          % label, "\n".join(syms))
    check(any(n["python"] for n in nat),
          "%s: --native marks the eval loop frames [python]" % label,
          "\n".join(syms))
    check(frames_of(main) == exp_main,
          "%s: --native keeps the Python frames exact" % label)
    # The text form interleaves: Python frames appear right before the
    # eval-loop native frame that runs them.
    rc, out, err = memattach("stacks", "--native", pid)
    block = [b for b in out.split("\n\n") if b.startswith("Thread %d " % tmain)]
    lines = block[0].splitlines()[1:] if block else []
    first_py = next((i for i, l in enumerate(lines)
                     if not l.strip().startswith("(C)")), None)
    first_eval = next((i for i, l in enumerate(lines) if "[python]" in l), None)
    check(first_py is not None and first_eval is not None and
          0 < first_py < first_eval,
          "%s: --native text interleaves C frames, Python frames, then the "
          "eval frame" % label, block[0] if block else out)


def answer_and_exit(t, line, want, what, exit_what):
    """Send the target its line on stdin, check the line it prints back,
    then that it exits 0"""
    t.proc.stdin.write(line)
    t.proc.stdin.flush()
    got = t.readline(timeout=20)
    check(got == want, what, got)
    try:
        rc = t.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        rc = None
    check(rc == 0, exit_what, "exit %s" % rc)


def run_one(label, exe):
    ver = py_version(exe)
    exp_main, exp_spin = expected(exe, ver)
    with Target(exe, "stacks_target.py") as t:
        _, tmain, tspin = t.ready_line.split()
        tmain, tspin = int(tmain), int(tspin)
        # READY is printed just before the main thread calls read(): wait
        # until it is really there.
        check(wait_in_syscall(t.pid, tmain, 0),
              "%s: target's main thread blocked in read()" % label)
        doc = stacks_json(t.pid)
        check(doc["offsets"].startswith("DWARF"),
              "%s: offsets from DWARF" % label, doc["offsets"])
        check_doc(label, doc, tmain, tspin, exp_main, exp_spin)
        check_text(label, t.pid, tmain, tspin, exp_main, exp_spin, ver)
        check_native(label, t.pid, tmain, exp_main)

        # Without DWARF: Debian's separate debug file can really be hidden;
        # pyenv builds embed theirs, so the fallback is forced instead.
        if label.startswith("debian"):
            env = {"MEMATTACH_DEBUGINFO_PATH": "/nonexistent"}
            doc = stacks_json(t.pid, env=env)
            check(doc["offsets"].startswith("built-in table"),
                  "%s: DWARF hidden: falls back to the built-in table" % label,
                  doc["offsets"])
            check_doc(label + " (DWARF hidden)", doc, tmain, tspin, exp_main,
                      exp_spin)
        else:
            doc = stacks_json(t.pid, "--offsets=table")
            check_doc(label + " (table)", doc, tmain, tspin, exp_main,
                      exp_spin)
        if ver >= (3, 13):
            doc = stacks_json(t.pid, "--offsets=debug-offsets")
            check(doc["offsets"].startswith("_Py_DebugOffsets"),
                  "%s: offsets from _Py_DebugOffsets" % label, doc["offsets"])
            check_doc(label + " (_Py_DebugOffsets)", doc, tmain, tspin,
                      exp_main, exp_spin)

        # The read() the main thread was blocked in during all of the above
        # returns the data intact: no EINTR, nothing lost.
        answer_and_exit(t, b"hello memattach\n", "GOT hello memattach",
                        "%s: blocked read() returns its data after stacks"
                        % label, "%s: target exits 0" % label)


WRITER = os.path.join(TARGETS, "blocked_write.py")
MW = marks(WRITER)


def run_blocked_write(label, exe):
    """Hazard 11: stacks reads a thread asleep in a write without stopping
    it, so the write is not cut short.  The thread's stack is exact all the
    same; a stop would have made os.write return the 64 KiB the pipe took."""
    with Target(exe, "blocked_write.py") as t:
        tmain = int(t.ready_line.split()[1])
        check(wait_in_syscall(t.pid, tmain, 1),
              "%s: writer blocked in write()" % label)
        want = [("write_all", WRITER, MW["write"]),
                ("main", WRITER, MW["main_calls_write"]),
                ("<module>", WRITER, MW["module_calls_main"])]
        for i in range(3):
            doc = stacks_json(t.pid)
            main = thread_by_tid(doc, tmain)
            check(main is not None and frames_of(main) == want,
                  "%s: stack of the thread asleep in write(), read %d"
                  % (label, i + 1),
                  "got:\n%s\nwant:\n%s" % (
                      fmt(frames_of(main)) if main else doc, fmt(want)))
        rc, out, err = memattach("stacks", t.pid)
        check(rc == 0 and "write_all (%s:%d)" % (WRITER, MW["write"]) in out,
              "%s: text stacks of the writer" % label, out + err)
        answer_and_exit(t, b"go\n", "WROTE %d READ %d" % (1 << 20, 1 << 20),
                        "%s: the write was not cut short by 4 stack reads"
                        % label, "%s: writer exits 0" % label)


DEEP = os.path.join(TARGETS, "deep_stack.py")


def run_spawner(label, exe):
    """A main thread that starts and joins a thread per iteration: every
    read gives it its own frames (spawn_forever() in them), and lists no
    frameless thread state without a kernel thread (the state the main
    thread made for the thread it is starting).  Before, 9-10 of 30 reads
    showed the main thread without frames (3.8-3.11) and 8 of 30 listed
    such a state (3.12+).  Before the freeze counted the kernel's threads,
    1 read in 300 listed a state whose thread the freeze had missed.

    The offsets' check reads the running process: before a failed check
    was made again, 6-17 % of `offsets --source table` failed on this
    target (every version), and 1 `stacks` in 1500 failed with "no usable
    struct offsets"."""
    with Target(exe, "spawner.py") as t:
        tmain = int(t.ready_line.split()[1])
        failed, why = 0, ""
        for _ in range(25):
            rc, out, err = memattach("offsets", "--source", "table", t.pid)
            if rc != 0:
                failed, why = failed + 1, err
        check(failed == 0, "%s: spawner: the built-in table passes its "
              "check in each of 25 looks (%d failed)" % (label, failed),
              why)
        reads, bad_main, ghosts, last = 25, 0, 0, None
        nameless, last_nameless = 0, None
        for _ in range(reads):
            doc = stacks_json(t.pid)
            # a thread that ended between the read and the look at its
            # comm was once named "" (its comm unreadable by then)
            if any(th["tid"] and not th["name"] for th in doc["threads"]):
                nameless += 1
                last_nameless = doc["threads"]
            main = thread_by_tid(doc, tmain)
            if not main or not any(f["function"] == "spawn_forever"
                                   for f in main["frames"]):
                bad_main += 1
                last = main
            if any(th["tid"] is None and not th["frames"]
                   for th in doc["threads"]):
                ghosts += 1
                last = doc["threads"]
        check(bad_main == 0, "%s: spawner: the main thread has its frames "
              "in every one of %d reads (%d without)" %
              (label, reads, bad_main), last)
        check(ghosts == 0, "%s: spawner: no frameless thread state without "
              "a kernel thread in %d reads (%d with one)" %
              (label, reads, ghosts), last)
        check(nameless == 0, "%s: spawner: every thread has a name in %d "
              "reads (%d with a nameless one)" % (label, reads, nameless),
              last_nameless)


def run_subinterp(label, exe):
    """A thread running a subinterpreter has a state in each interpreter:
    both are listed with its kernel thread's ID, the subinterpreter's
    (work()) and the main interpreter's (runner(), marked as the same
    thread's state in another interpreter, under its threading name), and
    neither as a state without a live kernel thread (as it was before)"""
    probe = subprocess.run([exe, "-c", "try:\n import _interpreters\n"
                            "except ImportError:\n"
                            " import _xxsubinterpreters"],
                           capture_output=True)
    if probe.returncode:
        skip("%s: subinterpreter" % label, "no _interpreters or "
             "_xxsubinterpreters module")
        return
    with Target(exe, "subinterp.py") as t:
        runner = int(t.readline(timeout=20).split()[1])
        time.sleep(0.3)
        doc = stacks_json(t.pid)
        rows = [th for th in doc["threads"] if th["tid"] == runner]
        inner = [th for th in rows if not th.get("also_in_interpreter")
                 and any(f["function"] == "work" for f in th["frames"])]
        outer = [th for th in rows if th.get("also_in_interpreter") is not
                 None and any(f["function"] == "runner"
                              for f in th["frames"])]
        ghosts = [th for th in doc["threads"] if th["tid"] is None and
                  any(f["function"] == "runner" for f in th["frames"])]
        check(len(rows) == 2 and inner and outer and not ghosts and
              inner[0]["interpreter"] != outer[0]["interpreter"] and
              outer[0]["name"] == "runner",
              "%s: subinterpreter: the runner thread listed with its "
              "state in each interpreter" % label,
              [(th["tid"], th["name"], th.get("interpreter"),
                [f["function"] for f in th["frames"]])
               for th in doc["threads"]])
        # info counted that thread twice ("threads: 3" of two kernel
        # threads) and gave its second row no word of why
        rc, out, err = memattach("info", "--json", t.pid)
        tasks = len(os.listdir("/proc/%d/task" % t.pid))
        info = json.loads(out) if rc == 0 else {"threads": []}
        irows = [th for th in info["threads"] if th["tid"] == runner]
        rc2, text, err2 = memattach("info", t.pid)
        count = re.search(r"^threads: +(\d+) ", text, re.M)
        check(rc == 0 and rc2 == 0 and count and
              int(count.group(1)) == tasks and len(irows) == 2 and
              [th.get("also_in_interpreter") is not None
               for th in irows].count(True) == 1 and
              "is listed above" in text,
              "%s: subinterpreter: info counts %d kernel threads and marks "
              "the runner's second state" % (label, tasks),
              text + err + err2)


def run_idle_subinterp(label, exe):
    """A subinterpreter that runs no code heads the interpreters' list and,
    on 3.13, has no thread state: the offsets are checked against an
    interpreter that has one (every command exited 6, 'this build has no
    DWARF', on 3.13)"""
    probe = subprocess.run([exe, "-c", "try:\n import _interpreters\n"
                            "except ImportError:\n"
                            " import _xxsubinterpreters"],
                           capture_output=True)
    if probe.returncode:
        skip("%s: idle subinterpreter" % label, "no _interpreters or "
             "_xxsubinterpreters module")
        return
    script = os.path.join(TARGETS, "subinterp.py")
    with Target(exe, "subinterp.py", "idle") as t:
        main = int(t.ready_line.split()[1])
        time.sleep(0.3)
        rc, out, err = memattach("stacks", "--json", t.pid)
        doc = json.loads(out) if rc == 0 else {"threads": []}
        th = thread_by_tid(doc, main)
        check(rc == 0 and th is not None and th["frames"] and
              (th["frames"][0]["function"], th["frames"][0]["line"]) ==
              ("<module>", marks(script)["idle"]),
              "%s: idle subinterpreter: stacks shows the main thread" %
              label, "exit %d: %s%s" % (rc, out[:2000], err))
        rc, out, err = memattach("info", t.pid)
        check(rc == 0, "%s: idle subinterpreter: info exits 0" % label,
              "exit %d: %s" % (rc, err))


def run_deep(label, exe):
    """A stack deeper than the reader's 4,096 frames: its innermost 4,096,
    exit 8 (partial), and a last line that says why"""
    with Target(exe, "deep_stack.py") as t:
        # READY is printed just before the sleep: let it get there (the
        # innermost frame was once still at the print, line 11)
        time.sleep(0.3)
        rc, out, err = memattach("stacks", t.pid)
        lines = out.split("\n\n")[1].splitlines() if "\n\n" in out else []
        check(rc == 8 and len(lines) == 1 + 4096 + 1 and
              lines[1] == "    down (%s:%d)" % (DEEP,
                                              marks(DEEP)["innermost"]) and
              lines[-1] == "    ... (stack truncated: deeper than 4096 "
              "frames, the outermost not shown)",
              "%s: a stack deeper than 4096 frames, cut and said so" % label,
              "exit %d, %d lines, first %r, last %r\n%s" % (
                  rc, len(lines), lines[1] if len(lines) > 1 else None,
                  lines[-1] if lines else None, err))
        # --native: the cut is where the Python frames end, inside the
        # eval call that runs them, not after the native stack's _start
        rc, out, err = memattach("stacks", "--native", t.pid)
        lines = out.split("\n\n")[1].splitlines() if "\n\n" in out else []
        cut = [i for i, x in enumerate(lines) if "stack truncated" in x]
        ncut = [x for x in lines if "(C) ... (native stack cut at" in x]
        # up to 3.10 every Python frame is an eval call of its own: the
        # native unwinding (256 frames) stops first, and says so
        check(rc == 8 and len(cut) == 1 and
              ((ncut and cut[0] == len(lines) - 1) or
               (not ncut and cut[0] + 1 < len(lines) and
                lines[cut[0] - 1].startswith("    down (") and
                lines[cut[0] + 1].startswith("    (C) ") and
                "[python]" in lines[cut[0] + 1])),
              "%s: --native: the cut is said where it is (after the last "
              "Python frame, before its eval call; or the native one, "
              "then the Python one last)" % label,
              "exit %d, around the cut: %r" % (rc, [
                  lines[i] for i in range(max(0, (cut or [0])[0] - 1),
                                          min(len(lines),
                                              (cut or [0])[0] + 2))]))


def run_perf(label, exe):
    """python -X perf (3.12+, here PYTHONPERFSUPPORT=1): the eval loop is
    entered through trampolines in anonymous memory with no unwind
    information, where libdwfl stops.  --native says where the native
    stack ends short (text and JSON), instead of showing the Python frames
    below as if the unwinding had reached them."""
    if py_version(exe) < (3, 12):
        return
    env = dict(os.environ, PYTHONPERFSUPPORT="1")
    with Target(exe, "stacks_target.py", env=env) as t:
        _, tmain, _ = t.ready_line.split()
        tmain = int(tmain)
        check(wait_in_syscall(t.pid, tmain, 0),
              "%s: -X perf: target's main thread blocked in read()" % label)
        rc, out, err = memattach("stacks", "--native", t.pid)
        block = [b for b in out.split("\n\n") if "Thread %d " % tmain in b]
        lines = block[0].splitlines() if block else []
        nat = [x for x in lines if x.startswith("    (C) ")]
        reached = bool(nat) and "_start" in nat[-1]
        said = [x for x in lines if "(C) ... (unwinding stopped" in x]
        check(rc == 0 and (reached or len(said) == 1),
              "%s: -X perf: --native reaches _start or says where the "
              "unwinding stopped" % label, "exit %d\n%s%s" % (rc, out, err))
        doc = json.loads(memattach("stacks", "--native", "--json",
                                   t.pid)[1])
        th = thread_by_tid(doc, tmain)
        check(th is not None and "native_stopped" in th and
              (th["native_stopped"] is None) == reached,
              "%s: -X perf: JSON native_stopped says the same" % label,
              repr(th and th.get("native_stopped")))


def run_multiline(label, exe):
    """python -c with a program of three lines: the Process line shows the
    command line whole on one line, its newlines as \\n"""
    code = "import sys\nprint('READY', flush=True)\nsys.stdin.readline()"
    p = subprocess.Popen([exe, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    try:
        p.stdout.readline()
        rc, out, err = memattach("stacks", p.pid)
        want = "Process %d: %s -c %s (Python " % (
            p.pid, exe, code.replace("\n", "\\n"))
        check(rc == 0 and out.split("\n")[0].startswith(want),
              "%s: a command line of three lines, on one" % label,
              "exit %d, want %r\n%s%s" % (rc, want, out[:300], err))
    finally:
        p.kill()
        p.wait()


def run_evil_names(label, exe):
    """Names that carry terminal control sequences (a function's co_name,
    a thread's name): printed with '?' for each control character, never
    raw, by stacks, the attach summary and report"""
    with Target(exe, "evil_names.py") as t:
        rc, out, err = memattach("stacks", t.pid)
        check(rc == 0 and "\x1b" not in out and "\x07" not in out and
              "?[2J?]0;PWNED?evil" in out and "t?[31mred" in out,
              "%s: stacks prints a control character as '?'" % label,
              repr(out[:400]))
        rc, iout, err = memattach("info", t.pid)
        check(rc == 0 and "\x1b" not in iout and "\x07" not in iout,
              "%s: info prints them with '?'" % label, repr(iout[-400:]))
        cap = os.path.join(tempfile.gettempdir(), "evil-%d.cap" % t.pid)
        try:
            rc, aout, err = memattach("attach", "-q", "-d", "0.5", "-o", cap,
                                      t.pid)
            rc2, rout, _ = memattach("report", "--threads", cap)
            rc3, tout, _ = memattach("report", cap)
        finally:
            if os.path.exists(cap):
                os.unlink(cap)
        check(rc == 0 and rc2 == 0 and rc3 == 0 and
              not any(c in aout + rout + tout for c in "\x1b\x07") and
              "?[2J?]0;PWNED?evil" in aout + tout and "t?[31mred" in rout,
              "%s: the attach summary and report print them as '?'" % label,
              repr((aout + rout + tout)[:600]))


def run_evil_comm(label, exe):
    """No threading module: a thread is named by its kernel name (comm),
    which the program sets (prctl): printed with '?' too"""
    code = ("import ctypes, sys, time\n"
            "ctypes.CDLL(None).prctl(15, b'c\\x1b]0;PW\\x07N', 0, 0, 0)\n"
            "print('READY', flush=True)\nsys.stdin.readline()\n")
    p = subprocess.Popen([exe, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    try:
        p.stdout.readline()
        outs = [memattach(cmd, p.pid) for cmd in ("stacks", "info")]
        text = "".join(o[1] for o in outs)
        # where something imported threading (pyenv's 3.11 here), the
        # thread is named MainThread and its comm is not printed
        check(all(o[0] == 0 for o in outs) and
              ("c?]0;PW?N" in text or "MainThread" in text) and
              "\x1b" not in text and "\x07" not in text,
              "%s: a thread's comm with control characters: '?' in stacks "
              "and info" % label, repr(text[-500:]))
    finally:
        p.kill()
        p.wait()


def main():
    parts = [(run_multiline, "multi-line command"),
             (run_evil_comm, "a comm with control characters"),
             (run_evil_names, "names with control characters"),
             (run_deep, "deep stack"), (run_perf, "python -X perf"),
             (run_blocked_write, "blocked write"),
             (run_subinterp, "subinterpreter"),
             (run_idle_subinterp, "idle subinterpreter"),
             (run_spawner, "spawner"),
             (run_one, "the two-thread target")]
    for label, exe in interpreters():
        for run, what in parts:
            try:
                run(label, exe)
            except Exception as e:  # a crash of the harness is a failure
                check(False, "%s: %s ran without error" % (label, what),
                      repr(e))
    finish()


if __name__ == "__main__":
    main()
