"""A process whose payload another memattach build loaded (memattach
upgraded while the process ran on): attach and heap refuse it, and say
what works.

A payload is never unloaded (docs/architecture.md), and `memattach
detach` leaves it loaded too, so the process keeps the other build's
payload for its life.  The messages used to say "detach it with that
memattach", which changes nothing: the next attach was refused the same.
The other build is made here by flipping one byte of the build ID note of
the payload loaded in the target (through /proc/PID/mem, as root); the
note is what memattach compares with its own build's."""
import os
import re

from ma_test import Target, check, finish, memattach, skip

NT_GNU_BUILD_ID = 3


def payload_base(pid):
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            if "memattach-payload" in line:
                return int(line.split("-")[0], 16)
    return None


def flip_build_id(pid, base):
    """Flip the first byte of the build ID in the payload's first page"""
    with open("/proc/%d/mem" % pid, "r+b", buffering=0) as mem:
        mem.seek(base)
        page = mem.read(4096)
        for i in range(0, 4096 - 36, 4):
            namesz, descsz, typ = (int.from_bytes(page[i + k:i + k + 4],
                                                  "little")
                                   for k in (0, 4, 8))
            if namesz == 4 and typ == NT_GNU_BUILD_ID and \
                    8 <= descsz <= 32 and page[i + 12:i + 16] == b"GNU\0":
                mem.seek(base + i + 16)
                mem.write(bytes([page[i + 16] ^ 0xff]))
                return True
    return False


def main():
    if os.geteuid() != 0:
        skip("other build", "needs root to write the target's memory")
        finish()
    exe = "/usr/bin/python3"
    with Target(exe, "stacks_target.py") as t:
        rc, out, err = memattach("attach", "-q", "-d", "0.3", "-o",
                                 "/tmp/ma-other-build.cap", str(t.pid))
        check(rc == 0, "first attach loads the payload", err)
        base = payload_base(t.pid)
        check(base is not None and flip_build_id(t.pid, base),
              "the payload's build ID changed in the target")
        for cmd in (["attach", "-q", "-d", "0.3", "-o",
                     "/tmp/ma-other-build.cap"], ["heap", "-q"]):
            rc, out, err = memattach(*(cmd + [str(t.pid)]))
            check(rc != 0 and "another memattach build" in err,
                  "%s refuses a payload of another build" % cmd[0], err)
            check("restart the process" in err and
                  not re.search(r"detach it with that memattach", err),
                  "%s says what works: that build, or a restart" % cmd[0],
                  err)
        rc, out, err = memattach("detach", str(t.pid))
        check(rc != 0 and "stays loaded" in err,
              "detach says the payload stays loaded all the same", err)
        check(t.alive(), "the target runs on")
    try:
        os.unlink("/tmp/ma-other-build.cap")
    except OSError:
        pass
    finish()


if __name__ == "__main__":
    main()
