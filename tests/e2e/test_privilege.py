"""Least privilege (issue 13): memattach without root.

A target runs as user nobody.  memattach as nobody too (the same user: the
classic ptrace rule, this kernel has no Yama) must attach, print stacks and
walk the heap, with a capture file of its own user, mode 0600, and no
writable home for its offsets cache.  memattach as daemon, another user,
must be refused with exit code 4 (permission) and a message that names
CAP_SYS_PTRACE and ptrace_scope; as daemon with CAP_SYS_PTRACE and nothing
else (setpriv's ambient capabilities) it must work again, detach included.
Run as root (to switch users); skipped, with the reason, otherwise, or
without setpriv, or for interpreters nobody cannot run (pyenv under a
/root of mode 0700)."""
import os
import pwd
import shutil
import stat
import subprocess
import tempfile

from ma_test import MEMATTACH, Target, check, finish, interpreters, skip

CAPS = ["--inh-caps=+sys_ptrace", "--ambient-caps=+sys_ptrace"]


def as_user(user, *args, caps=False, timeout=90):
    pw = pwd.getpwnam(user)
    cmd = ["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid,
           "--init-groups"] + (CAPS if caps else []) + ["--", MEMATTACH] + \
        [str(a) for a in args]
    # the user's own environment: a home that does not exist, no cache
    env = {"PATH": "/usr/bin:/bin", "HOME": pw.pw_dir, "LANG": "C.UTF-8"}
    p = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=timeout, env=env, cwd="/")
    return p.returncode, p.stdout, p.stderr


def runs_as(user, exe):
    """Can `user` run exe, started as the targets are?"""
    pw = pwd.getpwnam(user)
    try:
        p = subprocess.run([exe, "-c", "import sys"], capture_output=True,
                           text=True, timeout=30, cwd="/",
                           preexec_fn=drop_to(pw.pw_uid, pw.pw_gid))
    except OSError as e:
        return False, [str(e)]
    return p.returncode == 0, p.stderr.strip().splitlines()[-1:]


def drop_to(uid, gid):
    def f():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    return f


def owner_mode(path):
    st = os.stat(path)
    return pwd.getpwuid(st.st_uid).pw_name, stat.S_IMODE(st.st_mode)


def session(label, who, t, tmp, caps=False):
    """stacks, attach, report, heap, detach as `who`: each must work"""
    pid = t.pid
    t.drain()  # the target prints all along: keep its pipe from filling
    tag = "%s: %s%s" % (label, who, " with CAP_SYS_PTRACE" if caps else "")
    rc, out, err = as_user(who, "stacks", pid, caps=caps)
    check(rc == 0 and ("fill_cache" in out or "main (" in out),
          "%s: stacks" % tag, err + out)
    cap = os.path.join(tmp, "%s-%s.cap" % (label, who))
    rc, out, err = as_user(who, "attach", "--quiet", "--duration", "0.5",
                           "-o", cap, pid, caps=caps)
    check(rc == 0 and os.path.exists(cap), "%s: attach" % tag, err + out)
    t.drain()
    if os.path.exists(cap):
        check(owner_mode(cap) == (who, 0o600),
              "%s: the capture is %s's, mode 0600" % (tag, who),
              owner_mode(cap))
        rc, out, err = as_user(who, "report", "--top", "3", cap)
        check(rc == 0 and "growth.py" in out,
              "%s: report of the capture" % tag, err + out)
    hout = os.path.join(tmp, "%s-%s.heap" % (label, who))
    rc, out, err = as_user(who, "heap", "-o", hout, pid, caps=caps,
                           timeout=120)
    text = open(hout).read() if os.path.exists(hout) else ""
    check(rc == 0 and "bytes" in text, "%s: heap" % tag, err + out)
    rc, out, err = as_user(who, "detach", pid, caps=caps)
    check(rc == 0, "%s: detach" % tag, err + out)


def run(label, exe, tmp):
    nobody = pwd.getpwnam("nobody")
    with Target(exe, "growth.py",
                preexec_fn=drop_to(nobody.pw_uid, nobody.pw_gid)) as t:
        session(label, "nobody", t, tmp)
        rc, out, err = as_user("daemon", "stacks", t.pid)
        check(rc == 4 and "CAP_SYS_PTRACE" in err and
              "ptrace_scope" in err,
              "%s: daemon without CAP_SYS_PTRACE: exit 4, the message "
              "names CAP_SYS_PTRACE and ptrace_scope" % label,
              "rc %d: %s" % (rc, err + out))
        rc, out, err = as_user("daemon", "attach", "--duration", "0.2",
                               "-o", os.path.join(tmp, "no.cap"), t.pid)
        check(rc == 4 and "CAP_SYS_PTRACE" in err,
              "%s: daemon without CAP_SYS_PTRACE: attach refused, exit 4"
              % label, "rc %d: %s" % (rc, err + out))
        session(label, "daemon", t, tmp, caps=True)
        check(t.alive(), "%s: the target runs on" % label)


def main():
    if os.geteuid() != 0:
        skip("privilege", "not root: the test switches users")
        return finish()
    if not shutil.which("setpriv"):
        skip("privilege", "setpriv (util-linux) is not installed")
        return finish()
    for user in ("nobody", "daemon"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            skip("privilege", "no user %s here" % user)
            return finish()
    tmp = tempfile.mkdtemp(prefix="ma-priv-")
    os.chmod(tmp, 0o1777)  # both users write their captures there
    try:
        for label, exe in interpreters():
            ok, why = runs_as("nobody", exe)
            if not ok:
                skip(label, "nobody cannot run %s (%s)" %
                     (exe, " ".join(why) or "permission"))
                continue
            run(label, exe, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
