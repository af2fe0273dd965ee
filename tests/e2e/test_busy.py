"""A second memattach on a process that one is tracking: refused at once
(exit 9) with a message naming the other memattach's PID and since when,
while the first one goes on; its capture is left alone even when the second
names the same file; `stacks` and `info` work alongside; once the first one
stopped, the next attach works.  Two attaches started at the same moment
(on a fresh process, then on one whose payload is loaded): one tracks,
the other is refused with exit 9, where before both could start and the
second replaced the first's session, whose capture then held almost
nothing and said it was complete.  And a capture path that is a planted
symlink is refused before anything is done to the target."""
import os
import re
import tempfile
import time

from ma_test import (Attach, Target, check, finish, interpreters, memattach,
                     report_json, stacks_json)

EXIT_CAPTURE, EXIT_BUSY = 7, 9


def run(label, exe, tmp):
    first_cap = os.path.join(tmp, label + "-first.cap")
    with Target(exe, "named_threads.py") as t:
        for _ in range(6):
            t.readline()
        a = Attach(t.pid, output=first_cap)
        if not check(a.wait_attached(), "%s: first attach" % label,
                     a.stderr):
            a.stop()
            return
        second = os.path.join(tmp, label + "-second.cap")
        rc, out, err = memattach("attach", "-q", "-d", "30", "-o", second,
                                 t.pid)
        # the first is still running: the second did not wait for it
        still = a.proc.poll() is None
        want = re.compile(r"^memattach: attach: PID %d is already tracked by "
                          r"memattach \(PID %d\) since \d\d:\d\d:\d\d; stop "
                          r"it first or use 'memattach detach %d'$" %
                          (t.pid, a.proc.pid, t.pid))
        check(rc == EXIT_BUSY and want.match(err.strip()) and still,
              "%s: a second attach is refused at once, naming the first "
              "(exit %d)" % (label, EXIT_BUSY),
              "exit %d, first running: %s\n%s" % (rc, still, err))
        check(not os.path.exists(second),
              "%s: the refused attach created no capture" % label)
        # the same capture path: the first one's file is not touched
        size = os.stat(first_cap).st_size
        ino = os.stat(first_cap).st_ino
        rc, out, err = memattach("attach", "-q", "-o", first_cap, t.pid)
        st = os.stat(first_cap)
        check(rc == EXIT_BUSY and st.st_ino == ino and st.st_size >= size,
              "%s: a second attach to the same file leaves it alone" % label,
              "exit %d, inode %d -> %d, size %d -> %d\n%s" %
              (rc, ino, st.st_ino, size, st.st_size, err))
        # read-only commands alongside
        try:
            doc = stacks_json(t.pid)
            ok = sum(1 for th in doc["threads"] if th["python"]) == 6
        except Exception as e:
            doc, ok = repr(e), False
        check(ok, "%s: stacks works while tracked" % label, doc)
        rc, out, err = memattach("info", t.pid)
        check(rc == 0 and re.search(r"payload: .*tracking now by memattach "
                                    r"\(PID %d\) since " % a.proc.pid, out),
              "%s: info says who tracks it" % label, out + err)
        # since when: the session's start, one time whenever asked (it
        # was the age in whole seconds taken from the current second,
        # one second later in the part of each second before the start's
        # fraction)
        seen = set()
        for _ in range(14):
            rc, out, err = memattach("info", t.pid)
            m = re.search(r"tracking now by memattach \(PID \d+\) since "
                          r"(\d\d:\d\d:\d\d)", out)
            seen.add(m.group(1) if m else None)
            time.sleep(0.09)
        check(len(seen) == 1 and None not in seen,
              "%s: info gives one 'since' however often asked" % label,
              sorted(map(str, seen)))
        rc = a.stop()
        check(rc == 0, "%s: the first attach ends normally" % label,
              a.stderr)
        try:
            doc = report_json(first_cap)
            ok = doc is not None
        except Exception as e:
            ok, doc = False, repr(e)
        check(ok, "%s: the first attach's capture reads" % label, doc)
        # and now another one works
        rc, out, err = memattach("attach", "-q", "-d", "0.2", "-o", second,
                                 t.pid)
        check(rc == 0, "%s: attach works once the first stopped" % label,
              err)


def at_once(label, exe, tmp):
    """Pairs of attaches started together: exactly one of each pair
    tracks"""
    import subprocess
    from ma_test import MEMATTACH
    for target in range(2):
        with Target(exe, "named_threads.py") as t:
            for _ in range(6):
                t.readline()
            for rnd in range(4):
                caps = [os.path.join(tmp, "%s-once-%d-%d-%d.cap" %
                                     (label, target, rnd, k))
                        for k in range(2)]
                procs = [subprocess.Popen(
                    [MEMATTACH, "attach", "-q", "-d", "1", "-o", c,
                     str(t.pid)], stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True) for c in caps]
                outs = [p.communicate(timeout=60) for p in procs]
                rcs = [p.returncode for p in procs]
                what = "%s: attaches at once (%s payload, pair %d)" % (
                    label, "loaded" if rnd else "no", rnd + 1)
                if not check(sorted(rcs) == [0, EXIT_BUSY],
                             what + ": one tracks, the other exits %d" %
                             EXIT_BUSY,
                             "exits %s\n%s" % (rcs, "\n".join(
                                 o[1] for o in outs))):
                    continue
                ok = rcs.index(0)
                err = outs[ok][1]
                check("replaced" not in err and "INCOMPLETE" not in err,
                      what + ": the one that tracks ran to its end", err)
                check("already" in outs[1 - ok][1] or
                      "a moment ago" in outs[1 - ok][1],
                      what + ": the other says another memattach has it",
                      outs[1 - ok][1])


def detach_names_it(label, exe, tmp):
    """memattach detach of a process another memattach tracks names that
    one (it said only "last one tracking"), and that one ends its session
    saying why"""
    cap = os.path.join(tmp, "detached.cap")
    with Target(exe, "named_threads.py") as t:
        a = Attach(t.pid, "-d", "30", output=cap)
        if not check(a.wait_attached(), "%s: detach: attached" % label,
                     a.stderr):
            a.stop()
            return
        rc, out, err = memattach("detach", t.pid, timeout=60)
        arc = a.wait(timeout=60)
        check(rc == 0 and "tracked by memattach %d" % a.proc.pid in out and
              arc == 0 and "stopped by 'memattach detach'" in a.stderr,
              "%s: detach names the memattach that tracked, which ends "
              "saying why" % label, (rc, out, err, arc, a.stderr))


def symlink_refused(label, exe, tmp):
    victim = os.path.join(tmp, "victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    link = os.path.join(tmp, "planted.cap")
    os.symlink(victim, link)
    with Target(exe, "named_threads.py") as t:
        rc, out, err = memattach("attach", "-q", "-d", "1", "-o", link,
                                 t.pid)
        check(rc == EXIT_CAPTURE and "symbolic link" in err,
              "%s: a symlink as capture path is refused (exit %d)" %
              (label, EXIT_CAPTURE), "exit %d: %s" % (rc, err))
        with open(victim) as f:
            check(f.read() == "precious\n" and os.path.islink(link),
                  "%s: the link and its target are untouched" % label)
        rc, out, err = memattach("info", t.pid)
        check("payload:     not loaded" in out,
              "%s: nothing was done to the target" % label, out + err)


def main():
    tmp = tempfile.mkdtemp(prefix="memattach-busy-")
    found = interpreters()
    # attacher-side logic: Debian's python3 and the newest pyenv suffice
    picked = found[:1] + found[-1:] if len(found) > 1 else found
    for label, exe in picked:
        try:
            run(label, exe, tmp)
        except Exception as e:
            check(False, "%s: ran without error" % label, repr(e))
    if found:
        at_once(found[0][0], found[0][1], tmp)
        symlink_refused(found[0][0], found[0][1], tmp)
        detach_names_it(found[0][0], found[0][1], tmp)
    finish()


if __name__ == "__main__":
    main()
