"""A target under a seccomp filter (tests/targets/seccomp_noexec.py).

- memfd_create refused: attach and heap fail naming the call, the error
  and the filter.
- mmap/mprotect with PROT_EXEC refused: the payload's dlopen maps the
  image's first segment, read-only, and fails on its code, leaving that
  mapping behind (glibc does not unmap it).  memattach took the line in
  maps for a loaded payload and ran ma_start in memory that is not
  executable: "the remote call faulted (signal 11 at ...)", exit 1, and
  the payload image's memfd was left open in the target.  Now: the
  failure is named (the code not mapped executable, the refused call,
  the filter), exit 4 (the process's own policy refuses, a matter of
  permission), no descriptor is left, a second attach and heap say that
  the remains of a failed load are there instead of faulting again, and
  detach says there is nothing to stop.
- After each, the target runs on, with the descriptors it had.
"""
import os
import tempfile

from ma_test import Target, check, finish, interpreters, memattach

CAP = os.path.join(tempfile.mkdtemp(prefix="ma-seccomp-"), "x.cap")


def alive(t, n, label, after, fds):
    t.proc.stdin.write(b"x\n")
    t.proc.stdin.flush()
    got = t.readline(20).split()
    check(got[:2] == ["ALIVE", str(n)] and got[2:] == fds,
          "%s: the target runs on after %s, with its descriptors" %
          (label, after), (got, fds))


def run(label, exe):
    with Target(exe, "seccomp_noexec.py", "memfd") as t:
        t.proc.stdin.write(b"x\n")
        t.proc.stdin.flush()
        fds = t.readline(20).split()[2:]
        for i, cmd in enumerate((["attach", "-q", "-d", "1", "-o", CAP], ["heap"])):
            rc, out, err = memattach(*cmd, t.pid)
            check(rc == 4 and "memfd_create" in err and
                  "Operation not permitted" in err and
                  "seccomp filter" in err,
                  "%s: memfd refused: %s names the call and the filter" %
                  (label, cmd[0]), (rc, err))
            alive(t, i + 2, label, cmd[0], fds)
    with Target(exe, "seccomp_noexec.py", "exec") as t:
        t.proc.stdin.write(b"x\n")
        t.proc.stdin.flush()
        fds = t.readline(20).split()[2:]
        rc, out, err = memattach("attach", "-q", "-d", "1", "-o", CAP,
                                 t.pid)
        check(rc == 4 and "could not be mapped executable" in err and
              "Operation not permitted" in err and "seccomp filter" in err
              and "faulted" not in err,
              "%s: PROT_EXEC refused: attach says why, no fault" % label,
              (rc, err))
        alive(t, 2, label, "attach", fds)
        for i, cmd in enumerate((["attach", "-q", "-d", "1", "-o", CAP], ["heap"])):
            rc, out, err = memattach(*cmd, t.pid)
            check(rc == 4 and "remains of a payload that failed to load"
                  in err and "faulted" not in err,
                  "%s: PROT_EXEC refused: a second %s names the failed "
                  "load" % (label, cmd[0]), (rc, err))
            alive(t, i + 3, label, "a second " + cmd[0], fds)
        rc, out, err = memattach("detach", t.pid)
        check(rc == 0 and "nothing to stop" in out,
              "%s: detach after a failed load: nothing to stop" % label,
              (rc, out, err))
        alive(t, 5, label, "detach", fds)


def main():
    for label, exe in interpreters():
        run(label, exe)
    finish()


if __name__ == "__main__":
    main()
