"""Bad input gets a clear one-line error and the documented exit code:
wrong PID, a thread ID, a zombie, a process that is not Python, an
unsupported Python, no permission (another owner; another tracer), missing
debug info with no fallback, a process stopped by a signal (attach refuses
it at once and says how to resume it; stacks and heap read it as it is and
leave it stopped); a bad command line (options, their values, the number of
arguments), and docs/memattach.md's synopsis against each command's
--help."""
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import tempfile
import time

from ma_test import (MEMATTACH, SRC, Target, check, finish, interpreters,
                     memattach, pyenv_root, skip)

EXIT_USAGE, EXIT_NOPROC, EXIT_PERM, EXIT_NOTPY, EXIT_NODEBUG = 2, 3, 4, 5, 6


def expect(args, code, pattern, what, **kw):
    rc, out, err = memattach(*args, **kw)
    lines = err.strip().splitlines()
    ok = rc == code and len(lines) == 1 and pattern in err and \
        lines[0].startswith("memattach: ")
    check(ok, "%s: exit %d, one line naming %r" % (what, code, pattern),
          "exit %d\nstdout: %s\nstderr: %s" % (rc, out, err))


def thread_states(pid):
    """The state letter of each thread of pid (/proc/PID/task/*/stat)"""
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                out.append(f.read().rsplit(")", 1)[1].split()[0])
        except (OSError, IndexError):
            pass
    return out


def stopped_target(exe, tmp):
    """A process stopped by SIGSTOP (state T, no tracer): attach is refused
    at once (exit 4, the way to resume it named), where it used to load the
    payload, wait 3 s for it, track nothing and wait 3 s more for a stop it
    could not confirm (exit 8); stacks and heap work on it, stacks says it
    is stopped; ps says why not; only its owner resumes it."""
    with Target(exe, "stacks_target.py") as t:
        os.kill(t.pid, signal.SIGSTOP)
        for _ in range(200):
            st = thread_states(t.pid)
            if st and all(x == "T" for x in st):
                break
            time.sleep(0.01)
        t0 = time.time()
        rc, out, err = memattach("attach", "-q", "-d", "2", "-o",
                                 os.path.join(tmp, "stopped.cap"), t.pid)
        took = time.time() - t0
        lines = err.strip().splitlines()
        check(rc == EXIT_PERM and len(lines) == 1 and
              "is stopped by a signal (state T" in err and
              "'kill -CONT %d'" % t.pid in err and took < 1.5,
              "attach to a stopped process: refused at once, exit 4, says "
              "how to resume it",
              "exit %d after %.1f s\n%s" % (rc, took, err))
        check(all(x == "T" for x in thread_states(t.pid)),
              "the refused process is still stopped", thread_states(t.pid))
        rc, out, err = memattach("stacks", t.pid)
        # just after memattach's detach a thread may not show 'T' yet:
        # it must be back in its stop within a second
        for _ in range(100):
            if all(x == "T" for x in thread_states(t.pid)):
                break
            time.sleep(0.01)
        check(rc == 0 and out.startswith("Process %d: " % t.pid) and
              "Stopped by a signal (state T)" in out.split("\n")[1] and
              "spin (" in out and
              all(x == "T" for x in thread_states(t.pid)),
              "stacks of a stopped process: read, said to be stopped, left "
              "stopped", "exit %d\n%s%s" % (rc, out, err))
        rc, out, err = memattach("heap", "-o",
                                 os.path.join(tmp, "stopped.heap"), t.pid)
        check(rc == 0 and "Census of" in out and
              all(x == "T" for x in thread_states(t.pid)),
              "heap of a stopped process: a census, left stopped",
              "exit %d\n%s%s" % (rc, out[:300], err))
        rc, out, err = memattach("ps", "--json")
        row = [r for r in json.loads(out or "[]") if r["pid"] == t.pid]
        check(row and not row[0]["attachable"] and
              "stopped by a signal" in row[0].get("why_not", ""),
              "ps: a stopped process is not attachable, says why", row)
        os.kill(t.pid, signal.SIGCONT)
        t.proc.stdin.write(b"bye\n")
        t.proc.stdin.flush()
        check(t.readline() == "GOT bye",
              "resumed by its owner, the process runs on")


def command_line():
    """Usage errors, each one line naming what is wrong, exit 2; before
    anything is done with the process (sleep(1): not Python, which would
    be exit 5).  Every one of these was taken, or said otherwise, by the
    old binary: atoi/strtoul/strtod values ('2x' as 2, 4294967297 as 1,
    nan running forever, 0x10 as 16 s), getopt's own message and the whole
    usage, the usage alone for a wrong number of arguments."""
    s = subprocess.Popen(["sleep", "60"])
    pid = s.pid
    for opt, values in (("--max-frames", ("4294967297", "-4294967295", "0",
                                          "257", "4097", "12x", " 5")),
                        ("--duration", ("nan", "inf", "1e20", "0x10", "-1",
                                        "0", "2s")),
                        ("--top", ("2x", "99999999999", "0", "+3")),
                        ("--ring-size", ("3", "64x", "-64"))):
        for v in values:
            expect(["attach", opt, v, pid], EXIT_USAGE,
                   "bad %s '%s'" % (opt, v), "attach %s %r" % (opt, v))
    for opt in ("--top", "--depth"):
        for v in ("2x", "99999999999", "0", "-1"):
            expect(["heap", opt, v, pid], EXIT_USAGE,
                   "bad %s '%s'" % (opt, v), "heap %s %r" % (opt, v))
    # a PID is digits only too ('+5' and ' 5' were taken)
    for cmd in ("info", "stacks", "heap", "detach", "attach"):
        for v in ("+%d" % pid, " %d" % pid):
            expect([cmd, v], EXIT_USAGE, "'%s' is not a process ID" % v,
                   "%s %r" % (cmd, v))
    expect(["attach", "--python-only", "--native-only", pid], EXIT_USAGE,
           "--python-only and --native-only do not go together",
           "attach --python-only --native-only")
    for args, pattern in (
            (["info", "-1", pid], "info: unknown option '-1' (see "
             "'memattach info --help')"),
            (["info", "--bogus", pid], "info: unknown option '--bogus'"),
            (["stacks", "--native=yes", pid],
             "stacks: option '--native' takes no value"),
            (["attach", "--n", pid], "attach: option '--n' is ambiguous: "
             "--native-only, --no-heap"),
            (["attach", pid, "-o"], "attach: option '-o' needs a value"),
            (["heap", pid, "--dep"], "heap: option '--depth' needs a value"),
            (["info", pid, pid], "info: one PID expected, got 2 arguments"),
            (["stacks"], "stacks: no PID given"),
            (["detach", pid, pid], "detach: one PID expected, got 2"),
            (["detach", "-x", pid], "detach: unknown option '-x'"),
            (["ps", "foo"], "ps: no argument expected, got 'foo'"),
            (["report"], "report: no FILE given"),
            (["offsets", "--source", "bogus", "/bin/ls"],
             "memattach: offsets: unknown source 'bogus'"),
            (["offsets", "--format", "rust", "/bin/ls"],
             "memattach: offsets: unknown format 'rust'")):
        expect(args, EXIT_USAGE, pattern, " ".join(map(str, args)))
    s.kill()
    s.wait()
    # not ELF at all: not CPython (exit 5, as /bin/ls), without libelf's
    # "no error" (strerror(0)-like) when it has no reason
    for args in (["offsets", "/etc/passwd"],
                 ["offsets", "--version", "3.11.2", "/etc/passwd"]):
        rc, out, err = memattach(*args)
        check(rc == EXIT_NOTPY and err.strip() ==
              "memattach: offsets: /etc/passwd: not an ELF file",
              "%s: exit 5, 'not an ELF file', no 'no error'" %
              " ".join(args), "exit %d: %s" % (rc, err))


def help_options(cmd):
    """[(short or None, --long)] of `memattach CMD --help`: the usage
    lines' and those an option line starts with (not --help)"""
    rc, out, err = memattach(cmd, "--help")
    opts = []
    usage = False
    for line in out.splitlines():
        usage = line.startswith("usage:") or (
            usage and line[:1] == " " and line.lstrip()[:1] in "[m")
        if usage:
            opts += [(None, o) for o in
                     re.findall(r"(?<![\w-])--[a-z][\w-]*", line)]
            continue
        m = re.match(r" {2,8}(?:(-\w), )?(--[a-z][\w-]*)(?:[ =][^\s,]+)?"
                     r"(?:, (--[a-z][\w-]*))?", line)
        if m:
            opts.append((m.group(1), m.group(2)))
            if m.group(3):
                opts.append((None, m.group(3)))
    short = {}
    for s, l in opts:  # an option named again in a description
        short[l] = short.get(l) or s
    return [(s, l) for l, s in short.items() if l != "--help"]


def synopsis_matches_help():
    """docs/memattach.md's SYNOPSIS names each command's options as its
    --help does (it lacked attach --no-heap, report --callers, --width,
    --color, --no-color, offsets --version and --time...)"""
    with open(os.path.join(SRC, "docs", "memattach.md")) as f:
        doc = f.read()
    block = doc.split("## SYNOPSIS", 1)[1].split("```")[1]
    entries = {}
    for line in block.splitlines():
        m = re.match(r"memattach (?:\[-v\] )?(\w+)", line)
        if m:
            cmd = m.group(1)
        if line.strip():
            entries.setdefault(cmd, []).append(line)
    for cmd in ("info", "stacks", "attach", "heap", "detach", "ps",
                "report", "offsets"):
        text = "\n".join(entries.get(cmd, []))
        toks = set(re.findall(r"(?<![\w-])--?[a-z][\w-]*", text))
        hopts = help_options(cmd)
        missing = [l for s, l in hopts if l not in toks and s not in toks]
        extra = sorted(t for t in toks if t.startswith("--") and
                       t not in [l for _, l in hopts])
        check(cmd in entries and not missing and not extra,
              "docs/memattach.md synopsis of %s: the options of its --help"
              % cmd, "missing %s, not in --help %s" % (missing, extra))


def help_diff_order():
    """A --diff in a command's help reads as it works: `report A --diff
    B`, what grew from A to B.  heap --help said `report --diff A B`,
    which takes B as the base and A as the later one: every figure of
    the diff with its sign turned"""
    for cmd in ("heap", "report"):
        rc, out, err = memattach(cmd, "--help")
        flat = " ".join(out.split())
        check(rc == 0 and "report --diff" not in flat,
              "%s --help: no 'report --diff A B' (A --diff B)" % cmd, flat)


def source_asked_for():
    """--offsets=debug-offsets (or table) that finds nothing usable says
    so: it said 'install the Debian package python3.11-dbg for DWARF'
    (installed, and never looked at) or 'this build has no DWARF' (it
    has)"""
    with Target("/usr/bin/python3", "stacks_target.py") as t:
        for cmd in ("stacks", "info"):
            rc, out, err = memattach(cmd, "--offsets=debug-offsets", t.pid)
            check(rc == EXIT_NODEBUG and "debug-offsets" in err and
                  "install" not in err and "no DWARF" not in err,
                  "%s --offsets=debug-offsets on 3.11: exit 6, names the "
                  "source asked for, not a missing DWARF" % cmd,
                  "exit %d: %s" % (rc, err))


def no_interpreter(tmp):
    """A program that loaded libpython and has no interpreter (not yet
    initialized, or finalized): exit 5 saying so; it was exit 6 with
    "install the Debian package python3.11-dbg", which was installed"""
    lib = "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc or not os.path.exists(lib):
        skip("no interpreter", "needs cc and %s" % lib)
        return
    exe = os.path.join(tmp, "no_interp")
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                       "targets", "no_interp.c")
    if subprocess.call([cc, "-o", exe, src, "-ldl"]) != 0:
        check(False, "no_interp.c compiles")
        return
    for how in ("not initialized", "finalized"):
        p = subprocess.Popen([exe, lib] + (["finalize"] if how ==
                                           "finalized" else []),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            if not check(p.stdout.readline().strip() == b"READY",
                         "no_interp (%s) runs" % how):
                continue
            for cmd in ("info", "stacks", "heap", "attach"):
                expect([cmd, p.pid], EXIT_NOTPY, "Python runtime is not "
                       "initialized", "%s of a libpython %s" % (cmd, how))
        finally:
            p.kill()
            p.wait()


def full_disk(exe, tmp):
    """Outputs onto a full filesystem (a 64 KiB tmpfs filled, in a mount
    namespace of its own): the file and ENOSPC named, exit 7.  heap -o
    exited 1 and lost the census, which is shown now; report -f html said
    only "write error"."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        skip("a full disk", "needs root and unshare(1)")
        return
    cap = os.path.join(tmp, "full.cap")
    full = os.path.join(tmp, "full")
    os.mkdir(full)
    with Target(exe, "churn.py") as t:
        rc, _, err = memattach("attach", "-q", "-d", "0.5", "-o", cap, t.pid)
        if not check(rc == 0, "full disk: a capture to report", err):
            return
        script = ("mount -t tmpfs -o size=64k tmpfs %s && "
                  "dd if=/dev/zero of=%s/fill bs=4k count=100 2>/dev/null; "
                  "%s heap -o %s/x.snap %d; echo \"rc=$?\"; "
                  "%s report -f html -o %s/r.html %s; echo \"rc=$?\"" %
                  (full, full, MEMATTACH, full, t.pid, MEMATTACH, full, cap))
        p = subprocess.run(["unshare", "--mount", "sh", "-c", script],
                           capture_output=True, text=True, timeout=120)
    rcs = re.findall(r"rc=(\d+)", p.stdout)
    check(rcs[:1] == ["7"] and "Census of" in p.stdout and
          "x.snap: No space left on device" in p.stderr,
          "heap -o onto a full disk: the census shown, the file and ENOSPC "
          "named, exit 7", (rcs, p.stderr[-400:]))
    check(rcs[1:2] == ["7"] and
          "r.html: No space left on device" in p.stderr,
          "report -f html -o onto a full disk: the file and ENOSPC named, "
          "exit 7", (rcs, p.stderr[-400:]))


def closed_outputs(exe, tmp):
    """stdout closed (`>&-`): exit 7 naming it (stacks exited 0 with its
    answer lost).  attach's stderr read by a reader that leaves (`2>&1 |
    head -c 10`): attach goes on to the end of its session, capture
    complete (SIGPIPE killed it, exit 141, the capture without events)."""
    cap = os.path.join(tmp, "pipe.cap")
    with Target(exe, "churn.py") as t:
        p = subprocess.run(["bash", "-c", '"$0" stacks "$1" >&-',
                            MEMATTACH, str(t.pid)],
                           capture_output=True, text=True, timeout=60)
        check(p.returncode == 7 and "writing to standard output: Bad file "
              "descriptor" in p.stderr,
              "stacks with stdout closed: exit 7, said", (p.returncode,
                                                          p.stderr))
        p = subprocess.run(["bash", "-c",
                            '"$0" attach -d 1.5 -o "$1" "$2" 2>&1 >/dev/null'
                            ' | head -c 10 >/dev/null; '
                            'echo "rc=${PIPESTATUS[0]}"',
                            MEMATTACH, cap, str(t.pid)],
                           capture_output=True, text=True, timeout=60)
        rc, out, err = memattach("report", cap)
        check("rc=0" in p.stdout and rc == 0 and "complete" in out,
              "attach whose stderr's reader left: tracked to the end, "
              "exit 0, capture complete", (p.stdout, rc, err, out[:200]))


def heap_target_killed(exe):
    """A target killed while a census is at work on it, before its copy
    is made: exit 3, "exited", as for any process that is gone.  Killed
    while frozen, it was said to have exec'd a new program; killed during
    the remote ma_heap_fork() (or the payload's loading), the census
    failed with "PTRACE_SYSCALL: No such process" and exit 1"""
    code = "import time\nprint('READY', flush=True)\ntime.sleep(600)\n"
    for step, loaded in (("freeze.stopped#1", False),
                         ("rcall.dlopen.committed#1", False),
                         ("rcall.ma_heap_fork.committed#1", True)):
        t = subprocess.Popen([exe, "-c", code], stdout=subprocess.PIPE)
        t.stdout.readline()
        if loaded:
            memattach("heap", "-q", t.pid)
        env = dict(os.environ, MEMATTACH_TEST_STOP_AT=step)
        env.pop("MEMATTACH_TEST_STEP_LOG", None)
        m = subprocess.Popen([os.environ.get("MEMATTACH", os.path.join(
            SRC, "build", "memattach")), "heap", "-q", str(t.pid)],
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(3000):
            with open("/proc/%d/stat" % m.pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "T":
                    break
            time.sleep(0.01)
        t.kill()
        time.sleep(0.2)
        m.send_signal(signal.SIGCONT)
        _, err = m.communicate(timeout=60)
        t.wait()
        lines = [x for x in err.splitlines() if "test stop at" not in x]
        check(m.returncode == EXIT_NOPROC and len(lines) == 1 and
              "exited while memattach was at work on it" in lines[0],
              "heap: the target killed at %s: exit 3, it exited" % step,
              "exit %d: %s" % (m.returncode, err))


def nproc_limit(tmp):
    """A target whose user is at its limit of processes (RLIMIT_NPROC 1,
    as a batch scheduler or a shared host sets; a thread counts against
    it): the payload cannot start its watchdog thread, nor the census its
    copy.  Each says why and what to do, exit 10 (not enough resources;
    the census exited 1 with "Resource temporarily unavailable" alone,
    attach with "error 11"); no capture file; the target runs on."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        skip("RLIMIT_NPROC", "needs root and setpriv")
        return
    cap = os.path.join(tmp, "nproc.cap")
    def nobody_one_process():
        os.setgroups([])
        os.setgid(65534)
        resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))
        os.setuid(65534)

    # a target of one thread: the limit counts its own too
    with Target("/usr/bin/python3", "heap_grow.py",
                preexec_fn=nobody_one_process) as t:
        for args in (["attach", "-q", "-d", "1", "-o", cap, t.pid],
                     ["heap", "-q", t.pid]):
            expect(args, 10, "RLIMIT_NPROC 1, 'Max processes' in "
                   "/proc/%d/limits" % t.pid,
                   "%s of a process at its RLIMIT_NPROC" % args[0])
        check(not os.path.exists(cap) and t.alive(),
              "RLIMIT_NPROC: no capture file, the target runs on",
              os.listdir(tmp))


def main():
    command_line()
    synopsis_matches_help()
    help_diff_order()
    source_asked_for()
    expect(["stacks", "12abc"], EXIT_USAGE, "not a process ID", "bad PID")
    expect(["frobnicate", "1"], EXIT_USAGE, "unknown command",
           "unknown command")
    expect(["stacks", "--offsets=magic", "1"], EXIT_USAGE,
           "unknown offsets source", "bad --offsets")

    # A PID that surely does not exist: one of a reaped child
    p = subprocess.Popen(["true"])
    p.wait()
    for cmd in ("info", "stacks", "heap"):
        expect([cmd, p.pid], EXIT_NOPROC, "no such process",
               "%s on a gone PID" % cmd)

    # A zombie: a child that exited and is not reaped yet
    z = subprocess.Popen(["true"])
    for _ in range(100):
        with open("/proc/%d/stat" % z.pid) as f:
            if f.read().split(")")[-1].split()[0] == "Z":
                break
        time.sleep(0.02)
    expect(["stacks", z.pid], EXIT_NOPROC, "zombie", "zombie")
    z.wait()
    if os.path.exists("/usr/bin/python3"):
        heap_target_killed("/usr/bin/python3")

    # Not Python at all
    s = subprocess.Popen(["sleep", "60"])
    time.sleep(0.1)
    expect(["stacks", s.pid], EXIT_NOTPY, "is not a CPython process",
           "sleep(1)")
    expect(["heap", s.pid], EXIT_NOTPY, "is not a CPython process",
           "heap of sleep(1)")
    s.kill()
    s.wait()

    # Python too old: any pyenv 2.x/3.6/3.7 present
    root = pyenv_root()
    old = []
    if root and os.path.isdir(os.path.join(root, "versions")):
        for v in sorted(os.listdir(os.path.join(root, "versions"))):
            if v.split(".")[:2] in (["2", "7"], ["3", "6"], ["3", "7"]):
                old.append(os.path.join(root, "versions", v, "bin", "python"))
    if not old:
        skip("unsupported Python version", "no pyenv 2.7/3.6/3.7 here")
    for exe in old:
        o = subprocess.Popen([exe, "-c", "import time; time.sleep(60)"])
        time.sleep(0.5)
        expect(["stacks", o.pid], EXIT_NOTPY, "support", "old Python %s" % exe)
        o.kill()
        o.wait()

    # A thread ID instead of the process ID
    exe = "/usr/bin/python3"
    with Target(exe, "stacks_target.py") as t:
        _, tmain, tspin = t.ready_line.split()
        expect(["stacks", tspin], EXIT_USAGE, "is a thread of process",
               "thread ID")

        # Missing debug info with no fallback allowed
        expect(["stacks", "--offsets=dwarf", t.pid], EXIT_NODEBUG,
               "python3.11-dbg", "no DWARF, --offsets=dwarf",
               env={"MEMATTACH_DEBUGINFO_PATH": "/nonexistent"})

        # Permission: another user may not trace a root process
        if os.geteuid() == 0 and shutil.which("setpriv"):
            for cmd in ("info", "stacks"):
                expect([cmd, t.pid], EXIT_PERM, "belongs to uid 0",
                       "%s as another user" % cmd, user="65534")
        else:
            skip("permission denied", "needs root and setpriv")

        # Another tracer already attached (strace)
        if shutil.which("strace"):
            st = subprocess.Popen(["strace", "-q", "-o", "/dev/null", "-p",
                                   str(t.pid)], stderr=subprocess.DEVNULL)
            for _ in range(100):
                with open("/proc/%d/status" % t.pid) as f:
                    if "TracerPid:\t%d" % st.pid in f.read():
                        break
                time.sleep(0.05)
            expect(["stacks", t.pid], EXIT_PERM, "already traced by",
                   "strace attached")
            expect(["heap", t.pid], EXIT_PERM, "already traced by",
                   "heap with strace attached")
            # the user's story: refused once, at once (it printed no
            # stacks, then the refusal in "Heap now: no census (...)" on
            # stdout, then again on stderr)
            rc, out, err = memattach(t.pid, "-d", "1", "-o",
                                     os.devnull)
            check(rc == EXIT_PERM and "already traced by" in err and
                  len(err.strip().splitlines()) == 1 and
                  "already traced" not in out and "Heap now" not in out,
                  "memattach PID with strace attached: exit 4, the "
                  "refusal said once", "exit %d\nstdout: %s\nstderr: %s" %
                  (rc, out, err))
            # info shows what it read, not "threads: 0" (exit 0 before)
            expect(["info", t.pid], 8, "already traced by",
                   "info with strace attached")
            rc, out, err = memattach("info", t.pid)
            check("threads:     not read" in out and "python:" in out,
                  "info with strace attached: the rest shown, the threads "
                  "said to be not read", out)
            st.send_signal(signal.SIGINT)
            st.wait()
        else:
            skip("another tracer", "strace is not installed")
        # Not enough memory for a census (MemAvailable as the test says)
        expect(["heap", t.pid], 10, "not enough free memory",
               "heap on a machine short of memory",
               env={"MEMATTACH_TEST_MEMAVAIL_MIB": "100"})
        check(t.alive(), "target survived all of the above")
    # A process whose main thread ended (pthread_exit), two threads on:
    # said so, not "a zombie"
    code = ("import ctypes, threading, time\n"
            "for _ in range(2):\n"
            "    threading.Thread(target=time.sleep, args=(60,)).start()\n"
            "print('READY', flush=True)\n"
            "ctypes.CDLL(None).pthread_exit(None)\n")
    z = subprocess.Popen([exe, "-c", code], stdout=subprocess.PIPE)
    z.stdout.readline()
    for _ in range(100):
        with open("/proc/%d/status" % z.pid) as f:
            if "State:\tZ" in f.read():
                break
        time.sleep(0.05)
    expect(["stacks", z.pid], EXIT_NOPROC, "its main thread has exited",
           "a process whose main thread has exited")
    z.kill()
    z.wait()
    tmp = tempfile.mkdtemp(prefix="memattach-errors-")
    nproc_limit(tmp)
    stopped_target(exe, tmp)
    full_disk(exe, tmp)
    closed_outputs(exe, tmp)
    # A target out of file descriptors: the payload's memfd cannot be
    # made there; exit 10 (the target's resources), not 1 (internal)
    with Target(exe, "no_fds.py") as t:
        expect(["attach", "-q", "-d", "1", "-o",
                os.path.join(tmp, "no_fds.cap"), t.pid], 10,
               "Too many open files", "attach to a target out of file "
               "descriptors")
        expect(["heap", "-o", os.path.join(tmp, "no_fds.heap"), t.pid], 10,
               "Too many open files", "heap of a target out of file "
               "descriptors")
        t.proc.stdin.write(b"close\n")
        t.proc.stdin.flush()
        check(t.readline() == "CLOSED" and t.alive(),
              "the target out of descriptors runs on")
        # One descriptor left: the payload's memfd takes it and the
        # loader's open of that memfd fails.  Exit 10 with the cause (it
        # was 1, "its libc refused the image?"), and the memfd closed
        # again: every such attach left the target one descriptor less.
        # attach refuses before that now (it needs room for its session,
        # and leaves some to the target); heap still loads the payload
        for _ in range(2):
            expect(["attach", "-q", "-d", "1", "-o",
                    os.path.join(tmp, "no_fds.cap"), t.pid], 10,
                   "Too many open files", "attach to a target with one "
                   "descriptor left")
            expect(["heap", "-o", os.path.join(tmp, "no_fds.heap"),
                    t.pid], 10, "Too many open files", "heap of a target "
                   "with one descriptor left")
        left = [fd for fd in os.listdir("/proc/%d/fd" % t.pid)
                if "memattach" in os.readlink("/proc/%d/fd/%s" %
                                              (t.pid, fd))]
        check(not left, "a failed attach leaves no payload descriptor in "
              "the target", left)
        # Three left: a session (its ring, the attacher's pidfd) took
        # two and the target's next open()s failed with EMFILE while it
        # was tracked; refused now, before anything is done in it
        for _ in range(2):
            t.proc.stdin.write(b"close\n")
            t.proc.stdin.flush()
            t.readline()
        expect(["attach", "-q", "-d", "1", "-o",
                os.path.join(tmp, "no_fds.cap"), t.pid], 10,
               "RLIMIT_NOFILE", "attach to a target with three "
               "descriptors left: refused, they stay the target's")
    no_interpreter(tmp)
    # `memattach [attach options] PID` takes options after the PID as
    # attach does: it said "unknown option '-d'" (exit 2)
    expect(["-d", "1", "999999", "-o", os.path.join(tmp, "x.cap")],
           EXIT_NOPROC, "no such process",
           "memattach -d 1 PID -o FILE (an option after the PID)")
    # Its address space used up (RLIMIT_AS): dlopen cannot map the
    # payload; exit 10 naming the cause
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (200 << 20, 200 << 20))\n"
            "hog = []\n"
            "try:\n"
            "    while True: hog.append(bytearray(1 << 20))\n"
            "except MemoryError: pass\n"
            "del hog[-2:]\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n")
    a = subprocess.Popen([exe, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    if a.stdout.readline().strip() == b"READY":
        expect(["attach", "-q", "-d", "1", "-o",
                os.path.join(tmp, "no_as.cap"), a.pid], 10,
               "Cannot allocate memory", "attach to a target out of "
               "address space")
    a.kill()
    a.wait()
    # 150 MiB of address space left: a session (its ring, its tables, a
    # thread: over 200 MiB) took it, and the target's next bytearray
    # raised MemoryError; refused now, and the target allocates on
    code = ("import resource, sys\n"
            "vm = int(open('/proc/self/statm').read().split()[0]) * 4096\n"
            "lim = vm + (150 << 20)\n"
            "resource.setrlimit(resource.RLIMIT_AS, (lim, lim))\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "keep = [bytearray(1 << 20) for _ in range(12)]\n"
            "print('ALLOCATED', flush=True)\n")
    a = subprocess.Popen([exe, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    if a.stdout.readline().strip() == b"READY":
        expect(["attach", "-q", "-d", "1", "-o",
                os.path.join(tmp, "low_as.cap"), a.pid], 10,
               "RLIMIT_AS", "attach to a target with 150 MiB of address "
               "space left: refused, it stays the target's")
        a.stdin.write(b"go\n")
        a.stdin.flush()
        check(a.stdout.readline().strip() == b"ALLOCATED",
              "... and the target allocates 12 MiB after it")
    a.kill()
    a.wait()
    finish()


if __name__ == "__main__":
    main()
