"""Target: the main thread holds the GIL inside a C call that never returns
soon (catastrophic regex backtracking), as a hung notebook does; a second
thread waits for the GIL.  Prints 'READY <main tid> <waiter tid>'."""
import ctypes
import os
import re
import sys
import threading
import time

# Optionally a pure C thread that allocates without the GIL (the tests that
# check allocations are recorded while the GIL is held set this)
if os.environ.get("MA_NATIVE_ALLOC_LIB"):
    ctypes.CDLL(os.environ["MA_NATIVE_ALLOC_LIB"]).ma_native_alloc_start()


def waiter():
    while True:
        time.sleep(0.001)  # MARK: waiter_sleep


def hog():
    print("READY", threading.get_native_id(), T.native_id, flush=True)
    return re.match(r"(a+)+$", "a" * 64 + "b")  # MARK: regex


# What `memattach heap` must find while the GIL is held (test_gil.py)
BALLAST = bytearray(16 << 20)

T = threading.Thread(target=waiter, name="waiter", daemon=True)
T.start()
time.sleep(0.1)
hog()  # MARK: module_calls_hog
sys.exit(0)
