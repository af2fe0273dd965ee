"""Python workers started through a shell (tests/e2e/test_pools.py,
via_shell): `sh -c "...; exec python3 ..."` (the shell becomes the worker:
the same PID, another image) and `sh -c "...; python3 ...; true"` (the
shell's child).  memattach --children skipped the shells as not Python and
never looked at them again.  With `late EXE LIB` after the go file, a
third worker is a Python that starts slowly: tests/targets/no_interp.c
(EXE) loads libpython (LIB) and makes its interpreter 1.5 s later, then
runs this file as a worker; memattach --children, finding it before its
interpreter existed, skipped it for good.

As the master: prints 'READY', then each worker prints 'WORKER pid n' once
it runs; on a line from stdin the master creates argv[1]'s go file, each
worker allocates its n blocks of 64 KiB at one line and prints 'DID pid n';
on the next line everything ends.  As a worker: argv = [go file, n].
"""
import os
import subprocess
import sys
import time

BLOCK = 64 * 1024


def say(line):
    # one write(2) a line: the workers share the master's stdout, and
    # print() on 3.9 writes the text and its newline in two calls, between
    # which the other worker's line can come
    os.write(1, (line + "\n").encode())


def worker(go, n):
    say("WORKER %d %d" % (os.getpid(), n))
    while not os.path.exists(go):
        time.sleep(0.02)
    held = [bytearray(BLOCK) for _ in range(n)]  # MARK: shell_worker
    say("DID %d %d" % (os.getpid(), n))
    while os.path.exists(go):
        time.sleep(0.05)
    return held


def main():
    if len(sys.argv) == 3:
        worker(sys.argv[1], int(sys.argv[2]))
        return
    go = sys.argv[1]
    me = os.path.abspath(__file__)
    cmd = "%s %s %s" % (sys.executable, me, go)
    shells = [subprocess.Popen("sleep 0.5; exec %s 12" % cmd, shell=True),
              subprocess.Popen("sleep 0.5; %s 20; true" % cmd, shell=True)]
    if sys.argv[2:3] == ["late"]:
        code = ("import runpy, sys; sys.argv = [%r, %r, '28']; "
                "runpy.run_path(%r, run_name='__main__')" % (me, go, me))
        shells.append(subprocess.Popen([sys.argv[3], sys.argv[4], "late",
                                        "1.5", code]))
    print("READY", flush=True)
    sys.stdin.readline()
    open(go, "w").close()
    sys.stdin.readline()
    os.unlink(go)
    for s in shells:
        s.wait()


if __name__ == "__main__":
    main()
