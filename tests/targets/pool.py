"""A multiprocessing.Pool target (tests/e2e/test_pools.py): 2 fork workers
started before the attach, each task allocating a known amount at one line.

Prints 'READY pid1 pid2' (the workers); on a line from stdin, maps hold()
over TASKS (one task at a time) and prints 'DID pid n' for each task (the
worker that ran it, the blocks it allocated), then 'DONE'; on the next line
it ends the pool and exits.
"""
import multiprocessing
import os
import sys

BLOCK = 64 * 1024
TASKS = [8, 16, 24, 32]
held = []


def hold(n):
    for _ in range(n):
        held.append(bytearray(BLOCK))  # MARK: pool
    return os.getpid(), n


def main():
    pool = multiprocessing.get_context("fork").Pool(2)
    print("READY " + " ".join(str(p.pid) for p in pool._pool), flush=True)
    sys.stdin.readline()
    for pid, n in pool.map(hold, TASKS, chunksize=1):
        print("DID %d %d" % (pid, n), flush=True)
    print("DONE", flush=True)
    sys.stdin.readline()
    pool.terminate()
    pool.join()


if __name__ == "__main__":
    main()
