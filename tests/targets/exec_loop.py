"""A program that execs itself again every 10 ms, for ever (argv[1]: its
generation): an attach or a census lands in the middle of an exec now and
then (tests/e2e/test_hazards.py target_exits)."""
import os
import sys
import time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 0
keep = [bytearray(100) for _ in range(1000)]
if n == 0:
    print("READY", flush=True)
time.sleep(0.01)
os.execv(sys.executable, [sys.executable, __file__, str(n + 1)])
