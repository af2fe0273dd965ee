"""A pre-fork master (tests/e2e/test_pools.py): os.fork workers, each
allocating a known amount at its own line once told to.

argv: DIR N.  The master forks N workers, prints 'READY pid1 ... pidN', then
reads commands on stdin: 'fork' forks one more worker (prints 'FORKED
pid'), 'spawn' runs /bin/sleep through subprocess (prints 'SPAWNED rc'),
'quit' waits for the workers and exits 1 if one did not exit 0.  Worker k waits for the file DIR/go-k, allocates
(k + 1) * 16 blocks of 64 KiB at its own line, prints 'HELD k pid', then
holds them until DIR/end-k exists and exits 0 (worker 0 exits at once;
worker 3 execs the interpreter again, which exits 0 after DIR/end-3).
"""
import os
import subprocess
import sys
import time

BLOCK = 64 * 1024
held = []


# the master's PID, inherited by the workers: a worker whose master is
# gone (the test ended, or failed, before telling it) exits instead of
# waiting for ever
MASTER = os.getpid()


def wait_file(path):
    while not os.path.exists(path):
        if os.getppid() != MASTER:
            os._exit(0)
        time.sleep(0.02)


def alloc_w0(n):
    for _ in range(n):
        held.append(bytearray(BLOCK))  # MARK: w0


def alloc_w1(n):
    for _ in range(n):
        held.append(bytearray(BLOCK))  # MARK: w1


def alloc_w2(n):
    for _ in range(n):
        held.append(bytearray(BLOCK))  # MARK: w2


def alloc_w3(n):
    for _ in range(n):
        held.append(bytearray(BLOCK))  # MARK: w3


def worker(d, k):
    wait_file(os.path.join(d, "go-%d" % k))
    (alloc_w0, alloc_w1, alloc_w2, alloc_w3)[k]((k + 1) * 16)
    # one write: the workers share the pipe
    os.write(1, b"HELD %d %d\n" % (k, os.getpid()))
    if k == 3:
        end = os.path.join(d, "end-3")
        os.execv(sys.executable, [
            sys.executable, "-c",
            "import os, time\n"
            "while not os.path.exists(%r) and os.getppid() == %d:\n"
            "    time.sleep(0.02)" % (end, MASTER)])
    if k:
        wait_file(os.path.join(d, "end-%d" % k))
    os._exit(0)


def spawn(d, k):
    pid = os.fork()
    if pid == 0:
        try:
            worker(d, k)
        finally:
            os._exit(1)
    return pid


def main():
    d, n = sys.argv[1], int(sys.argv[2])
    pids = [spawn(d, k) for k in range(n)]
    print("READY " + " ".join(str(p) for p in pids), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "fork":
            pids.append(spawn(d, len(pids)))
            print("FORKED %d" % pids[-1], flush=True)
        elif cmd == "spawn":
            rc = subprocess.run(["/bin/sleep", "0.2"]).returncode
            print("SPAWNED %d" % rc, flush=True)
        elif cmd == "quit":
            break
    codes = [os.waitpid(p, 0)[1] for p in pids]
    sys.exit(1 if any(codes) else 0)


main()
