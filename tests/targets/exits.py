"""Target that allocates at a known line and exits by itself after the
line 'go' arrives on stdin: 20 x 1 MiB bytearrays, then exit 0.  With
argument 'exec', it execs the interpreter again instead, which prints
'EXECED' and exits 0 at the next line on stdin."""
import os
import sys
import time

KEEP = []


def grow():
    for _ in range(20):
        KEEP.append(bytearray(1024 * 1024))  # MARK: grow
        time.sleep(0.02)


print("READY", flush=True)
sys.stdin.readline()
grow()
time.sleep(0.2)
if sys.argv[1:] == ["exec"]:
    os.execv(sys.executable, [sys.executable, "-c",
                              "import sys; print('EXECED', flush=True); "
                              "sys.stdin.readline()"])
sys.exit(0)
