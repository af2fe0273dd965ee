"""A process shaped like a notebook kernel with pandas loaded (issue 12):
about a hundred shared libraries and 15 threads.

It loads shared libraries already on the machine, nothing downloaded: first
the interpreter's own extension modules (lib-dynload, when they are files),
then system libraries from the loader's directories with ctypes, in sorted
order, until `/proc/self/maps` shows at least N distinct shared objects
(N = argv[1], default 100).  Libraries that hook or replace the allocator
or change how the process runs (sanitizers, malloc debuggers, preload
tools) are never loaded.  Then 13 threads wait on an event and a 14th
thread churns small objects, printing "it N" every 100 ms.  The first line
is "READY <libraries> <threads>".
"""
import ctypes
import glob
import importlib
import os
import sys
import sysconfig
import threading
import time

SKIP = ("asan", "tsan", "lsan", "ubsan", "hwasan", "SegFault", "memusage",
        "pcprofile", "jemalloc", "tcmalloc", "mimalloc", "profiler",
        "libc.so", "libc_malloc", "fakeroot", "eatmydata", "gtk", "gdk",
        "libunwind", "libpython", "libmemattach", "libvulkan", "libGL",
        "libEGL", "libnss_", "libsystemd", "libudev", "valgrind",
        "libtcl", "libtk", "libX", "libwayland", "libgs", "libreadline",
        "libncurses", "libtinfo", "libgomp", "libatomic", "libasound")


def shared_objects():
    seen = set()
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and ".so" in parts[5]:
                seen.add(parts[5])
    return len(seen)


def load(want):
    dyn = sysconfig.get_config_var("DESTSHARED") or ""
    for path in sorted(glob.glob(os.path.join(dyn, "*.so"))):
        if shared_objects() >= want:
            return
        name = os.path.basename(path).split(".")[0]
        if name in ("_tkinter", "readline", "_curses", "_curses_panel",
                    "xxlimited", "xxlimited_35", "_testcapi",
                    "_testinternalcapi", "_testmultiphase",
                    "_testimportmultiple", "_testsinglephase",
                    "_xxtestfuzz", "_ctypes_test", "_testclinic",
                    "_testbuffer"):
            continue
        try:
            importlib.import_module(name)
        except Exception:
            pass
    for d in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"):
        for path in sorted(glob.glob(os.path.join(d, "lib*.so.*"))):
            if shared_objects() >= want:
                return
            if any(s in path for s in SKIP) or not os.path.isfile(path):
                continue
            try:
                ctypes.CDLL(path)
            except OSError:
                pass


def churn(counts):
    n = 0
    while True:
        d = {"a": [n, n + 1], "b": str(n)}
        t = (d, [d] * 3)
        n += 1
        if n % 1000 == 0:
            counts[0] = n
        del d, t


def main():
    want = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    load(want)
    stop = threading.Event()
    for _ in range(13):
        threading.Thread(target=stop.wait, daemon=True).start()
    counts = [0]
    threading.Thread(target=churn, args=(counts,), daemon=True).start()
    print("READY", shared_objects(), threading.active_count(), flush=True)
    while True:
        time.sleep(0.1)
        print("it", counts[0], flush=True)


if __name__ == "__main__":
    sys.exit(main())
