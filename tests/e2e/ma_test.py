"""Shared helpers for memattach's end-to-end tests.

Each test drives real Python processes (tests/targets/*.py) by PID with the
real memattach binary, and checks real output.  Nothing of the target is
mocked.  A test script prints one line per check and ends with the plain
line 'N passed, N failed, N skipped'; it exits 1 on any failure, 77 when
everything was skipped (ctest shows it as skipped).
"""
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

SRC = os.environ.get("MA_SOURCE_DIR",
                     os.path.dirname(os.path.dirname(os.path.dirname(
                         os.path.abspath(__file__)))))
MEMATTACH = os.environ.get("MEMATTACH", os.path.join(SRC, "build", "memattach"))
TARGETS = os.path.join(SRC, "tests", "targets")

_passed = _skipped = 0
_failures = []  # [[line, ...]] per failed check, recapped by finish()
# a failure's detail lines the recap repeats (all of them print at the check)
RECAP_DETAIL = 20


def check(cond, what, detail=""):
    global _passed
    if cond:
        _passed += 1
        print("ok   %s" % what, flush=True)
    else:
        lines = ["FAIL %s" % what]
        if detail:
            lines += ["     | %s" % line
                      for line in str(detail).rstrip().splitlines()]
        _failures.append(lines)
        print("\n".join(lines), flush=True)
    return cond


def skip(what, reason):
    global _skipped
    _skipped += 1
    print("skip %s: %s" % (what, reason), flush=True)


def finish():
    # The failures again at the end: a CI log shown truncated in its middle
    # (a test prints hundreds of ok lines) still names what failed.
    if _failures:
        print("failures:")
        for lines in _failures:
            print("\n".join(lines[:1 + RECAP_DETAIL]))
    print("%d passed, %d failed, %d skipped" % (_passed, len(_failures),
                                                _skipped))
    if _failures:
        sys.exit(1)
    if not _passed:
        sys.exit(77)
    sys.exit(0)


def pyenv_root():
    try:
        out = subprocess.run(["pyenv", "root"], capture_output=True,
                             text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    home = os.path.expanduser("~/.pyenv")
    return home if os.path.isdir(home) else None


def interpreters(minors=range(8, 14), announce=True):
    """[(label, path)]: Debian's /usr/bin/python3 and each pyenv 3.8-3.13.

    Absent ones are reported as skipped with the reason."""
    found = []
    if os.path.exists("/usr/bin/python3"):
        found.append(("debian-" + os.path.basename(
            os.path.realpath("/usr/bin/python3")), "/usr/bin/python3"))
    elif announce:
        skip("/usr/bin/python3", "not installed")
    root = pyenv_root()
    versions = os.path.join(root, "versions") if root else None
    for minor in minors:
        hits = []
        if versions and os.path.isdir(versions):
            for v in sorted(os.listdir(versions)):
                if re.fullmatch(r"3\.%d\.\d+" % minor, v):
                    exe = os.path.join(versions, v, "bin", "python3")
                    if os.access(exe, os.X_OK):
                        hits.append(("pyenv-" + v, exe))
        if hits:
            found.extend(hits)
        elif announce:
            skip("pyenv 3.%d" % minor,
                 "no $(pyenv root)/versions/3.%d.* interpreter here" % minor
                 if versions else "pyenv is not installed")
    # MA_INTERPRETERS=debian,3.12: only those whose label contains one of
    # the words (for a developer's quick run; CI sets nothing)
    only = [w for w in os.environ.get("MA_INTERPRETERS", "").split(",") if w]
    if only:
        found = [(l, e) for l, e in found if any(w in l for w in only)]
    return found


def py_version(exe):
    out = subprocess.run([exe, "-c", "import sys; print('%d.%d.%d' % "
                          "sys.version_info[:3])"], capture_output=True,
                         text=True, timeout=30)
    return tuple(int(x) for x in out.stdout.strip().split("."))


def marks(path):
    """{name: line} for each '# MARK: name' comment in a source file."""
    out = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            m = re.search(r"#\s*MARK:\s*(\w+)", line)
            if m:
                out[m.group(1)] = n
    return out


def line_of(path, func, needle):
    """Line number of the first line containing needle inside def func."""
    with open(path) as f:
        lines = f.readlines()
    inside = None
    for n, line in enumerate(lines, 1):
        m = re.match(r"(\s*)def (\w+)\(", line)
        if m:
            inside = (len(m.group(1)), m.group(2)) if m.group(2) == func else (
                None if inside and len(m.group(1)) <= inside[0] else inside)
            continue
        if inside and needle in line:
            return n
    raise LookupError("%s: no %r in %s()" % (path, needle, func))


class Target:
    """A target process: started, waited for its READY line, killed."""

    def __init__(self, exe, script, *args, env=None, ready="READY",
                 timeout=30, preexec_fn=None, wrap=None):
        """wrap: a command the interpreter runs under, which forks it
        (unshare --fork ...): self.pid is then the interpreter, the
        wrapper's child, and self.wrapper the wrapper's PID."""
        self.proc = subprocess.Popen(
            list(wrap or []) + [exe, os.path.join(TARGETS, script)] +
            [str(a) for a in args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, preexec_fn=preexec_fn)
        self.pid = self.wrapper = self.proc.pid
        self.ready_line = self.readline(timeout)
        if wrap and self.ready_line.startswith(ready):
            # the wrapper's only child, up once it printed READY
            with open("/proc/%d/task/%d/children" % (self.wrapper,
                                                     self.wrapper)) as f:
                kids = f.read().split()
            self.pid = int(kids[0]) if len(kids) == 1 else None
        if not self.ready_line.startswith(ready):
            err = self.proc.stderr.read1(65536).decode(errors="replace") \
                if self.proc.poll() is not None else ""
            self.kill()
            raise RuntimeError("target %s did not get ready: %r %s" %
                               (script, self.ready_line, err))

    def readline(self, timeout=30):
        end = time.time() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while not buf.endswith(b"\n") and time.time() < end:
            r, _, _ = select.select([fd], [], [], max(0, end - time.time()))
            if not r:
                break
            ch = os.read(fd, 1)
            if not ch:
                break
            buf += ch
        return buf.decode(errors="replace").rstrip("\n")

    def drain(self):
        """Every complete line printed so far and not read yet."""
        fd = self.proc.stdout.fileno()
        buf = b""
        while True:
            r, _, _ = select.select([fd], [], [], 0)
            if not r:
                break
            ch = os.read(fd, 65536)
            if not ch:
                break
            buf += ch
        while buf and not buf.endswith(b"\n"):
            buf += os.read(fd, 1)
        return buf.decode(errors="replace").splitlines()

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def children(pid):
    """The PIDs of pid's children (every thread's), as /proc lists them"""
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            pass  # a thread that ended meanwhile
    return out


def wait_in_syscall(pid, tid, nr, timeout=10):
    """Wait until thread tid of pid sits in syscall number nr (0 = read),
    as /proc/PID/task/TID/syscall reports."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            with open("/proc/%d/task/%d/syscall" % (pid, tid)) as f:
                if f.read().split()[0] == str(nr):
                    return True
        except (OSError, IndexError):
            pass
        time.sleep(0.01)
    return False


def memattach(*args, env=None, timeout=60, user=None):
    cmd = [MEMATTACH] + [str(a) for a in args]
    if user:
        cmd = ["setpriv", "--reuid=%s" % user, "--regid=%s" % user,
               "--clear-groups", "--"] + cmd
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       env=e)
    return p.returncode, p.stdout, p.stderr


def on_terminal(args, cwd=None, timeout=60):
    """Run memattach with stdout and stderr on a pseudo-terminal; returns
    (exit code, everything it wrote there)."""
    import pty
    master, slave = pty.openpty()
    p = subprocess.Popen([MEMATTACH] + [str(a) for a in args], cwd=cwd,
                         stdin=subprocess.DEVNULL, stdout=slave,
                         stderr=slave, close_fds=True)
    os.close(slave)
    out = b""
    while True:
        r, _, _ = select.select([master], [], [], timeout)
        if not r:
            p.kill()
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return p.wait(timeout=timeout), out.decode(errors="replace")


def stacks_json(pid, *extra, env=None):
    rc, out, err = memattach("stacks", "--json", *extra, pid, env=env)
    if rc != 0:
        raise RuntimeError("memattach stacks %s: exit %d: %s" % (pid, rc, err))
    return json.loads(out)


def thread_by_tid(doc, tid):
    for t in doc["threads"]:
        if t["tid"] == tid:
            return t
    return None


class Attach:
    """A `memattach attach` running in the background against a target."""

    def __init__(self, pid, *args, output=None, verbose=False):
        self.output = output
        cmd = [MEMATTACH] + (["-v"] if verbose else []) + \
            ["attach", "--quiet"] + [str(a) for a in args]
        if output:
            cmd += ["-o", output]
        cmd.append(str(pid))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.stdout = self.stderr = ""

    def wait_attached(self, timeout=20):
        """Wait for the 'attached to' line on stderr; False if it exited."""
        end = time.time() + timeout
        fd = self.proc.stderr.fileno()
        buf = ""
        while time.time() < end:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                ch = os.read(fd, 4096).decode(errors="replace")
                if not ch:
                    break
                buf += ch
                if "attached to" in buf:
                    self.stderr += buf
                    return True
            if self.proc.poll() is not None and not r:
                break
        self.stderr += buf
        return False

    def stop(self, sig=signal.SIGINT, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout=60):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        self.stdout += out or ""
        self.stderr += err or ""
        return self.proc.returncode


def tracked_round(t, opts, cap, label, mode, timeout=120, verbose=False,
                  settle=0.0):
    """Attach to target t with opts, have it do one round of its work ("go"
    on its stdin, "DONE" back), wait `settle` seconds, stop: the Attach when
    every step went well (each one checked), else None."""
    a = Attach(t.pid, *opts, output=cap, verbose=verbose)
    if not check(a.wait_attached(), "%s: %s: attached" % (label, mode),
                 a.stderr):
        a.stop()
        return None
    t.proc.stdin.write(b"go\n")
    t.proc.stdin.flush()
    done = t.readline(timeout=timeout)
    check(done == "DONE", "%s: %s: the work ran" % (label, mode), done)
    time.sleep(settle)
    rc = a.stop()
    if not check(rc == 0, "%s: %s: attach exits 0" % (label, mode),
                 a.stderr):
        return None
    return a


def report_json(capture, *args):
    rc, out, err = memattach("report", "--format", "json", *args, capture)
    if rc != 0:
        raise RuntimeError("memattach report %s: exit %d: %s" %
                           (capture, rc, err))
    return json.loads(out)


def row_at(doc, file, line):
    for r in doc["rows"]:
        if r["file"] == file and r["line"] == line:
            return r
    return None
