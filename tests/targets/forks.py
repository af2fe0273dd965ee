"""Target that forks while tracked: the child allocates and exits 0, the
parent keeps allocating.  Prints 'child N exited S' for each child."""
import os
import sys
import time

KEEP = []


def in_child():
    junk = [bytearray(4096) for _ in range(1000)]  # MARK: child_alloc
    os._exit(0 if len(junk) == 1000 else 1)


def parent_alloc():
    KEEP.append(bytearray(64 * 1024))  # MARK: parent_alloc


print("READY", flush=True)
sys.stdin.readline()
for i in range(3):
    pid = os.fork()
    if pid == 0:
        in_child()
    _, status = os.waitpid(pid, 0)
    print("child", pid, "exited", os.waitstatus_to_exitcode(status)
          if hasattr(os, "waitstatus_to_exitcode") else status >> 8,
          flush=True)
    for _ in range(10):
        parent_alloc()
    time.sleep(0.05)
print("DONE", flush=True)
sys.stdin.readline()
