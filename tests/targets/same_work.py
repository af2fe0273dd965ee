"""The same work at every 'go', so that two tracking modes can be compared
on one process (test_modes.py).

Prints READY; then for each line 'go' on stdin runs the same deterministic
work and prints DONE; ends at 'quit'.  The work mixes lifetimes: strings
that die at once, lists that live 1,000 iterations, a list grown by
appends (reallocs), buffers of 300,000 bytes (malloc through the RAW
domain) and dicts kept until the next round replaces them.
"""
import sys

KEEP = []


def short():
    x = None
    for i in range(30000):
        x = "s%d-%d" % (i, i)  # MARK: short
    return x


def medium():
    ring = [None] * 1000
    for i in range(30000):
        ring[i % 1000] = [i, "m"]  # MARK: medium
    return ring


def grow():
    lst = []
    for i in range(20000):
        lst.append(i * 1000)  # MARK: grow
    return len(lst)


def big():
    bufs = [bytearray(300000) for _ in range(20)]  # MARK: big
    return len(bufs)


def kept():
    KEEP[:] = [{"k": i, "v": "v%d" % i} for i in range(20000)]  # MARK: kept


def work():
    short()
    medium()
    grow()
    big()
    kept()


def main():
    print("READY", flush=True)
    while True:
        cmd = sys.stdin.readline().strip()
        if cmd != "go":
            return 0
        work()
        print("DONE", flush=True)


if __name__ == "__main__":
    sys.exit(main())
