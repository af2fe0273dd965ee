"""memattach ps: every Python process it can see, with version, RSS,
command line and whether it can attach (and why not): a plain target is
attachable; one tracked by another memattach names that memattach; one
under strace names its tracer; run as another user, a root-owned target
says there is no ptrace access; a process that is not Python is not listed.
"""
import glob
import json
import os
import shutil
import signal
import subprocess
import time

from ma_test import (Attach, Target, check, finish, interpreters, memattach,
                     py_version, pyenv_root, skip)


def ps_rows(**kw):
    rc, out, err = memattach("ps", "--json", **kw)
    if rc != 0:
        raise RuntimeError("memattach ps: exit %d: %s" % (rc, err))
    return {r["pid"]: r for r in json.loads(out)}


def main():
    found = interpreters()
    if not found:
        finish()
    label, exe = found[0]
    version = "%d.%d.%d" % py_version(exe)
    sleeper = subprocess.Popen(["sleep", "60"])
    with Target(exe, "named_threads.py") as t, \
            Target(exe, "named_threads.py") as t2:
        rows = ps_rows()
        r = rows.get(t.pid)
        check(r and r["python"] == version and r["attachable"] and
              r["rss"] > 1 << 20 and "named_threads.py" in r["command"],
              "%s: listed, Python %s, attachable, RSS, command" %
              (label, version), r)
        check(sleeper.pid not in rows, "sleep(1) is not listed")
        rc, out, err = memattach("ps")
        line = [ln for ln in out.splitlines()
                if ln.split() and ln.split()[0] == str(t.pid)]
        check(rc == 0 and out.startswith("    PID  PYTHON") and line and
              " yes " in line[0], "text: a row per process", out + err)

        a = Attach(t.pid, output="/tmp/memattach-ps-%d.cap" % os.getpid())
        if check(a.wait_attached(), "attach for the tracked case",
                 a.stderr):
            r = ps_rows().get(t.pid)
            check(r and not r["attachable"] and r["why_not"].startswith(
                "tracked by memattach (PID %d)" % a.proc.pid),
                  "a tracked process names its memattach", r)
        a.stop()
        try:
            os.unlink(a.output)
        except OSError:
            pass

        if shutil.which("strace"):
            st = subprocess.Popen(["strace", "-q", "-o", "/dev/null", "-p",
                                   str(t2.pid)], stderr=subprocess.DEVNULL)
            for _ in range(200):
                with open("/proc/%d/status" % t2.pid) as f:
                    if "TracerPid:\t%d" % st.pid in f.read():
                        break
                time.sleep(0.05)
            r = ps_rows().get(t2.pid)
            check(r and not r["attachable"] and
                  r["why_not"] == "traced by %d (strace)" % st.pid,
                  "a traced process names its tracer", r)
            st.send_signal(signal.SIGINT)
            st.wait()
        else:
            skip("traced process", "strace is not installed")

        if os.geteuid() == 0 and shutil.which("setpriv"):
            rc, out, err = memattach("ps", "--json", user="65534")
            r = {x["pid"]: x for x in json.loads(out)}.get(t.pid) \
                if rc == 0 else None
            check(r and not r["attachable"] and
                  r["why_not"].startswith("no access"),
                  "as another user: no ptrace access, said so", (r, err))
        else:
            skip("another user", "needs root and setpriv")
    sleeper.kill()
    sleeper.wait()
    python2()
    finish()


def python2():
    """A Python 2 process: listed with its version and why not (it said
    "Python version unknown", where 3.6 said "not supported")"""
    root = pyenv_root()
    exes = sorted(glob.glob(os.path.join(root, "versions", "2.*", "bin",
                                         "python2"))) if root else []
    if not exes:
        skip("Python 2", "no $(pyenv root)/versions/2.* interpreter here")
        return
    p = subprocess.Popen([exes[-1], "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.5)
        r = ps_rows().get(p.pid)
        check(r and not r["attachable"] and r["python"].startswith("2.") and
              r["why_not"].startswith("Python 2 is not supported"),
              "a Python 2 process: its version, and why not", r)
    finally:
        p.kill()
        p.wait()


if __name__ == "__main__":
    main()
