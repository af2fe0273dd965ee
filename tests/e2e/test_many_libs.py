"""A process with about a hundred shared libraries and 15 threads (the shape
of a notebook kernel with pandas loaded, issue 12): memattach attaches,
twice (the second time the payload is reused), and the GOT slots of every
module are patched by the payload's watchdog after the thaw, not inside
the freeze (docs/payload.md, "GOT patching"): `memattach -v` says how many
slots in how many modules the watchdog patched, which is 0 when ma_start
patches them itself.  The freeze each attach took is printed, not checked
(the suite makes no timing assertions; docs/performance.md has figures)."""
import os
import re
import subprocess
import tempfile

from ma_test import MEMATTACH, Target, check, finish, interpreters

WANT = 100


def attach(pid, cap):
    r = subprocess.run([MEMATTACH, "-v", "attach", "--quiet", "-d", "0.3",
                        "-o", cap, str(pid)], capture_output=True, text=True,
                       timeout=120)
    got = re.search(r"GOT hooks after the thaw: (\d+) slots in (\d+) "
                    r"modules in ([\d.]+) ms(.*)", r.stderr)
    frozen = re.search(r"target stopped ([\d.]+) ms", r.stderr)
    return r, got, frozen


def main():
    tmp = tempfile.mkdtemp(prefix="memattach-libs-")
    for label, exe in interpreters(minors=[12]):
        with Target(exe, "many_libs.py", WANT, timeout=120) as t:
            _, libs, threads = t.ready_line.split()
            if int(libs) < WANT:
                skip_reason = "only %s shared libraries could be loaded" % libs
                print("skip %s: %s" % (label, skip_reason))
                continue
            for n in (1, 2):
                r, got, frozen = attach(t.pid, os.path.join(tmp, "l.cap"))
                what = "%s: attach %d to a process with %s shared " \
                    "libraries and %s threads" % (label, n, libs, threads)
                if not check(r.returncode == 0 and got, what, r.stderr):
                    continue
                slots, mods = int(got.group(1)), int(got.group(2))
                # every module but ld.so, the vdso and the payload; the
                # executable is one more
                check(slots > 0 and mods >= int(libs) - 2 and
                      not got.group(4),
                      "%s: attach %d: the watchdog patched %d GOT slots in "
                      "%d modules after the thaw (in %s ms; target stopped "
                      "%s ms)" % (label, n, slots, mods, got.group(3),
                                  frozen.group(1) if frozen else "?"),
                      r.stderr)
            check(t.alive(), "%s: target still running" % label)
    finish()


if __name__ == "__main__":
    main()
