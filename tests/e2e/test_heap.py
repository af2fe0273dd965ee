#!/usr/bin/env python3
"""memattach heap: the census of a known heap (tests/targets/heap_target.py)
against the target's own ground truth, on Debian's python3 and each pyenv
3.8-3.13: counts and bytes per builtin type within 1 %, each planted object
found with its root path and retained size, the cycle seen as garbage, the
thread blocked in read() still served, no copy left behind, the target
unharmed; a thread asleep in a partly done write left running (hazard 11);
the objects' bytes split between pymalloc's blocks and malloc's by where
each part lives; paths that name list and tuple items, attributes and
dict keys right, with the target's control characters escaped; and a heap
of more than 1 GiB on Debian's python3."""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ma_test import (Target, check, children, finish,  # noqa
                     interpreters, memattach, skip, TARGETS, marks,
                     wait_in_syscall)

MIB = 1 << 20
BUILTINS = ("dict", "list", "str", "bytes", "bytearray", "tuple", "int")
SRC = os.path.join(TARGETS, "heap_target.py")


def within(a, b, frac):
    return abs(a - b) <= frac * max(abs(b), 1)


def find(rows, pred):
    return next((r for r in rows if pred(r)), None)


def run(label, exe):
    t = Target(exe, "heap_target.py", ready="{", timeout=120)
    try:
        truth = json.loads(t.ready_line)
        t.readline()  # READY
        rc, out, err = memattach("heap", "-f", "json", "-q", "--top", "30",
                                 t.pid, timeout=300)
        if not check(rc == 0, "%s: heap exits 0" % label, err):
            return
        doc = json.loads(out)
        by = {r["type"]: r for r in doc["by_type"]}
        for name in BUILTINS:
            want = truth["by_type"].get(name)
            got = by.get(name)
            if not want or want[0] < 50:
                continue
            check(got is not None and within(got["count"], want[0], 0.01)
                  and within(got["bytes"], want[1], 0.01),
                  "%s: %s: count and bytes within 1%% of the target's own"
                  % (label, name),
                  "memattach %s, target %s" % (
                      got and (got["count"], got["bytes"]), want))
        # array.array and collections.deque: their buffers too, as their
        # __sizeof__ (the census counted their basic size alone: a 3.2 MB
        # array was 80 bytes)
        for name, cname in (("array", "array.array"),
                            ("deque", "collections.deque")):
            want, got = truth["by_type"].get(name), by.get(cname)
            check(want and got and got["count"] == want[0] and
                  within(got["bytes"], want[1], 0.01),
                  "%s: %s: count and bytes within 1%% of the target's own"
                  % (label, cname), "memattach %s, target %s" % (
                      got and (got["count"], got["bytes"]), want))
        rows = doc["largest"] + doc["retainers"]
        r = find(rows, lambda r: r["type"] == "bytearray")
        check(r is not None and r["path"] == "__main__.big -> bytearray"
              and r["size"] >= 48 * MIB and r["retained"] >= 48 * MIB,
              "%s: the bytearray: __main__.big, 48 MiB" % label, r)
        r = find(doc["retainers"], lambda r: r["path"].startswith(
            "__main__.Holder.items"))
        n_dicts = truth["by_type"]["dict"][0]
        check(r is not None and r["type"] == "list"
              and r["retained"] > 1000000 * 64,
              "%s: the list of dicts: __main__.Holder.items retains its "
              "dicts (%d dicts in the process)" % (label, n_dicts), r)
        # one chain, one row: the instance holds little but its list, so
        # the list's row (whose path names the instance) stands for both
        r = find(doc["retainers"], lambda r: r["path"].startswith(
            "__main__.owner") and r["type"] == "list")
        check(r is not None and r["retained"] >= 20000 * 1000 and not any(
            x["type"] in ("Owner", "__main__.Owner")
            for x in doc["retainers"]),
              "%s: the instance and its list: one row, the list's (%s)"
              % (label, r and r["path"]),
              [(x["type"], x["path"]) for x in doc["retainers"]])
        # a linked list: the retained sizes computed all the same (every
        # node refers to its class: quadratic for the first algorithm,
        # partial, exit 8, before the second), and one row, its head
        heads = [x for x in doc["retainers"]
                 if x["path"].startswith("__main__.chain_head")]
        check(len(heads) == 1 and heads[0]["path"] ==
              "__main__.chain_head -> Link" and
              heads[0]["retained"] >= 20000 * 100,
              "%s: a linked list of 20,000 nodes: one row, its head, "
              "retaining them all" % label,
              [(x["path"][:60], x["retained"]) for x in heads])
        r = find(doc["retainers"], lambda r: r["path"] == "names -> list")
        check(r is not None and "keeper()" in r["root"]
              and ":%d," % marks(SRC)["read"] not in r["root"]
              and r["retained"] >= truth["names"] * 0.99,
              "%s: the local: names of keeper(), retains its strings"
              % label, r)
        check(doc["garbage_bytes"] >= 16 * MIB and any(
            r["garbage"] and r["retained"] >= 8 * MIB
            for r in doc["retainers"]),
              "%s: the unrooted cycle is garbage (%d bytes)"
              % (label, doc["garbage_bytes"]))
        if truth["numpy"]:
            r = find(rows, lambda r: r["type"] == "numpy.ndarray")
            check(r is not None and r["path"] ==
                  "__main__.arr -> numpy.ndarray" and r["size"] >= 32 * MIB,
                  "%s: the numpy array: __main__.arr, 32 MiB" % label, r)
        else:
            skip("%s: numpy array" % label, "numpy does not import here")
        check(not children(t.pid), "%s: no copy left behind" % label,
              children(t.pid))
        t.proc.stdin.write(b"after the census\n")
        t.proc.stdin.flush()
        lines = [t.readline(20)]
        while lines[-1].startswith("CHILD"):
            lines.append(t.readline(20))
        check(lines[-1] == "GOT after the census",
              "%s: the thread blocked in read() gets its line" % label,
              lines)
        check(not [x for x in lines if x.startswith("CHILD")],
              "%s: the target's wait() and SIGCHLD never saw the copy"
              % label, lines)
        check(t.alive(), "%s: the target runs on" % label)
    finally:
        t.kill()


def pymalloc_split(label, exe, env=None):
    """The objects' bytes split between pymalloc's blocks and the rest by
    where each part lives (tests/targets/heap_pymalloc.py): a bytearray's
    buffer, a large list's or dict's table count as malloc's, not as
    pymalloc's because the object's own block is; so the pymalloc line
    never exceeds the blocks in use in pymalloc's pools.  The old binary
    counted all of an object whose header was in a pymalloc block: 8.48
    MiB "in pymalloc blocks" against 1.75 MiB of blocks in use."""
    t = Target(exe, "heap_pymalloc.py", ready="{", env=env, timeout=120)
    try:
        want = json.loads(t.ready_line)
        rc, out, err = memattach("heap", "-f", "json", "-q", t.pid,
                                 timeout=300)
        if not check(rc == 0, "%s: heap of known allocations exits 0"
                     % label, err):
            return
        doc = json.loads(out)
        pym, used = doc["pymalloc_bytes"], doc["pymalloc"]["used_bytes"]
        rest = doc["bytes"] - pym
        figures = "in pymalloc blocks %d, of blocks in use %d; elsewhere " \
            "%d; the target: %s" % (pym, used, rest, want)
        check(0 < pym <= used,
              "%s: the objects' bytes in pymalloc blocks (%.1f MiB) are no "
              "more than pymalloc's blocks in use (%.1f MiB)"
              % (label, pym / MIB, used / MIB), figures)
        check(rest >= want["in_malloc"],
              "%s: buffers and large tables (%.1f MiB) count outside "
              "pymalloc (%.1f MiB)" % (label, want["in_malloc"] / MIB,
                                       rest / MIB), figures)
        check(pym >= want["in_pymalloc"],
              "%s: small objects and their small tables (%.1f MiB) count "
              "in pymalloc (%.1f MiB)" % (label, want["in_pymalloc"] / MIB,
                                          pym / MIB), figures)
    finally:
        t.kill()


def debug_hooks():
    """Under CPython's debug hooks (PYTHONMALLOC=pymalloc_debug, -X dev,
    and every --with-pydebug build such as Debian's python3.11d) each
    pymalloc block starts 16 bytes before the object.  The census took
    every object there for malloc's: 0 B in pymalloc blocks, 0 pools."""
    env = dict(os.environ, PYTHONMALLOC="pymalloc_debug")
    if os.path.exists("/usr/bin/python3"):
        pymalloc_split("debian-python3 PYTHONMALLOC=pymalloc_debug",
                       "/usr/bin/python3", env)
    for label, exe in interpreters(minors=(8, 13), announce=False):
        if label.startswith("pyenv-"):
            pymalloc_split(label + " PYTHONMALLOC=pymalloc_debug", exe, env)
    if os.path.exists("/usr/bin/python3.11d"):
        pymalloc_split("debian-python3.11d", "/usr/bin/python3.11d")
        debug_build_info()


def debug_build_info():
    """info says a --with-pydebug build is one (JSON debug_build), and a
    release build is not: it looked exactly like Debian's python3"""
    for exe, want in (("/usr/bin/python3.11d", True),
                      ("/usr/bin/python3", False)):
        t = Target(exe, "heap_grow.py")
        try:
            rc, out, err = memattach("info", "--json", t.pid)
            doc = json.loads(out) if rc == 0 else {}
            rc2, text, _ = memattach("info", t.pid)
            check(doc.get("debug_build") is want and
                  ("a debug build (Py_DEBUG" in text) == want,
                  "info on %s: debug build %s" % (exe, want), (doc, err))
        finally:
            t.kill()


def paths(label, exe):
    """Paths named right (tests/targets/heap_paths.py), from one census
    printed as text and kept as a snapshot: list and tuple items by their
    position (the old binary took the edge's place among the referents,
    which CPython's traverse visits last item first: list[0] for item 6),
    a NULL item not miscounting them; a dict in an instance's attribute
    or slot not taken for its __dict__ (Registry.big for
    Registry.table['big']); dict keys that are not str not read as str
    (garbage), ints as numbers; control characters from the target
    (keys, names of globals, classes and modules) escaped in the text; and
    sys.flags and the other structseqs read, not counted as unreadable
    (every census on 3.12, now and then on 3.10, with the old binary)"""
    t = Target(exe, "heap_paths.py", ready="{", timeout=60)
    snap = "/tmp/memattach-test-heap-paths-%d.snap" % os.getpid()
    try:
        expect = {int(k): v for k, v in json.loads(t.ready_line).items()}
        rc, out, err = memattach("heap", "-q", "--top", "40", "-o", snap,
                                 t.pid, timeout=300)
        if not check(rc == 0, "%s: heap of known paths exits 0" % label,
                     err):
            return
        with open(snap) as f:
            doc = json.load(f)
        rows = [r for r in doc["largest"] if r["type"] == "bytearray"]
        for length, path in sorted(expect.items(), reverse=True):
            r = find(rows, lambda r: length <= r["size"] < length + 4096)
            check(r is not None and r["path"] == path,
                  "%s: %s" % (label, path.encode("unicode_escape").decode()),
                  r and r["path"])
        bad = sorted(set(re.findall("[\x00-\x09\x0b-\x1f\x7f-\x9f]",
                                    out)))
        check(not bad, "%s: no control character from the target in the "
              "text" % label, bad)
        check(doc["notes"]["unreadable"] == 0 and
              "could not be read" not in out,
              "%s: every object read (sys.flags and the other "
              "structseqs)" % label, doc["notes"])
    finally:
        t.kill()
        if os.path.exists(snap):
            os.unlink(snap)


def big_heap(label, exe):
    """A heap of more than 1 GiB: the census and the clone work on it"""
    env = dict(os.environ, HEAP_TARGET_BIG_MIB="1200")
    t = Target(exe, "heap_target.py", "2000", ready="{", env=env, timeout=120)
    try:
        t.readline()  # READY
        rc, out, err = memattach("heap", "-f", "json", "-q", t.pid,
                                 timeout=300)
        doc = json.loads(out) if rc == 0 else {}
        r = find(doc.get("largest", []), lambda r: r["type"] == "bytearray")
        check(rc == 0 and doc["rss"]["rss"] >= 1200 * MIB and r and
              r["path"] == "__main__.big -> bytearray" and
              r["size"] >= 1200 * MIB and not children(t.pid),
              "%s: a heap of 1.2 GiB: __main__.big found, no copy left"
              % label, err or r)
        check(t.alive(), "%s: the target runs on" % label)
    finally:
        t.kill()


def long_list(label, exe):
    """A list of 8 million items: its referents are streamed in pieces,
    so the copy's private memory (charged to the target's cgroup) stays
    small; it held them all, 64 MB more (69 MiB against 8 MiB measured)"""
    code = ("import time\nd = [None] * 8_000_000\n"
            "print('READY', flush=True)\ntime.sleep(600)\n")
    p = subprocess.Popen([exe, "-c", code], stdout=subprocess.PIPE)
    try:
        p.stdout.readline()
        rc, out, err = memattach("-v", "heap", "-q", "-f", "json", p.pid,
                                 timeout=300)
        m = re.search(r"copy private ([\d.]+) (KiB|MiB|GiB)", err)
        mib = float(m.group(1)) * {"KiB": 1 / 1024, "MiB": 1,
                                   "GiB": 1024}[m.group(2)] if m else None
        doc = json.loads(out) if rc == 0 else {}
        lst = find(doc.get("by_type", []), lambda r: r["type"] == "list")
        check(rc == 0 and mib is not None and mib < 32 and lst and
              lst["bytes"] >= 64_000_000,
              "%s: a list of 8 million items: counted, the copy's private "
              "memory under 32 MiB (%s MiB)" % (label, mib), err[-300:])
    finally:
        p.kill()
        p.wait()

def numpy_views(label, exe):
    """A numpy array has no traverse: a view's base (the array or buffer
    that owns its data) was never found, so `v = np.ones(N)[::2]` retained
    nothing and its base's bytes were in "the rest: C allocations"; the
    same for a reshape and for np.frombuffer's buffer (found only as held
    from C)"""
    code = ("import time, numpy as np\n"
            "v = np.ones(4_000_000)[::2]\n"
            "r = np.arange(2_000_000.0).reshape(1000, 2000)\n"
            "fb = np.frombuffer(bytearray(24_000_000), dtype=np.uint8)\n"
            "import sys\n"
            "small = [np.zeros((2, 3)) for i in range(20000)]\n"
            "small += [x[0] for x in small[:10000]]\n"
            "print('READY', sum(map(sys.getsizeof, small + [v, r, fb,"
            " v.base, r.base])),"
            " flush=True)\ntime.sleep(600)\n")
    p = subprocess.Popen([exe, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    try:
        ready = p.stdout.readline().split()
        if not ready or ready[0] != b"READY":
            skip("%s: numpy views" % label, "numpy does not import here")
            return
        rc, out, err = memattach("heap", "-f", "json", "-q", "--top", "10",
                                 p.pid, timeout=300)
        doc = json.loads(out) if rc == 0 else {}
        # sizes as numpy's __sizeof__: its dimensions and strides too
        # (16 bytes a dimension; left out before, 3 % here), numpy's own
        # arrays (a few dozen) beside the program's
        want = int(ready[1])
        t = find(doc.get("by_type", []),
                 lambda t: t["type"] == "numpy.ndarray")
        check(t is not None and want <= t["bytes"] <= want * 1.005,
              "%s: numpy arrays sized as sys.getsizeof says (%d bytes)" %
              (label, want), t)
        rows = doc.get("retainers", []) + doc.get("largest", [])
        for path, size in (("__main__.v -> numpy.ndarray", 32_000_000),
                           ("__main__.r -> numpy.ndarray", 16_000_000)):
            r = find(rows, lambda r: r["path"] == path)
            check(rc == 0 and r is not None and r["retained"] >= size,
                  "%s: a view retains its base's data: %s, %d bytes"
                  % (label, path, size), err or (r or [
                      (x["path"], x["retained"]) for x in rows]))
        r = find(rows, lambda r: r["type"] == "bytearray")
        check(r is not None and not r["held_by_c"] and
              r["path"].startswith("__main__.fb -> numpy.ndarray") and
              r["size"] >= 24_000_000,
              "%s: np.frombuffer's bytearray: __main__.fb -> ..." % label,
              r and r["path"])
    finally:
        p.kill()
        p.wait()


def many_rows(label, exe):
    """--top 3000 over items of one list of a million: each row's
    position was found by reading the whole list from the copy again
    (4 MB a row on average: 6,000 rows, 24 GB, a minute or more); the
    items are read once now, and each position is still right"""
    code = ("import random, time\nrandom.seed(7)\n"
            "d = [None] * 1_000_000\n"
            "for k in random.sample(range(1_000_000), 3000):\n"
            "    d[k] = bytes(1000 + k % 100_000)\n"
            "print('READY', flush=True)\ntime.sleep(600)\n")
    p = subprocess.Popen([exe, "-c", code], stdout=subprocess.PIPE)
    try:
        p.stdout.readline()
        rc, out, err = memattach("-v", "heap", "-q", "-f", "json", "--top",
                                 "3000", p.pid, timeout=600)
        m = re.search(r"paths ([\d.]+) s", err)
        doc = json.loads(out) if rc == 0 else {}
        rows = [r for r in doc.get("largest", []) + doc.get("retainers", [])
                if r["type"] == "bytes" and
                r["path"].startswith("__main__.d -> list[")]
        wrong = [r["path"] for r in rows
                 if 1000 + int(r["path"].split("[")[1].split("]")[0])
                 % 100_000 != r["size"] - 33]
        check(rc == 0 and len(rows) >= 5000 and not wrong,
              "%s: --top 3000 of a list's items: each at its position "
              "(%d rows)" % (label, len(rows)), err[-300:] or wrong[:5])
        check(m is not None and float(m.group(1)) < 3,
              "%s: their paths in under 3 s (%s s)"
              % (label, m and m.group(1)), err[-300:])
    finally:
        p.kill()
        p.wait()


def blocked_write(label, exe):
    """Hazard 11: the census leaves a thread asleep in a write that has
    sent part of its data running (a stop would make os.write return the
    64 KiB the pipe took), and still names it as the thread whose frame
    holds a local (3.8-3.10 match threads by pthread_self(), read for it
    from glibc's struct since it is not stopped)"""
    with Target(exe, "blocked_write.py") as t:
        tmain = int(t.ready_line.split()[1])
        check(wait_in_syscall(t.pid, tmain, 1),
              "%s: writer asleep in write()" % label)
        rc, out, err = memattach("heap", "-f", "json", "-q", t.pid)
        doc = json.loads(out) if rc == 0 else {}
        r = find(doc.get("largest", []), lambda r: r["type"] == "bytearray")
        root = r["root"] if r else ""
        check(rc == 0 and root.startswith("local 'hold' of main()") and
              re.search(r"thread %d\b" % tmain, root),
              "%s: the census of a process asleep in a write: the writer's "
              "local, in thread %d" % (label, tmain), err or root)
        t.proc.stdin.write(b"go\n")
        t.proc.stdin.flush()
        got = t.readline(timeout=20)
        check(got == "WROTE %d READ %d" % (1 << 20, 1 << 20),
              "%s: the write was not cut short" % label, got)
        check(t.proc.wait(timeout=20) == 0, "%s: and it exits 0" % label)


def main():
    for label, exe in interpreters():
        run(label, exe)
        pymalloc_split(label, exe)
        paths(label, exe)
        blocked_write(label, exe)
    debug_hooks()
    if os.path.exists("/usr/bin/python3"):
        big_heap("debian-python3", "/usr/bin/python3")
        long_list("debian-python3", "/usr/bin/python3")
        numpy_views("debian-python3", "/usr/bin/python3")
        many_rows("debian-python3", "/usr/bin/python3")
    finish()


if __name__ == "__main__":
    main()
