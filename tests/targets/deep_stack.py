"""Target for `memattach stacks` on a stack deeper than the reader's cap of
4,096 frames: recurse 5,000 deep, print READY, sleep in the innermost."""
import sys
import time

sys.setrecursionlimit(20000)


def down(n):
    if n == 0:
        print("READY", flush=True)
        time.sleep(120)  # MARK: innermost
        return
    down(n - 1)


down(5000)
