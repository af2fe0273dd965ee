"""Target: a process with a named thread forks; the child's main thread is
the Thread that forked ('MainThread'), whose Thread._native_id CPython
leaves at the parent's thread ID.  The child allocates in its main thread
(small bytearrays, some kept) and prints 'READY <child pid>'; the parent
waits for it.  A line on the child's stdin ends it (exit 0)."""
import os
import sys
import threading
import time

stop = threading.Event()
threading.Thread(target=stop.wait, name="parent-worker", daemon=True).start()
pid = os.fork()
if pid:
    os.waitpid(pid, 0)
    sys.exit(0)


def reader():
    sys.stdin.readline()
    stop.set()


# a raw thread: the child's _active must keep just the main Thread
import _thread  # noqa: E402
_thread.start_new_thread(reader, ())
print("READY", os.getpid(), threading.current_thread().name, flush=True)
kept = []
while not stop.wait(0.005):
    kept.append(bytearray(1000))
    if len(kept) > 500:
        kept.clear()
print("GOT", flush=True)
