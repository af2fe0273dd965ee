"""Short-lived and kept small objects at known lines (the payload counts
short-lived small blocks instead of recording each one).

Waits for 'go' on stdin (the test attaches first), then makes N strings
that die at once (each replaced by the next) and keeps M strings in a
list, prints 'DONE', and waits for 'quit'.
"""
import sys

from gate import gated

N = 200000
M = 30000
KEEP = []


def temporaries():
    x = None
    for i in range(N):
        x = "t%d-%d" % (i, i)  # MARK: temp
    return x


def kept():
    KEEP.append(["k%d-%d" % (i, i) for i in range(M)])  # MARK: kept


def work():
    temporaries()
    kept()


if __name__ == "__main__":
    sys.exit(gated(work))
