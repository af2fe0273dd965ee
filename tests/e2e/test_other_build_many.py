"""Many memattach builds in one process: each loads its payload beside the
others' by a path no earlier load used ("/proc/self/fd/" and a "./" for
each payload already loaded: docs/architecture.md, "Payloads of several
builds").  Until December 2026 the path stopped growing after 13 "./"
(a 64-byte buffer): the 15th build's dlopen, by the path the 14th had
used, returned the 14th's payload, and its attach failed, 'dlopen of the
payload failed (its libc refused the image?)'.

Each payload also holds a block of the static TLS that glibc keeps for
dlopen (docs/limits.md): a few dozen of them use it up, and the next
build's dlopen fails.  Its attach said only 'its libc refused the image?';
it now names the other builds' payloads and the static TLS.  Its exit
code was 4 (permission denied) when its freeze had first waited for
another memattach's: the exit code of a refused seize outlived the wait.
"""
import os
import re
import signal
import subprocess
import time

from kill_lib import proc_state
from ma_test import MEMATTACH, Target, check, finish, skip
from test_other_build import PAYLOAD_SO, build_ids, run, tracked_cache

BUILDS = 15  # this one and 14 others


def builds(tmp, n):
    """n copies of memattach whose payloads' build IDs differ from this
    one's, and from each other's, in their first 8 bytes (the memfd name's
    16 hex digits)"""
    with open(PAYLOAD_SO, "rb") as f:
        want = build_ids(f.read())[0][1]
    with open(MEMATTACH, "rb") as f:
        data = f.read()
    hits = [off for off, bid in build_ids(data) if bid == want]
    if len(hits) != 1:
        return []
    out = []
    for i in range(n):
        d = bytearray(data)
        d[hits[0] + i % 8] ^= 1 << (i // 8)
        path = os.path.join(tmp, "memattach-%d" % i)
        with open(path, "wb") as f:
            f.write(d)
        os.chmod(path, 0o755)
        out.append(path)
    return out


def payload_names(pid):
    with open("/proc/%d/maps" % pid) as f:
        return {m.group(1) for m in re.finditer(
            r"/memfd:(memattach-payload\S*) \(deleted\)", f.read())}


def main():
    if not os.path.exists(PAYLOAD_SO):
        skip("many builds", "no payload library at %s" % PAYLOAD_SO)
        finish()
    tmp = "/tmp/ma-other-build-many.%d" % os.getpid()
    os.makedirs(tmp, exist_ok=True)
    others = builds(tmp, BUILDS - 1)
    cap = os.path.join(tmp, "cap")
    if check(len(others) == BUILDS - 1, "%d other builds made from this one"
             % (BUILDS - 1)):
        with Target("/usr/bin/python3", "growth.py") as t:
            for i, exe in enumerate(others):
                rc, out, err = run(exe, "attach", "-q", "-d", "0.1", "-o",
                                   cap, t.pid)
                if not check(rc == 0, "other build %d attaches beside %d "
                             "payloads" % (i + 1, i), err):
                    break
            rc, out, err = run(MEMATTACH, "attach", "-q", "-d", "0.5", "-o",
                               cap, t.pid)
            check(rc == 0, "this build attaches beside %d other builds' "
                  "payloads" % (BUILDS - 1), err)
            if rc == 0:
                tracked_cache(cap, "this build, the %dth" % BUILDS)
            names = payload_names(t.pid)
            check(len(names) == BUILDS, "%d payload images in the target"
                  % BUILDS, sorted(names))
            rc, out, err = run(MEMATTACH, "info", t.pid)
            check(rc == 0 and "payloads of %d other memattach builds" %
                  (BUILDS - 1) in out, "info counts the others' payloads",
                  out + err)
            check(t.alive(), "the target runs on")
        # more builds, until the loader's static TLS is used up
        more = builds(tmp, 64)[BUILDS - 1:]
        with Target("/usr/bin/python3", "growth.py") as t:
            rc, err = 0, ""
            for exe in more + [MEMATTACH]:
                rc, out, err = run(exe, "attach", "-q", "-d", "0.05", "-o",
                                   cap, t.pid)
                if rc:
                    break
            n = len(payload_names(t.pid))
            if rc == 0:
                skip("static TLS used up", "%d payloads loaded" % n)
            else:
                check("payloads of %d other memattach builds" % n in err and
                      "static TLS" in err, "beside %d payloads, the attach "
                      "that finds no room says why" % n, err)
                first_rc = rc
                # the same, its freeze waiting first for another
                # memattach's (a stacks held at its first seize): the exit
                # code is the failure's, not that of the refused seizes
                st = subprocess.Popen(
                    [MEMATTACH, "stacks", str(t.pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    env=dict(os.environ,
                             MEMATTACH_TEST_STOP_AT="freeze.seized"))
                end = time.time() + 30
                while time.time() < end and proc_state(st.pid) != "T" and \
                        st.poll() is None:
                    time.sleep(0.005)
                a = subprocess.Popen(
                    [MEMATTACH, "attach", "-q", "-d", "0.05", "-o", cap,
                     str(t.pid)], stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE, text=True)
                time.sleep(0.5)
                os.kill(st.pid, signal.SIGCONT)
                st.wait(timeout=60)
                _, err = a.communicate(timeout=60)
                check(a.returncode == first_rc and "static TLS" in err,
                      "after waiting for another memattach's freeze, the "
                      "same failure exits %d as without" % first_rc,
                      "exit %s: %s" % (a.returncode, err))
            check(t.alive(), "the target runs on")
    for f in os.listdir(tmp):
        os.unlink(os.path.join(tmp, f))
    os.rmdir(tmp)
    finish()


if __name__ == "__main__":
    main()
