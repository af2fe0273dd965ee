#!/usr/bin/env python3
"""A process whose files were replaced under it: a worker running for
weeks while a package upgrade replaced its python, its libpython or its
libc (dpkg renames the new file over the old: the process's maps say
"/usr/bin/python3.11 (deleted)").  memattach said "not a CPython process"
(the executable or libpython), or "libc's rt_sigreturn trampoline not
found (not glibc on x86_64?)" (libc), and did nothing.  Now it reads the
file the process maps (/proc/PID/exe, /proc/PID/map_files), never the
file now at that path (another program is put there, here), and says why
when it may not (map_files takes CAP_SYS_ADMIN: exit 4)."""
import os
import shutil
import subprocess
import tempfile

from ma_test import (Target, check, finish, interpreters, memattach, skip,
                     stacks_json)

TARGET = "stacks_target.py"


def mapped(pid, name):
    """The maps path of the file whose basename starts with name"""
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            p = line.split(None, 5)[5].strip() if len(line.split()) > 5 \
                else ""
            if os.path.basename(p).startswith(name):
                return p
    return None


def works(label, what, t, tmp):
    """stacks, attach (its report) and heap of t, each as usual"""
    doc = stacks_json(t.pid)
    files = [f["file"] for th in doc["threads"] for f in th["frames"]]
    check(any(f.endswith(TARGET) for f in files),
          "%s: %s: stacks shows the target's frames" % (label, what), files)
    cap = os.path.join(tmp, "deleted.cap")
    rc, out, err = memattach("attach", "-q", "-d", "1", "-o", cap, t.pid)
    check(rc == 0 and os.path.exists(cap), "%s: %s: attach" % (label, what),
          "exit %d %s" % (rc, err[-400:]))
    rc, out, err = memattach("heap", "-q", "-n", "3", t.pid, timeout=120)
    check(rc == 0 and "Census of" in out, "%s: %s: heap" % (label, what),
          "exit %d %s" % (rc, err[-400:]))
    check(t.alive(), "%s: %s: the target runs on" % (label, what))


def replace(path):
    """What an upgrade does to a running program's file: another file
    renamed over its path (here /bin/true, not a Python at all)"""
    new = path + ".new"
    shutil.copy2("/bin/true", new)
    os.rename(new, path)


def exe_replaced(label, exe, tmp):
    copy = os.path.join(tmp, "python3")
    shutil.copy2(os.path.realpath(exe), copy)
    with Target(copy, TARGET) as t:
        replace(copy)
        check(mapped(t.pid, "python3") == copy + " (deleted)",
              "%s: the executable is mapped as deleted" % label,
              mapped(t.pid, "python3"))
        works(label, "executable replaced", t, tmp)
        rc, out, err = memattach("ps")
        row = [ln.split() for ln in out.splitlines()
               if ln.split()[:1] == [str(t.pid)]]
        check(rc == 0 and row and row[0][1][:2] == "3." and
              row[0][4] == "yes", "%s: ps lists it, its version read, "
              "attachable" % label, "exit %d %s" % (rc, row or out[-600:]))


def lib_replaced(label, exe, tmp, lib):
    """lib: the basename prefix of a library exe maps, copied into a
    directory of LD_LIBRARY_PATH and replaced once the target runs"""
    with Target(exe, TARGET) as t:
        orig = mapped(t.pid, lib)
    if not orig:
        skip("%s: %s replaced" % (label, lib), "%s not mapped" % lib)
        return
    libdir = os.path.join(tmp, "lib-" + lib.rstrip("."))
    os.makedirs(libdir, exist_ok=True)
    os.chmod(libdir, 0o755)
    copy = os.path.join(libdir, os.path.basename(orig))
    shutil.copy2(orig, copy)
    env = dict(os.environ, LD_LIBRARY_PATH=libdir)
    with Target(exe, TARGET, env=env) as t:
        replace(copy)
        check(mapped(t.pid, lib) == copy + " (deleted)",
              "%s: %s is mapped as deleted" % (label, lib),
              mapped(t.pid, lib))
        works(label, "%s replaced" % lib, t, tmp)
    # (nobody cannot run pyenv's interpreters under /root, mode 0700)
    if lib != "libc.so" or os.geteuid() != 0 or \
            not shutil.which("setpriv") or not exe.startswith("/usr/"):
        return
    # memattach as the target's own user (nobody), without root: the
    # replaced libc is out of its reach, and it says so
    shutil.copy2(orig, copy)

    def nobody():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    with Target(exe, TARGET, env=env, preexec_fn=nobody) as t:
        replace(copy)
        out = os.path.join(tmp, "nobody")
        os.makedirs(out, exist_ok=True)
        os.chmod(out, 0o777)
        rc, _, err = memattach("attach", "-q", "-d", "1", "-o",
                               os.path.join(out, "n.cap"), t.pid,
                               user="65534")
        check(rc == 4 and "cannot read its libc (it maps %s (deleted): "
              "deleted since it was mapped" % copy in err and
              "CAP_SYS_ADMIN" in err,
              "%s: libc replaced, memattach not root: exit 4, said why"
              % label, "exit %d %s" % (rc, err[-500:]))
        check(t.alive(), "%s: not root: the target runs on" % label)


def main():
    tmp = tempfile.mkdtemp(prefix="memattach-deleted-")
    os.chmod(tmp, 0o755)
    # how a file is reached does not depend on the version: Debian's (a
    # static libpython) and pyenv's 3.12 (a shared one), when present
    for label, exe in interpreters():
        if not label.startswith(("debian", "pyenv-3.12.")):
            continue
        shared = subprocess.run(["ldd", exe], capture_output=True,
                                text=True).stdout
        for f, args in ((exe_replaced, ()), (lib_replaced, ("libc.so",)),
                        (lib_replaced, ("libpython3.",))):
            if args == ("libpython3.",) and "libpython3." not in shared:
                continue  # libpython linked in: the executable's case
            try:
                f(label, exe, tmp, *args)
            except Exception as e:
                check(False, "%s: %s%s ran without error" % (
                    label, f.__name__, args), repr(e))
    shutil.rmtree(tmp, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
