"""Target for the HTML report's thread filter, time ranges and folding.

Before READY it starts two threads named 'alpha-worker' and 'beta-worker',
both as threading.Thread names and as kernel names (comm): a capture
records the one and the other.  Then, on stdin:

'GO1': phase 1.  alpha-worker keeps 60 blocks of 40 KiB (alpha_alloc),
beta-worker 60 of 24 KiB (beta_alloc), the main thread a recursion of
DEPTH frames of rec() keeps 20 blocks of 100 KiB at its deepest frame
(rec_alloc), imports phases_mod (import_alloc, through importlib), and
calls 40 generated functions gen0..gen39 (file gen_lines.py), each keeping
2 + i blocks of 1000 + 100 * i bytes at its own line.  Prints
'P1 <wall time at the start> <at the end>' and what it kept:
'KEPT <name> <bytes>'.
'GO2': phase 2: the main thread keeps 100 blocks of 32 KiB (phase2_alloc);
'P2 <start> <end>'.
A line 'EXIT' ends it.
"""
import ctypes
import sys
import threading
import time

DEPTH = 45
KEEP = []
go = {"alpha": threading.Event(), "beta": threading.Event()}
done = {"alpha": threading.Event(), "beta": threading.Event()}


def set_name(name):
    libc = ctypes.CDLL(None)
    libc.prctl(15, ctypes.c_char_p(name.encode()), 0, 0, 0)  # PR_SET_NAME


def alpha_work():
    for _ in range(60):
        KEEP.append(bytes(40 * 1024))  # MARK: alpha_alloc


def beta_work():
    for _ in range(60):
        KEEP.append(bytearray(24 * 1024))  # MARK: beta_alloc


def worker(name, work, ready):
    set_name(name + "-worker")
    ready.set()
    go[name].wait()
    work()
    done[name].set()
    go[name].clear()
    time.sleep(3600)


def rec(n):
    if n > 1:
        return rec(n - 1)  # MARK: rec_call
    for _ in range(20):
        KEEP.append(bytes(100 * 1024))  # MARK: rec_alloc


GEN = "\n".join(
    "def gen%d(keep):\n    for _ in range(%d):\n"
    "        keep.append(bytearray(%d))\n" % (i, 2 + i, 1000 + 100 * i)
    for i in range(40))


def phase2():
    for _ in range(100):
        KEEP.append(bytes(32 * 1024))  # MARK: phase2_alloc


def main():
    for name, work in (("alpha", alpha_work), ("beta", beta_work)):
        ready = threading.Event()
        threading.Thread(target=worker, args=(name, work, ready),
                         name=name + "-worker", daemon=True).start()
        ready.wait()
    ns = {}
    code = compile(GEN, "gen_lines.py", "exec")
    exec(code, ns)
    print("READY", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "GO1":
            t0 = time.time()
            go["alpha"].set()
            done["alpha"].wait()
            go["beta"].set()
            done["beta"].wait()
            rec(DEPTH)
            sys.path.insert(0, __file__.rsplit("/", 1)[0])
            __import__("phases_mod")
            for i in range(40):
                ns["gen%d" % i](KEEP)
            print("P1 %.6f %.6f" % (t0, time.time()), flush=True)
            print("KEPT alpha %d" % (60 * 40 * 1024), flush=True)
            print("KEPT beta %d" % (60 * 24 * 1024), flush=True)
            print("KEPT rec %d" % (20 * 100 * 1024), flush=True)
            print("KEPT phase2 %d" % (100 * 32 * 1024), flush=True)
        elif cmd == "GO2":
            t0 = time.time()
            phase2()
            print("P2 %.6f %.6f" % (t0, time.time()), flush=True)
        elif cmd == "EXIT":
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
