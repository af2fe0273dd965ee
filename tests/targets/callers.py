"""Allocations whose stacks differ only below the innermost frame: one
helper called from two call sites of the same loop, and two helpers taking
turns at a third call site (so the same frame address runs one function,
then the other).  Each helper makes a short-lived string and keeps another,
at known lines.  Strings only: a tuple or a list could come from CPython's
free lists, reusing a block another line allocated (docs/limits.md).

Waits for 'go' on stdin (the test attaches first), runs, prints 'DONE',
and waits for 'quit'.
"""
import sys

from gate import gated

N = 20000
KEEP = []


def make_a(i):
    t = "a%d" % i  # MARK: a_temp
    KEEP.append("ka%d" % i)  # MARK: a_kept
    return t


def make_b(i):
    t = "b%d" % i  # MARK: b_temp
    KEEP.append("kb%d" % i)  # MARK: b_kept
    return t


def loop():
    helpers = (make_a, make_b)
    for i in range(N):
        make_a(i)  # MARK: site1
        make_a(i)  # MARK: site2
        helpers[i & 1](i)  # MARK: site3


if __name__ == "__main__":
    sys.exit(gated(loop))
