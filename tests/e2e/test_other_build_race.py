"""Two memattach builds attaching at the same moment: the one that freezes
the target second looks again, frozen, and is refused (exit 9, naming the
other build's memattach) when the other's payload was loaded, and its
session started, since its own look before the freeze.

Made exact here: this build's attach stops itself right after its probe
(MEMATTACH_TEST_STOP_AT=inject.probed), another build attaches, then this
one goes on.  Until December 2026 the check inside the freeze looked for
another build's payload and session only where one had been loaded before
the probe: to a process holding this build's payload alone both builds
tracked at once (both exit 0), and the other build's GOT hooks stayed in
the process after both detached; to a process holding no payload, this
build's dlopen, by the path another build's load had just used, returned
that build's payload and the attach failed as 'dlopen of the payload
failed (its libc refused the image?)', exit 4.  A heap census probed
before another build's first attach failed so too; it now loads this
build's payload beside the other's and runs.
"""
import os
import signal
import subprocess
import time

from kill_lib import proc_state
from ma_test import (MEMATTACH, Target, check, finish, interpreters,
                     memattach, skip)
from test_other_build import PAYLOAD_SO, other_build, run


def payload_code_refs(pid):
    """{module: pointers into a payload's code} in the writable data of
    the target's own modules (GOT slots, CPython's allocator tables)"""
    code, data = [], []
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            p = line.split()
            lo, hi = (int(x, 16) for x in p[0].split("-"))
            path = p[5] if len(p) > 5 else ""
            if "memattach" in path:
                if "x" in p[1]:
                    code.append((lo, hi))
            elif path.startswith("/") and "w" in p[1]:
                data.append((lo, hi, path))
    out = {}
    with open("/proc/%d/mem" % pid, "rb", buffering=0) as mem:
        for lo, hi, path in data:
            try:
                mem.seek(lo)
                buf = mem.read(hi - lo)
            except OSError:
                continue
            for i in range(0, len(buf) - 7, 8):
                v = int.from_bytes(buf[i:i + 8], "little")
                if any(c_lo <= v < c_hi for c_lo, c_hi in code):
                    out[path] = out.get(path, 0) + 1
    return out


def race(label, exe, b, cap, preload):
    with Target(exe, "growth.py") as t:
        if preload:
            rc, out, err = run(MEMATTACH, "attach", "-q", "-d", "0.2", "-o",
                               cap, t.pid)
            check(rc == 0, "%s: this build's payload loaded first" % label,
                  err)
        a = subprocess.Popen(
            [MEMATTACH, "attach", "-q", "-d", "1", "-o", cap + ".a",
             str(t.pid)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=dict(os.environ,
                                MEMATTACH_TEST_STOP_AT="inject.probed"))
        end = time.time() + 30
        while time.time() < end and proc_state(a.pid) != "T" and \
                a.poll() is None:
            time.sleep(0.005)
        if not check(proc_state(a.pid) == "T",
                     "%s: this build's attach stopped after its probe" %
                     label):
            a.kill()
            a.communicate()
            return
        pb = subprocess.Popen([b, "attach", "-q", "-d", "2", "-o",
                               cap + ".b", str(t.pid)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
        end = time.time() + 20
        while time.time() < end and "tracking now" not in \
                memattach("info", t.pid)[1]:
            time.sleep(0.05)
        os.kill(a.pid, signal.SIGCONT)
        _, err = a.communicate(timeout=60)
        _, berr = pb.communicate(timeout=60)
        check(pb.returncode == 0, "%s: build B tracked" % label, berr)
        check(a.returncode == 9 and
              "already tracked by another memattach build (PID %d" %
              pb.pid in err,
              "%s: this build's attach, probed before B's, is refused "
              "(exit 9, naming B)" % label,
              "exit %s: %s" % (a.returncode, err))
        refs = payload_code_refs(t.pid)
        check(not refs, "%s: both detached, no pointer into a payload's "
              "code left in the target's modules" % label, refs)
        check(t.alive(), "%s: the target runs on" % label)


def heap_race(label, exe, b, cap):
    """heap stopped after its probe of a process without a payload;
    another build's attach loads its payload and tracks; heap goes on"""
    with Target(exe, "growth.py") as t:
        h = subprocess.Popen(
            [MEMATTACH, "heap", "-q", str(t.pid)], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, MEMATTACH_TEST_STOP_AT="heap.probed"))
        end = time.time() + 30
        while time.time() < end and proc_state(h.pid) != "T" and \
                h.poll() is None:
            time.sleep(0.005)
        if not check(proc_state(h.pid) == "T",
                     "%s: heap stopped after its probe" % label):
            h.kill()
            h.communicate()
            return
        rc, out, err = run(b, "attach", "-q", "-d", "0.3", "-o", cap,
                           t.pid)
        check(rc == 0, "%s: build B attached meanwhile" % label, err)
        os.kill(h.pid, signal.SIGCONT)
        out, err = h.communicate(timeout=120)
        check(h.returncode == 0 and "Census of" in out,
              "%s: heap, probed before B's payload was loaded, runs "
              "beside it" % label, "exit %s: %s" % (h.returncode, err))
        check(t.alive(), "%s: the target runs on" % label)


def main():
    if not os.path.exists(PAYLOAD_SO):
        skip("other builds", "no payload library at %s" % PAYLOAD_SO)
        finish()
    if os.geteuid() != 0:
        skip("other builds' race", "needs root to read the target's memory")
        finish()
    tmp = "/tmp/ma-other-build-race.%d" % os.getpid()
    os.makedirs(tmp, exist_ok=True)
    b = other_build(os.path.join(tmp, "memattach-b"), 0)
    if check(b, "another build made from this one"):
        for label, exe in interpreters(minors=(8, 13)):
            race(label + ", this build's payload loaded", exe, b,
                 os.path.join(tmp, "cap"), True)
            race(label + ", no payload loaded", exe, b,
                 os.path.join(tmp, "cap"), False)
            heap_race(label + ", heap", exe, b, os.path.join(tmp, "cap"))
    for f in os.listdir(tmp):
        os.unlink(os.path.join(tmp, f))
    os.rmdir(tmp)
    finish()


if __name__ == "__main__":
    main()
