"""Payloads of several memattach builds in one process (memattach upgraded,
or a second one installed, while the process runs on): each build loads
its own payload beside the others' and tracks with it, and refuses to
while another build's session runs.

A payload is never unloaded (docs/architecture.md), so until December 2026
a process kept the first build's payload for its life, and every other
build's attach and heap were refused until a restart: what an on-call
engineer who upgraded memattach cannot do.

The other builds are real binaries: copies of this memattach whose
embedded payload image has one byte of its build ID note changed (what
a rebuild changes).  Their payloads are separate images in the target,
loaded by their own dlopen, with the same code and exports as this
build's.
"""
import os
import re
import signal
import subprocess
import time

from ma_test import (MEMATTACH, Target, check, finish, line_of, memattach,
                     report_json, skip)

NT_GNU_BUILD_ID = 3
BUILD = os.environ.get("MA_BINARY_DIR",
                       os.path.join(os.path.dirname(MEMATTACH)))
PAYLOAD_SO = os.path.join(BUILD, "injector", "memattach_payload.so")
TARGET = "growth.py"
ENTRY = 64 * 1024  # growth.py's cache entry


def build_ids(data):
    """[(offset of the ID's bytes, the ID)] of every build ID note"""
    out, i = [], 0
    while True:
        i = data.find(b"GNU\0", i)
        if i < 0:
            return out
        h = i - 12
        if h >= 0:
            namesz, descsz, typ = (int.from_bytes(data[h + k:h + k + 4],
                                                  "little")
                                   for k in (0, 4, 8))
            if namesz == 4 and typ == NT_GNU_BUILD_ID and \
                    8 <= descsz <= 32:
                out.append((i + 4, data[i + 4:i + 4 + descsz]))
        i += 4


def other_build(path, byte):
    """A copy of memattach whose embedded payload's build ID differs at
    `byte`: None when the payload's ID is not found once in the binary"""
    with open(PAYLOAD_SO, "rb") as f:
        want = build_ids(f.read())[0][1]
    with open(MEMATTACH, "rb") as f:
        data = bytearray(f.read())
    hits = [off for off, bid in build_ids(data) if bid == want]
    if len(hits) != 1:
        return None
    data[hits[0] + byte] ^= 0xff
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o755)
    return path


def run(exe, *args):
    p = subprocess.run([exe] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def payload_images(pid):
    """{memfd name: number of executable mappings} of the payloads"""
    out = {}
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            m = re.search(r"/memfd:(memattach-payload\S*)", line)
            if m:
                out.setdefault(m.group(1), 0)
                if line.split()[1][2] == "x":
                    out[m.group(1)] += 1
    return out


def tracked_cache(cap, label):
    """The capture's live blocks at growth.py's leaking line are its 64 KiB
    entries, one block each, beside the few of its dict"""
    doc = report_json(cap)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                        "targets", TARGET)
    line = line_of(os.path.realpath(path), "fill_cache", "cache_fill")
    row = [r for r in doc["rows"]
           if r["file"].endswith("/" + TARGET) and r["line"] == line]
    live = row[0]["live"] if row else {"count": 0, "bytes": 0}
    # the entries, and the few blocks of the dict growing as they come
    entries = live["bytes"] // ENTRY
    ok = entries >= 10 and 0 <= live["count"] - entries <= 5
    check(ok, "%s: the capture holds the leaking line's 64 KiB entries" %
          label, live if row else [r["line"] for r in doc["rows"]][:20])


def attach(exe, pid, cap, label, reused):
    """Attach with exe; the GOT slots its session hooked (None if not
    said)"""
    rc, out, err = run(exe, "-v", "attach", "-q", "-d", "0.5", "-o", cap,
                       pid)
    check(rc == 0, "%s: attach" % label, err)
    if rc != 0:
        return None
    check(("payload reused" in err) == reused,
          "%s: %s" % (label, "its own payload found again" if reused
                      else "its own payload loaded"), err)
    tracked_cache(cap, label)
    m = re.search(r"GOT hooks after the thaw: (\d+) slots", err)
    return int(m.group(1)) if m else None


def flip_loaded_build_id(pid, base):
    """Change the build ID of the payload loaded at base, in the target"""
    with open("/proc/%d/mem" % pid, "r+b", buffering=0) as mem:
        mem.seek(base)
        page = mem.read(4096)
        for off, _ in build_ids(page):
            mem.seek(base + off)
            mem.write(bytes([page[off] ^ 0xff]))
            return True
    return False


def main():
    if not os.path.exists(PAYLOAD_SO):
        skip("other builds", "no payload library at %s" % PAYLOAD_SO)
        finish()
    tmp = "/tmp/ma-other-build.%d" % os.getpid()
    os.makedirs(tmp, exist_ok=True)
    b = other_build(os.path.join(tmp, "memattach-b"), 0)
    c = other_build(os.path.join(tmp, "memattach-c"), 1)
    if not check(b and c, "two other builds made from this one"):
        finish()
    cap = os.path.join(tmp, "cap")
    with Target("/usr/bin/python3", TARGET) as t:
        slots = attach(MEMATTACH, t.pid, cap, "this build", False)
        attach(b, t.pid, cap, "build B, beside it", False)
        imgs = payload_images(t.pid)
        check(len(imgs) == 2 and all(v == 1 for v in imgs.values()),
              "two payload images in the target, each with its code", imgs)
        for exe, who in ((MEMATTACH, "this build"), (b, "build B")):
            rc, out, err = run(exe, "info", t.pid)
            check(rc == 0 and re.search(
                r"payload: +loaded at 0x[0-9a-f]+, 1 session\(s\), dormant"
                r".*; the payload of another memattach build at "
                r"0x[0-9a-f]+, dormant", out),
                "%s: info shows its own payload and the other's" % who,
                out + err)

        # B tracking: this build refuses, names B, and leaves it be
        pb = subprocess.Popen([b, "attach", "-q", "-d", "30", "-o",
                               cap + ".b", str(t.pid)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
        end = time.time() + 20
        while time.time() < end and "tracking now" not in \
                run(MEMATTACH, "info", t.pid)[1]:
            time.sleep(0.1)
        rc, out, err = run(MEMATTACH, "attach", "-q", "-d", "0.5", "-o", cap,
                           t.pid)
        check(rc == 9 and "already tracked by another memattach build "
              "(PID %d" % pb.pid in err,
              "while B tracks, this build's attach is refused (exit 9), "
              "naming B", "%d %s" % (rc, err))
        rc, out, err = run(MEMATTACH, "detach", t.pid)
        check(rc == 9 and "tracked by another memattach build" in err,
              "while B tracks, this build's detach leaves it be, exit 9",
              "%d %s" % (rc, err))
        rc, out, err = run(MEMATTACH, "heap", "-q", t.pid)
        check(rc == 0 and "Census of" in out,
              "while B tracks, this build's heap census runs", err)
        check(pb.poll() is None, "B still tracks")
        # B killed: its payload stops by itself, and this build attaches
        pb.send_signal(signal.SIGKILL)
        pb.communicate()
        again = attach(MEMATTACH, t.pid, cap,
                       "this build, after B was killed", True)
        # B's payload has GOT slots of its own (mmap, munmap, dlopen):
        # this build's session leaves them to B, as it leaves its own
        check(slots and again == slots,
              "this build hooks as many GOT slots with B's payload "
              "loaded as without", "%s then %s" % (slots, again))

        attach(c, t.pid, cap, "build C, a third", False)
        imgs = payload_images(t.pid)
        check(len(imgs) == 3 and all(v == 1 for v in imgs.values()),
              "three payload images in the target", imgs)
        attach(b, t.pid, cap, "build B again", True)
        rc, out, err = run(MEMATTACH, "detach", t.pid)
        check(rc == 0 and "2 payload(s) of another memattach build "
              "loaded, dormant" in out,
              "this build's detach: the others' payloads are dormant",
              out + err)
        cache = [ln for ln in t.drain() if ln.startswith("cache")]
        check(t.alive() and len(cache) > 0,
              "the target runs on, printing", cache[-1:])

        # this build's payload, its build ID changed in the target: not
        # used, and not mistaken for another build's
        if os.geteuid() != 0:
            skip("a changed payload", "needs root to write the target's "
                 "memory")
        else:
            base = None
            with open("/proc/%d/maps" % t.pid) as f:
                for line in f:
                    if re.search(r"memattach-payload\S* ", line) and \
                            line.split()[2] == "00000000":
                        rc, out, err = run(MEMATTACH, "info", t.pid)
                        if "%x" % int(line.split("-")[0], 16) in \
                                out.split(";")[0]:
                            base = int(line.split("-")[0], 16)
                            break
            check(base is not None and flip_loaded_build_id(t.pid, base),
                  "this build's payload's build ID changed in the target")
            for cmd in (["attach", "-q", "-d", "0.3", "-o", cap],
                        ["heap", "-q"]):
                rc, out, err = run(MEMATTACH, *(cmd + [t.pid]))
                check(rc != 0 and "build ID differs" in err,
                      "%s refuses a payload under its name with another "
                      "build ID" % cmd[0], err)
        check(t.alive(), "the target runs on at the end")
    left_rings(b, cap)
    for f in os.listdir(tmp):
        os.unlink(os.path.join(tmp, f))
    os.rmdir(tmp)
    finish()


def left_rings(b, cap):
    """A ring left mapped in the process (tests/targets/left_ring.py) with
    another build's payload loaded: a session's that ended does not refuse
    this build's attach (it refused every attach for the life of the
    process, as another build's session); one that says it tracks, with
    no memattach to hold it, is refused after a wait, exit 9"""
    for state, ok in ((4, True), (2, False)):
        with Target("/usr/bin/python3", "left_ring.py", state) as t:
            run(b, "attach", "-q", "-d", "0.2", "-o", cap, t.pid)
            rc, out, err = run(MEMATTACH, "attach", "-q", "-d", "0.3", "-o",
                               cap, t.pid)
            if ok:
                check(rc == 0, "a ring left by a session that ended: this "
                      "build attaches beside B's payload", err)
            else:
                check(rc == 9 and "already being tracked by another "
                      "memattach build" in err,
                      "a ring whose header says it tracks: refused, exit 9",
                      "%d %s" % (rc, err))
            check(t.alive(), "left ring %d: the target runs on" % state)


if __name__ == "__main__":
    main()
