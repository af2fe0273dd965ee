"""Allocations of known sizes at known lines, in two threads.

Waits for a line 'go' on stdin (the test attaches first), then each of two
threads allocates bytearrays of 1, 7 and 100 MiB and a list of N plain
objects, keeps them, and the main thread prints 'DONE' when both are done.
Then it waits for 'quit'.
"""
import sys
import threading

from gate import gated

MiB = 1024 * 1024
N = 50000
KEEP = []


def alloc_1():
    return bytearray(1 * MiB)  # MARK: alloc_1


def alloc_7():
    return bytearray(7 * MiB)  # MARK: alloc_7


def alloc_100():
    return bytearray(100 * MiB)  # MARK: alloc_100


def make_objects():
    return [object() for _ in range(N)]  # MARK: objects


def worker():
    KEEP.append((alloc_1(), alloc_7(), alloc_100(), make_objects()))


def work():
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    sys.exit(gated(work))
