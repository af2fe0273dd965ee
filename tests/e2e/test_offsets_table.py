#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The built-in offsets table against the DWARF of every interpreter here.

For Debian's /usr/bin/python3.11 (when python3.11-dbg's DWARF is installed)
and every pyenv CPython 3.8-3.13 present, `memattach offsets --check FILE`
must exit 0: the table entry for the file's minor version equals what its
DWARF says.  Prints one line per interpreter and 'N passed, N failed'.
Exit 0 when all passed, 1 when any failed, 77 (skip) when none was found.
Env: MEMATTACH = the memattach binary; PYENV_ROOT (default ~/.pyenv).
"""
import glob
import os
import subprocess
import sys

SKIP = 77


def build_id(path):
    """The GNU build ID of an ELF file as hex, or None (reads the notes)."""
    import struct
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return None
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3a)
    for i in range(shnum):
        base = shoff + i * shentsize
        sh_type, = struct.unpack_from("<I", data, base + 4)
        if sh_type != 7:  # SHT_NOTE
            continue
        off, size = struct.unpack_from("<QQ", data, base + 0x18)
        p = off
        while p + 12 <= off + size:
            namesz, descsz, ntype = struct.unpack_from("<III", data, p)
            name = data[p + 12:p + 12 + namesz]
            desc_at = p + 12 + ((namesz + 3) & ~3)
            if ntype == 3 and name.rstrip(b"\0") == b"GNU":
                return data[desc_at:desc_at + descsz].hex()
            p = desc_at + ((descsz + 3) & ~3)
    return None


def interpreters():
    """(label, file) pairs to check, and notes about what was left out."""
    out, notes = [], []
    exe = "/usr/bin/python3.11"
    if os.path.exists(exe):
        bid = build_id(exe)
        dbg = bid and "/usr/lib/debug/.build-id/%s/%s.debug" % (bid[:2],
                                                                bid[2:])
        if dbg and os.path.exists(dbg):
            out.append(("debian 3.11", exe))
        else:
            notes.append("%s: no DWARF installed (python3.11-dbg)" % exe)
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    for minor in range(8, 14):
        libs = sorted(glob.glob(os.path.join(
            root, "versions", "3.%d.*" % minor, "lib",
            "libpython3.%d.so.1.0" % minor)))
        if not libs:
            notes.append("pyenv 3.%d: not installed" % minor)
        for lib in libs:
            ver = lib.split(os.sep)[-3]
            out.append(("pyenv %s" % ver, lib))
    return out, notes


def main():
    ma = os.environ.get("MEMATTACH")
    if not ma or not os.access(ma, os.X_OK):
        print("MEMATTACH is not set to the memattach binary")
        return 1
    todo, notes = interpreters()
    for n in notes:
        print("skip: %s" % n)
    if not todo:
        print("no interpreter to check")
        return SKIP
    passed = failed = 0
    for label, path in todo:
        p = subprocess.run([ma, "offsets", "--check", path],
                           capture_output=True, text=True, timeout=120)
        if p.returncode == 0:
            passed += 1
            print("PASS %-14s %s" % (label, path))
        else:
            failed += 1
            print("FAIL %-14s %s (exit %d)" % (label, path, p.returncode))
            for line in (p.stdout + p.stderr).strip().splitlines():
                print("     " + line)
    # Negative control: --check must be able to fail.  3.9's DWARF read as
    # if it were 3.8 has the same members at other offsets.
    lib39 = [p for l, p in todo if l.startswith("pyenv 3.9.")]
    if lib39:
        p = subprocess.run([ma, "offsets", "--check", "--version", "3.8.0",
                            lib39[0]], capture_output=True, text=True,
                           timeout=120)
        if p.returncode == 1 and "differ" in p.stdout:
            print("PASS control: 3.9 checked as 3.8 is reported different")
            passed += 1
        else:
            print("FAIL control: 3.9 checked as 3.8 gave exit %d:\n%s%s" %
                  (p.returncode, p.stdout, p.stderr))
            failed += 1
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
