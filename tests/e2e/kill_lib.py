"""Killing memattach on purpose, and checking that the target did not
notice: shared by tests/e2e/test_kill_steps.py and bench/chaos.py.

memattach stops itself (SIGSTOP) at a named step when
MEMATTACH_TEST_STOP_AT=NAME#K is set, and lists the steps it passes when
MEMATTACH_TEST_STEP_LOG=1 (attacher/base/teststep.h)."""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

from ma_test import MEMATTACH, Target, check, finish, interpreters, skip

STEP_RE = re.compile(r"^memattach: step (\S+) #(\d+)$", re.M)


def proc_state(pid):
    """The one-letter state of a process, or None once it is reaped."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


class KillTarget(Target):
    """tests/targets/kill_target.py, with the checks a kill must pass."""

    def __init__(self, exe, where, **kw):
        self.where = where
        self.seq = 0
        self.pending = []
        super().__init__(exe, "kill_target.py", where, **kw)

    def line_with(self, prefix, timeout):
        """The next line starting with prefix; other lines are kept."""
        for i, line in enumerate(self.pending):
            if line.startswith(prefix):
                del self.pending[i]
                return line
        end = time.time() + timeout
        while time.time() < end:
            line = self.readline(timeout=max(0.01, end - time.time()))
            if not line:
                if not self.alive():
                    break
                continue
            if line.startswith(prefix):
                return line
            self.pending.append(line)
        return None

    def send(self, text):
        self.proc.stdin.write((text + "\n").encode())
        self.proc.stdin.flush()

    def stat(self, timeout=10):
        self.send("STAT")
        line = self.line_with("STAT ", timeout)
        return [int(x) for x in line.split()[1:]] if line else None

    def echo(self, timeout=10):
        """'' when the blocked read() returns the line written now."""
        if not self.alive():
            return "target died: %s" % self.proc.returncode
        self.seq += 1
        self.send("ECHO %d" % self.seq)
        got = self.line_with("GOT ", timeout)
        if got != "GOT %d" % self.seq:
            return "the blocked read did not return its line: %r" % got
        return ""

    def health(self, timeout=10):
        """'' when the target is well: alive, its blocked read(), select()
        and epoll_wait() each get their data, its threads allocate, sleep
        and take SIGALRM.  Otherwise what is wrong."""
        if not self.alive():
            return "target died: %s" % self.proc.returncode
        self.seq += 1
        n = self.seq
        before = self.stat(timeout)
        if before is None:
            return "no answer to STAT (blocked read lost?)"
        self.send("ECHO %d" % n)
        got = self.line_with("GOT ", timeout)
        if got != "GOT %d" % n:
            return "the blocked read did not return its line: %r" % got
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            for name, tag in (("sel", "SEL"), ("epl", "EPOLL")):
                s.sendto(str(n).encode(), os.path.join(self.where, name))
                got = self.line_with(tag + " ", timeout)
                if got != "%s %d" % (tag, n):
                    return "the thread in %s did not get its datagram: %r" % (
                        "select()" if tag == "SEL" else "epoll_wait()", got)
        finally:
            s.close()
        # Progress, within a few seconds: on a loaded machine a thread may
        # wait a while for the GIL, but one that is stuck never advances
        names = ("allocating threads", "SIGALRM handler", "sleeping thread")
        end = time.time() + 5
        while True:
            time.sleep(0.1)
            after = self.stat(timeout)
            if after is None:
                return "no answer to the second STAT"
            stuck = [w for i, w in enumerate(names) if after[i] <= before[i]]
            if not stuck:
                return ""
            if time.time() > end:
                return "the %s made no progress in 5 s (%s -> %s)" % (
                    " and ".join(stuck), before, after)

    def quit(self, timeout=20):
        self.send("QUIT")
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None


def memattach_env(**kw):
    env = dict(os.environ)
    env.pop("MEMATTACH_TEST_STOP_AT", None)
    env.pop("MEMATTACH_TEST_STEP_LOG", None)
    env.update({k: str(v) for k, v in kw.items()})
    return env


def step_log(pid, out, *args, timeout=60):
    """Run an attach with the step log; [(name, k)] in order, and its
    result."""
    p = subprocess.run([MEMATTACH, "attach", "--quiet", "-o", out] +
                       [str(a) for a in args] + [str(pid)],
                       capture_output=True, text=True, timeout=timeout,
                       env=memattach_env(MEMATTACH_TEST_STEP_LOG=1))
    return [(m.group(1), int(m.group(2)))
            for m in STEP_RE.finditer(p.stderr)], p


class StoppedAttach:
    """An attach (or another command: cmd) that stops itself at a step;
    then kill() it there."""

    def __init__(self, pid, out, step, *args, cmd=None):
        cmd = cmd or ["attach", "--quiet", "-o", out]
        self.proc = subprocess.Popen(
            [MEMATTACH] + cmd + [str(a) for a in args] + [str(pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env=memattach_env(MEMATTACH_TEST_STOP_AT=step))

    def wait_stopped(self, timeout=30):
        """True once memattach stopped itself; False if it exited."""
        end = time.time() + timeout
        while time.time() < end:
            st = proc_state(self.proc.pid)
            if st == "T":
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.002)
        return False

    def kill(self):
        self.proc.kill()
        _, err = self.proc.communicate(timeout=30)
        return err


def variable(name, also=()):
    """A step passed a number of times that varies from run to run (signals
    during a remote call, rounds of a freeze, turns of a drain)."""
    return name.endswith((".signal", ".syscall-entry", ".syscall-exit")) \
        or name in ("freeze.seized", "freeze.stopped", "thaw.detached") \
        or name in also


# Every kill on one interpreter per frame layout of the payload
# (common/ma_pyver.h: 3.8 and 3.9 share one; 3.10, 3.11, 3.12, 3.13):
# Debian's 3.11, pyenv 3.8, 3.10, 3.12, 3.13.  pyenv 3.9 and 3.11 run the
# same attacher and payload code on a layout already covered; the kill
# rounds are skipped there with that reason (MA_KILL_ALL=1 runs them too),
# to keep the suite's time.
COVERED = {"pyenv-3.9.": "3.8", "pyenv-3.11.": "Debian's 3.11"}


def unless_covered(fn):
    """fn(label, exe, tmp), skipped (said so) on an interpreter whose
    layout another one covers"""
    def run_one(label, exe, tmp):
        for prefix, by in COVERED.items():
            if label.startswith(prefix) and \
                    os.environ.get("MA_KILL_ALL") != "1":
                skip(label, "%s: its frame layout is covered by %s "
                     "(MA_KILL_ALL=1 runs it)" % (fn.__name__, by))
                return
        fn(label, exe, tmp)
    return run_one


def each_interpreter(prefix, *runs):
    """Every run(label, exe, tmp) on every interpreter, each interpreter in
    a fresh temporary directory; an exception fails one check, not the
    test; then the test's last line."""
    for label, exe in interpreters():
        tmp = tempfile.mkdtemp(prefix=prefix)
        try:
            for run in runs:
                run(label, exe, tmp)
        except Exception as e:
            check(False, "%s: ran without error" % label, repr(e))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finish()
