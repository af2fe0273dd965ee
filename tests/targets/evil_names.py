"""A program whose names carry terminal control sequences (a function's
co_name, a thread's name): memattach must print them harmless
(tests/e2e/test_stacks.py evil_names).  Prints READY, then allocates in
the renamed function until killed."""
import threading
import time

EVIL = "\x1b[2J\x1b]0;PWNED\x07evil\u009b"
keep = []


def work():
    keep.append(bytearray(50000))  # MARK: evil
    if len(keep) > 100:
        del keep[:50]
    time.sleep(0.02)


code = work.__code__
if hasattr(code, "co_qualname"):
    work.__code__ = code.replace(co_name=EVIL, co_qualname=EVIL)
else:
    work.__code__ = code.replace(co_name=EVIL)
threading.current_thread().name = "t\x1b[31mred"
try:  # the kernel's name too (comm, 15 bytes), as prctl sets it
    import ctypes
    ctypes.CDLL(None).prctl(15, b"c\x1b]0;PW\x07N", 0, 0, 0)
except (OSError, AttributeError):
    pass
print("READY", flush=True)
while True:
    work()
