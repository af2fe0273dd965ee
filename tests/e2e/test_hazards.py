"""The hazards of docs/architecture.md, each on real processes:

- a target blocked in read(): after attach and detach, the data fed to its
  stdin arrives intact and it exits 0;
- a thread asleep in a write that has sent part of its data: attach and
  detach leave it running, and the write returns all of it (hazard 11);
- a main thread holding the GIL inside a regex: attach works (no GIL
  needed) and records the allocations made meanwhile;
- SIGALRM every 10 ms during attach: the handler's tick count keeps rising
  at the same rate (no signal lost, no EINTR surfacing);
- memattach SIGKILLed at random moments during attach and tracking: the
  target survives every time, and `memattach detach` then a new attach work;
- the target exits while tracked: the capture is complete up to its exit;
- the target forks while tracked: the child is not tracked and exits 0,
  the parent goes on being tracked;
- the target frees a descriptor number while memattach attaches, then
  dup2()s its own file back over it, and dup2()s a file over the ring's
  descriptor: its files are all there after the detach, and tracking went
  on after both.

Each runs on every interpreter tracked by default, then again with
`--sample 16K` (sampled tracking) on Debian's python3 and pyenv 3.12
(every interpreter with MA_HAZARD_SAMPLED=all): there the figures
checked are estimates, so the checks of counts and bytes allow for their
error (16 KiB samples a 64 KiB buffer with p = 0.98: 30 of them are
estimated within 2.5% (one standard error); 1 MiB buffers are sampled
always).
"""
import os
import random
import re
import select
import signal
import subprocess
import tempfile
import time

from ma_test import (TARGETS, Attach, Target, check, finish, interpreters,
                     marks, memattach, report_json, row_at, wait_in_syscall)

random.seed(int(os.environ.get("MA_SEED", "4242")))

# the tracking mode's options: [] (default) or the sampled mode's
MODE = []
SAMPLED = ["--sample", "16K"]


def attach(pid, *args, **kw):
    return Attach(pid, *(MODE + list(args)), **kw)


def at_least(n):
    """n for exact figures; 80% of it for estimates"""
    return 0.8 * n if MODE else n


def session_then_line(label, t, tmp, name, what, line, want, duration=1.5):
    """An attach of `duration` seconds and its detach on target t (exit 0),
    then `line` to its stdin: it must answer `want` and exit 0"""
    a = attach(t.pid, "--duration", duration,
               output=os.path.join(tmp, name + ".cap"))
    rc = a.wait()
    check(rc == 0, "%s: attach/detach of a process %s" % (label, what),
          a.stderr)
    t.proc.stdin.write(line)
    t.proc.stdin.flush()
    got = t.readline(timeout=20)
    check(got == want, "%s: then it answers %r" % (label, want), got)
    try:
        code = t.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        code = None
    check(code == 0, "%s: and it exits 0" % label, code)


def blocked_read(label, exe, tmp):
    """its read() returns the data intact"""
    with Target(exe, "stacks_target.py") as t:
        _, tmain, _ = t.ready_line.split()
        wait_in_syscall(t.pid, int(tmain), 0)
        session_then_line(label, t, tmp, "read", "blocked in read()",
                          b"after attach\n", "GOT after attach")


def blocked_write(label, exe, tmp):
    """Hazard 11: attach and its detach leave a thread asleep in a write
    that has sent part of its data running, so the write is not cut short
    (a stop would have made os.write return the 64 KiB the pipe took)"""
    with Target(exe, "blocked_write.py") as t:
        tmain = int(t.ready_line.split()[1])
        check(wait_in_syscall(t.pid, tmain, 1),
              "%s: writer asleep in write()" % label)
        # the whole 1 MiB written: not cut short by the attach or the
        # detach
        session_then_line(label, t, tmp, "write", "asleep in a write",
                          b"go\n", "WROTE %d READ %d" % (1 << 20, 1 << 20),
                          duration=1)
    # Its only thread asleep in the write: no thread can run the calls, so
    # attach waits half a second for the write to end, then stops it
    # (docs/limits.md): it must attach all the same
    with Target(exe, "blocked_write.py", "alone") as t:
        tmain = int(t.ready_line.split()[1])
        check(wait_in_syscall(t.pid, tmain, 1),
              "%s: alone: writer asleep in write()" % label)
        t0 = time.monotonic()
        a = attach(t.pid, "--duration", 0.5,
                   output=os.path.join(tmp, "write-alone.cap"))
        rc = a.wait()
        took = time.monotonic() - t0
        check(rc == 0, "%s: alone: attach/detach of a process whose only "
              "thread is asleep in a write (%.1f s)" % (label, took),
              a.stderr)
        # its stderr drained until it says what the write returned
        err, out, end = b"", b"", time.monotonic() + 20
        fds = [t.proc.stderr.fileno(), t.proc.stdout.fileno()]
        while b"\n" not in out and time.monotonic() < end:
            ready, _, _ = select.select(fds, [], [], 0.5)
            if fds[0] in ready:
                err += os.read(fds[0], 1 << 20)
            if fds[1] in ready:
                out += os.read(fds[1], 1)
        got = out.decode(errors="replace").strip()
        t.proc.stdin.write(b"end\n")
        t.proc.stdin.flush()
        check(got.startswith("WROTE ") and
              int(got.split()[1]) == len(err) and t.proc.wait(timeout=20) ==
              0, "%s: alone: it goes on, and exits 0 (%s of %d bytes "
              "written: the stop cut it short)" % (label, got, 1 << 20),
              got)


def gil_regex(label, exe, tmp):
    cap = os.path.join(tmp, "gil.cap")
    lib = os.path.join(os.environ.get("MA_BINARY_DIR", ""), "tests",
                       "libma_native_alloc.so")
    env = dict(os.environ, MA_NATIVE_ALLOC_LIB=lib)
    with Target(exe, "gil_regex.py", env=env) as t:
        time.sleep(0.3)
        a = attach(t.pid, "--duration", 2, output=cap)
        rc = a.wait(timeout=30)
        check(rc == 0, "%s: attach works while the GIL is held in C" % label,
              a.stderr)
        check(t.alive(), "%s: GIL holder still running" % label)
    if rc == 0:
        # the C thread's blocks: 4242 bytes each, no Python stack
        doc = report_json(cap, "--view", "total", "--group", "stack",
                          "--top", "1000")
        # (a stack-less row: no frames, or the report's "<no Python
        # frame>" placeholder)
        native = [r for r in doc["rows"]
                  if (not r["stack"] or
                      r["stack"][0]["function"].startswith("<no ")) and
                  r["total"]["count"] >= 100 and
                  r["total"]["bytes"] >= 100 * 4242]
        check(native, "%s: the C thread's allocations are recorded while "
              "the main thread holds the GIL" % label,
              [(r["function"], r["total"]) for r in doc["rows"][:5]])


def sigalrm(label, exe, tmp):
    # over 1 s (10 lines): on a loaded host a 150 ms stall alone takes a
    # 0.5 s window below 0.7 of the first (alarms pending together count
    # once), whatever memattach did
    def rate(t, n=10):
        t.drain()
        a = int(t.readline().split()[1])
        t0 = time.monotonic()
        for _ in range(n):
            b = int(t.readline().split()[1])
        return (b - a) / (time.monotonic() - t0)

    with Target(exe, "sigalrm.py") as t:
        before = rate(t)
        a = attach(t.pid, "--duration", 1, output=os.path.join(tmp, "alrm.cap"))
        rc = a.wait()
        check(rc == 0, "%s: attach with SIGALRM every 10 ms" % label, a.stderr)
        after = rate(t)
        check(t.alive() and after > 0.7 * before,
              "%s: ticks keep rising at the same rate (%.0f/s, then %.0f/s)"
              % (label, before, after))


def sigkill(label, exe, tmp, rounds):
    survived = 0
    with Target(exe, "churn.py", 2) as t:
        for i in range(rounds):
            a = attach(t.pid, output=os.path.join(tmp, "kill.cap"))
            time.sleep(random.uniform(0, 0.4))
            a.proc.kill()
            a.wait()
            time.sleep(0.02)
            if not t.alive():
                break
            survived += 1
        check(survived == rounds,
              "%s: target survived memattach SIGKILLed at %d random moments"
              % (label, rounds), "died in round %d" % survived)
        # Killed while tracking: the payload's watchdog sees memattach's
        # pidfd readable within its 50 ms tick.  0.8 s tells that path
        # from the heartbeat's (1 s), which a payload that misreads the
        # pidfd's fdinfo would fall back to.
        a = attach(t.pid, output=os.path.join(tmp, "kill.cap"))
        if a.wait_attached():
            a.proc.kill()
            a.wait()
            t0 = time.monotonic()
            info = ""
            while time.monotonic() - t0 < 0.8:
                _, info, _ = memattach("info", t.pid, timeout=30)
                if "went away" in info:
                    break
            check("went away" in info,
                  "%s: memattach killed while tracking: the payload saw "
                  "its pidfd (dormant within 0.8 s)" % label,
                  [x for x in info.splitlines() if "payload" in x])
        rc, out, err = memattach("detach", t.pid, timeout=30)
        check(rc == 0 and "payload" in out,
              "%s: memattach detach afterwards" % label, out + err)
        a = attach(t.pid, "--duration", 1, output=os.path.join(tmp, "k2.cap"))
        rc = a.wait()
        check(rc == 0, "%s: and a new attach works" % label, a.stderr)
        check(t.alive(), "%s: target alive at the end" % label)


def target_exits(label, exe, tmp):
    cap = os.path.join(tmp, "exits.cap")
    m = marks(os.path.join(TARGETS, "exits.py"))
    with Target(exe, "exits.py") as t:
        a = attach(t.pid, output=cap)
        check(a.wait_attached(), "%s: exits: attached" % label, a.stderr)
        t.proc.stdin.write(b"go\n")
        t.proc.stdin.flush()
        rc = a.wait(timeout=30)
        check(rc == 0 and "target exited" in a.stderr,
              "%s: memattach ends with the target's exit, exit 0" % label,
              "exit %s: %s" % (rc, a.stderr))
        # said once, with how: the test, its parent, has not reaped it
        # yet ("target exited after 1.2 s (target exited)" before)
        check("target exited after " in a.stderr and
              a.stderr.count("target exited") == 1 and
              re.search(r"target exited after \S+ s \(exit status 0\); "
                        r"tracking ended with it", a.stderr),
              "%s: the end line says the exit once, with its status" %
              label, a.stderr)
    if not MODE:
        # an exec takes the payload with the old program's memory: the
        # session ends at once, said, the process running its new
        # program (before: progress frozen, then 'the payload did not
        # confirm its stop', INCOMPLETE, exit 8)
        ecap = os.path.join(tmp, "execs.cap")
        with Target(exe, "exits.py", "exec") as t:
            e = attach(t.pid, "--duration", 30, output=ecap)
            if e.wait_attached():
                t.proc.stdin.write(b"go\n")
                t.proc.stdin.flush()
            erc = e.wait(timeout=30)
            check(erc == 0 and "exec'd another program" in e.stderr and
                  "INCOMPLETE" not in e.stderr and
                  "target running" in e.stderr,
                  "%s: a target that execs: the session ends, said, exit 0"
                  % label, "exit %s: %s" % (erc, e.stderr[-500:]))
            check(t.readline(timeout=20) == "EXECED",
                  "%s: ... and the new program runs" % label)
            t.proc.stdin.write(b"\n")
            t.proc.stdin.flush()
        if erc == 0:
            doc = report_json(ecap, "--view", "total", "--group", "line")
            r = row_at(doc, os.path.join(TARGETS, "exits.py"), m["grow"])
            check(r is not None and
                  r["total"]["bytes"] >= at_least(20 << 20),
                  "%s: ... and the capture holds the old program's "
                  "allocations" % label, r and r["total"])
        if label.startswith("debian"):
            # an exec in the middle of the attach: said (exit 3), not a
            # fault in a remote call or a payload "of another build",
            # exit 1 (about 1 run in 4 before), and never a remote call
            # into the new image (once, the target killed by a malloc
            # assertion: the calls' addresses were the old program's)
            bad = []
            with Target(exe, "exec_loop.py") as t:
                for _ in range(8):
                    rc, out, err = memattach(
                        "attach", "-q", "-d", "0.3", "-o",
                        os.path.join(tmp, "loop.cap"), t.pid, timeout=60)
                    if rc not in (0, 3) or (rc == 3 and "exec'd a new "
                                            "program" not in err):
                        bad.append((rc, err.strip()[-200:]))
                check(not bad and t.alive(),
                      "%s: attaches to a process that execs every 10 ms: "
                      "tracked, or the exec said (exit 3)" % label, bad)
        # killed: the signal said (the attacher's side, once)
        with Target(exe, "exits.py") as t:
            k = attach(t.pid, output=os.path.join(tmp, "killed.cap"))
            if k.wait_attached():
                os.kill(t.pid, signal.SIGKILL)
            krc = k.wait(timeout=30)
            check(krc == 0 and re.search(
                r"target exited after \S+ s \(killed by SIGKILL\); "
                r"tracking ended with it", k.stderr),
                "%s: a target killed while tracked: the end line says by "
                "what" % label, "exit %s: %s" % (krc, k.stderr))
    if rc == 0:
        # The interpreter frees everything on its way out, so look at what
        # was allocated: 20 bytearrays of 1 MiB (object + buffer each)
        doc = report_json(cap, "--view", "total", "--group", "line")
        r = row_at(doc, os.path.join(TARGETS, "exits.py"), m["grow"])
        # (sampled: the small objects' count may be estimated 0)
        check(r is not None and
              r["total"]["count"] >= (16 if MODE else 40) and
              r["total"]["bytes"] >= at_least(20 * (1024 * 1024 + 1)),
              "%s: capture holds all 20 allocations made before the exit"
              % label, r and r["total"])
        check(doc["complete"], "%s: capture complete up to the exit" % label)


def forks(label, exe, tmp):
    cap = os.path.join(tmp, "forks.cap")
    path = os.path.join(TARGETS, "forks.py")
    m = marks(path)
    with Target(exe, "forks.py") as t:
        a = attach(t.pid, output=cap)
        check(a.wait_attached(), "%s: forks: attached" % label, a.stderr)
        t.proc.stdin.write(b"go\n")
        t.proc.stdin.flush()
        lines = [t.readline(timeout=30) for _ in range(4)]
        check(lines[:3] == [l for l in lines[:3] if l.endswith("exited 0")]
              and lines[3] == "DONE",
              "%s: each forked child exits 0" % label, lines)
        rc = a.stop()
        check(rc == 0, "%s: forks: attach exits 0" % label, a.stderr)
    if rc == 0:
        doc = report_json(cap, "--view", "total", "--group", "line", "--top",
                          "1000")
        p = row_at(doc, path, m["parent_alloc"])
        c = row_at(doc, path, m["child_alloc"])
        # 30 bytearrays of 64 KiB (each an object and a buffer), plus the
        # growth of the list that keeps them
        check(p is not None and
              p["total"]["count"] >= (24 if MODE else 60) and
              p["total"]["bytes"] >= at_least(30 * (64 * 1024 + 1)),
              "%s: the parent's 30 allocations after the forks are tracked"
              % label, p and p["total"])
        check(c is None, "%s: the children's allocations are not" % label,
              c and c["total"])


def our_fds(pid):
    """{number: link} of memattach's descriptors in process pid"""
    out = {}
    for f in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, f))
        except OSError:
            continue
        if "memattach" in link or "[pidfd]" in link:
            out[int(f)] = link
    return out


def fd_reuse(label, exe, tmp, *opts):
    """hazard 10: the target's descriptor numbers are its own (opts:
    `--children` too, where memattach watches the ring's descriptor for
    an exec)"""
    label = " ".join((label,) + opts)
    cap = os.path.join(tmp, "fds.cap")
    m = marks(os.path.join(TARGETS, "fd_reuse.py"))

    def cmd(t, line):
        t.proc.stdin.write(line.encode() + b"\n")
        t.proc.stdin.flush()
        return t.readline(timeout=20)

    with Target(exe, "fd_reuse.py") as t:
        low = int(cmd(t, "low").split()[1])
        a = attach(t.pid, *opts, output=cap)
        check(a.wait_attached(), "%s: fd_reuse: attached" % label, a.stderr)
        ours = our_fds(t.pid)
        ring = [n for n, link in ours.items() if "memattach-ring" in link]
        check(ring and low not in ours and min(ours) > 2,
              "%s: our descriptors keep off the number it freed (%d)" %
              (label, low), ours)
        pidfd = [n for n, link in ours.items() if "[pidfd]" in link]
        got = [cmd(t, "restore")]
        if ring:
            got.append(cmd(t, "dup2 %d" % ring[0]))
        # the payload's pidfd of memattach: /dev/null over it (always
        # readable), or closed (as a daemon closes every descriptor); the
        # payload took either for memattach's exit and stopped
        if pidfd:
            got.append(cmd(t, "%s %d" % ("close" if opts else "dup2",
                                         pidfd[0])))
        # past the second in which a payload whose attacher took it for
        # exec'd (and stopped its heartbeat) would stop by itself, and
        # past the watchdog's tick
        time.sleep(1.5)
        got.append(cmd(t, "work"))
        rc = a.stop()
        check(rc == 0 and "exec'd" not in a.stderr and
              "consumer gone" not in a.stderr,
              "%s: tracking goes on after both dup2()s, exit 0" % label,
              "%s; exit %s: %s" % (got, rc, a.stderr[-600:]))
        fds = cmd(t, "check %d %s %s" % (
            low, ring[0] if ring else "",
            pidfd[0] if pidfd and not opts else ""))
        check(fds == "FDS ok", "%s: its descriptors are all there after "
              "the detach" % label, fds)
        t.proc.stdin.write(b"quit\n")
        t.proc.stdin.flush()
        check(t.proc.wait(timeout=20) == 0, "%s: and it exits 0" % label)
    if rc == 0:
        doc = report_json(cap, "--view", "total", "--group", "line")
        r = row_at(doc, os.path.join(TARGETS, "fd_reuse.py"), m["work"])
        check(r is not None and
              r["total"]["bytes"] >= at_least(50 * 100000),
              "%s: the buffers allocated after the dup2()s are in the "
              "capture" % label, r and r["total"])


def unsafe_points(label, exe, tmp):
    libdir = os.path.join(os.environ.get("MA_BINARY_DIR", ""), "tests")
    env = dict(os.environ, MA_TEST_LIBDIR=libdir, MA_BLOCK_SECONDS="4")
    # A main thread in malloc half of the time: memattach must wait for a
    # moment it is not (or pick another thread); a wrong pick deadlocks the
    # remote dlopen on the arena lock the thread itself holds.
    fails = []
    for i in range(10):
        # a fresh process each time: the payload's dlopen is the call that
        # needs malloc
        with Target(exe, "unsafe_points.py", "malloc", env=env) as t:
            a = attach(t.pid, "--duration", 0.2,
                       output=os.path.join(tmp, "m.cap"))
            rc = a.wait(timeout=30)
            if rc != 0 or not t.alive():
                fails.append((i, rc, a.stderr.strip().splitlines()[-1:]))
    check(not fails, "%s: 10 attaches to fresh processes spinning in malloc"
          % label, fails)
    # A thread inside dlopen() holds the loader's lock for 4 s: no thread
    # may be hijacked meanwhile (its dlopen would wait forever); memattach
    # gives up with a clear message, the target goes on, and once the
    # constructor returns an attach works.
    with Target(exe, "unsafe_points.py", "loader", env=env) as t:
        t0 = time.monotonic()
        a = attach(t.pid, "--duration", 0.2,
                   output=os.path.join(tmp, "l.cap"))
        rc = a.wait(timeout=30)
        check(rc != 0 and "dynamic loader" in a.stderr and
              time.monotonic() - t0 < 4,
              "%s: attach refused while a thread is inside the loader" % label,
              "exit %s: %s" % (rc, a.stderr))
        t.drain()
        line = t.readline()
        check(t.alive() and line.startswith("it "),
              "%s: target unharmed meanwhile" % label, line)
        while "loaded True" not in t.readline(timeout=10):
            if time.monotonic() - t0 > 15:
                break
        a = attach(t.pid, "--duration", 0.2,
                   output=os.path.join(tmp, "l2.cap"))
        rc = a.wait(timeout=30)
        check(rc == 0, "%s: attach works once the loader is free" % label,
              a.stderr)


def main():
    global MODE
    tmp = tempfile.mkdtemp(prefix="memattach-hazards-")
    runs = [([], label, exe) for label, exe in interpreters()]
    every = os.environ.get("MA_HAZARD_SAMPLED") == "all"
    runs += [(SAMPLED, label + " --sample", exe)
             for label, exe in interpreters(announce=False)
             if every or label.startswith("debian") or
             label.startswith("pyenv-3.12.")]
    for MODE, label, exe in runs:
        for fn, opts in ((blocked_read, ()), (blocked_write, ()),
                         (gil_regex, ()), (sigalrm, ()),
                         (target_exits, ()), (forks, ()), (fd_reuse, ()),
                         (fd_reuse, ("--children",)), (unsafe_points, ())):
            if opts and MODE:
                continue  # the attacher's side: the same in every mode
            try:
                fn(label, exe, tmp, *opts)
            except Exception as e:
                check(False, "%s: %s ran without error" % (label, fn.__name__),
                      repr(e))
        try:
            sigkill(label, exe, tmp, 50 if label.startswith("debian") else 10)
        except Exception as e:
            check(False, "%s: sigkill ran without error" % label, repr(e))
    finish()


if __name__ == "__main__":
    main()
