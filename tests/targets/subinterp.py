"""Target for `memattach stacks`: a thread that runs a subinterpreter.

The thread ('runner') calls _xxsubinterpreters.run_string (3.8-3.12;
_interpreters on 3.13), whose code loops in work(): the thread has a
state in each interpreter, both naming the same kernel thread.  Prints
'READY <main tid>', then 'RUNNER <runner tid>' just before the call; the
main thread sleeps until killed.

With argument 'idle': a subinterpreter that ran code and runs none now (on
3.13 it has no thread state, and it heads the interpreters' list); prints
'READY <main tid>' and the main thread sleeps until killed.
"""
import sys
import threading
import time

try:
    import _interpreters as si
except ImportError:
    import _xxsubinterpreters as si

CODE = """
import time
def work():
    while True:
        time.sleep(0.01)  # MARK: work
work()
"""


def runner():
    iid = si.create()
    print("RUNNER", threading.get_native_id(), flush=True)
    si.run_string(iid, CODE)  # MARK: run_string


if sys.argv[1:] == ["idle"]:
    iid = si.create()
    si.run_string(iid, "x = 1")
    print("READY", threading.get_native_id(), flush=True)
    while True:
        time.sleep(1)  # MARK: idle

print("READY", threading.get_native_id(), flush=True)
threading.Thread(target=runner, name="runner", daemon=True).start()
while True:
    time.sleep(1)
