"""A target in another mount namespace, as in a container: started under
`unshare --mount --pid --fork` with its interpreter bind-mounted at a path
that does not exist outside (and, for a pyenv build, its install directory
hidden under an empty tmpfs), with an empty offsets cache.  memattach must
open the ELF and DWARF files through /proc/PID/root (separate debug files:
the target's /usr/lib/debug, then ours, by build ID), so `info` says the
offsets came from DWARF, not the built-in table; stacks and attach work."""
import os
import re
import shutil
import tempfile

from ma_test import (TARGETS, Attach, Target, check, finish, interpreters,
                     memattach, skip)

# In the new namespaces: an empty tmpfs over $1 (a directory that is empty
# outside), the interpreter's home bind-mounted inside it, the original
# hidden; then the interpreter runs from the new path ($2: its path there,
# $3: the directory to hide, or '-'; the rest: the script and arguments
# after the exe that Target puts first).
INNER = r'''
set -e
root=$1 newexe=$2 hide=$3 src=$4
shift 5
mount -t tmpfs memattach-test "$root"
mkdir -p "$root/py"
if [ -d "$src" ]; then
    mount --bind "$src" "$root/py"
else
    touch "$root/py/$(basename "$src")"
    mount --bind "$src" "$root/py/$(basename "$src")"
fi
[ "$hide" = - ] || mount -t tmpfs memattach-hide "$hide"
export LD_LIBRARY_PATH="$root/py/lib"
exec "$newexe" "$@"
'''


def layout(exe, root):
    """(what to bind, the exe's new path, what to hide) for one
    interpreter: a pyenv build moves with its whole version directory (its
    libpython is found by RUNPATH, which LD_LIBRARY_PATH overrides); Debian's
    static executable alone."""
    real = os.path.realpath(exe)
    home = os.path.dirname(os.path.dirname(real))
    if os.path.isdir(os.path.join(home, "lib")) and \
            any(f.startswith("libpython3") for f in
                os.listdir(os.path.join(home, "lib"))):
        return home, os.path.join(root, "py", os.path.relpath(real, home)), \
            home
    return real, os.path.join(root, "py", os.path.basename(real)), "-"


def run(label, exe, tmp):
    root = tempfile.mkdtemp(prefix="root-", dir=tmp)
    src, newexe, hide = layout(exe, root)
    cache = tempfile.mkdtemp(prefix="cache-", dir=tmp)
    env = {"XDG_CACHE_HOME": cache}
    wrap = ["unshare", "--mount", "--pid", "--fork", "--kill-child",
            "--mount-proc",
            "sh", "-c", INNER, "sh", root, newexe, hide, src]
    with Target(exe, "named_threads.py", wrap=wrap) as t:
        for _ in range(6):
            t.readline()
        check(not os.path.exists(newexe),
              "%s: %s does not exist here" % (label, newexe))
        rc, out, err = memattach("info", t.pid, env=env)
        m = re.search(r"^offsets: +(.*)$", out, re.M)
        check(rc == 0 and m and m.group(1).startswith(
            "DWARF (") and "cached" not in m.group(1),
              "%s: info: offsets from DWARF, cache empty" % label,
              out + err)
        check(("runtime:     _PyRuntime at" in out and newexe in out) or
              "/py/lib/libpython" in out,
              "%s: info names the module at the target's path" % label, out)
        rc, out, err = memattach("stacks", t.pid, env=env)
        check(rc == 0 and "main (" in out and "idle (" in out,
              "%s: stacks" % label, out + err)
        a = Attach(t.pid, "--duration", "0.3",
                   output=os.path.join(tmp, label + ".cap"))
        check(a.wait(timeout=60) == 0 and "offsets from DWARF" in a.stderr,
              "%s: attach" % label, a.stderr)
        t.proc.stdin.write(b"quit\n")
        t.proc.stdin.flush()
        check(t.readline() == "GOT", "%s: target runs on" % label)
        first = t.pid
    # A second process of the same build in a namespace of its own, the
    # first gone: the cached offsets are found again through ITS root (the
    # cache kept the first's /proc/PID/root path: a miss once it ended,
    # or another process's path in the attach line while it lived)
    with Target(exe, "named_threads.py", wrap=wrap) as t:
        for _ in range(6):
            t.readline()
        rc, out, err = memattach("info", t.pid, env=env)
        m = re.search(r"^offsets: +(.*)$", out, re.M)
        line = m.group(1) if m else ""
        check(rc == 0 and line.startswith("DWARF (") and "cached" in line
              and "/proc/%d/" % first not in line,
              "%s: a second namespace: offsets from the cache, found "
              "through its own root" % label, out + err)


# A chroot inside the namespace, on a tmpfs mounted there (so its path,
# $1, is an empty directory outside), as a container runtime that
# chroots rather than pivots: the host's /usr bound into it, and the
# directory of the target scripts ($2) at its own path
CHROOT = r'''
set -e
root=$1 targets=$2
shift 2
mount -t tmpfs memattach-chroot "$root"
mkdir -p "$root/usr" "$root/proc" "$root/tmp" "$root$targets"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
ln -s usr/bin "$root/bin"
mount --bind /usr "$root/usr"
mount --bind "$targets" "$root$targets"
mount -t proc proc "$root/proc"
exec chroot "$root" "$@"
'''


def chrooted(label, exe, tmp):
    """A target chrooted in its mount namespace: its maps name its files
    from the namespace's root (/tmp/.../usr/bin/python3.11), which is
    not its root; outside, that path is an empty directory.  Every
    command was refused, exit 5, "is not a supported CPython: no
    _PyRuntime symbol in it" (found by the namespaces probe)."""
    root = tempfile.mkdtemp(prefix="chroot-", dir=tmp)
    wrap = ["unshare", "--mount", "--pid", "--fork", "--kill-child",
            "sh", "-c", CHROOT, "sh", root, TARGETS]
    with Target(exe, "named_threads.py", wrap=wrap) as t:
        for _ in range(6):
            t.readline()
        with open("/proc/%d/maps" % t.pid) as f:
            maps = f.read()
        check(root + "/usr/" in maps and not os.listdir(root),
              "%s: chroot: its maps name %s/usr/..., empty here" % (
                  label, root))
        rc, out, err = memattach("info", t.pid)
        check(rc == 0 and "offsets:     DWARF (" in out,
              "%s: chroot: info" % label, out + err)
        rc, out, err = memattach("stacks", t.pid)
        check(rc == 0 and "main (" in out and "idle (" in out,
              "%s: chroot: stacks" % label, out + err)
        a = Attach(t.pid, "--duration", "0.3",
                   output=os.path.join(tmp, label + "-chroot.cap"))
        check(a.wait(timeout=60) == 0, "%s: chroot: attach" % label,
              a.stderr)
        rc, out, err = memattach("heap", "-q", "-n", "3", t.pid)
        check(rc == 0 and "Census of" in out, "%s: chroot: heap" % label,
              out + err)
        t.proc.stdin.write(b"quit\n")
        t.proc.stdin.flush()
        check(t.readline() == "GOT", "%s: chroot: target runs on" % label)


def main():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        skip("mount namespaces", "needs root and unshare(1)")
        finish()
    tmp = tempfile.mkdtemp(prefix="memattach-mntns-")
    for label, exe in interpreters():
        try:
            run(label, exe, tmp)
            if exe == "/usr/bin/python3":
                chrooted(label, exe, tmp)
        except Exception as e:
            check(False, "%s: ran without error" % label, repr(e))
    shutil.rmtree(tmp, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
