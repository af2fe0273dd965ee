"""Generators, coroutines and closure cells kept, each made at a known call
site.  From 3.11 the frame of the generator (or of the function owning the
cell) exists while the object is made, still incomplete (it runs
RETURN_GENERATOR or MAKE_CELL, before its first RESUME): CPython and
tracemalloc charge such an object to the caller's line, and so must
memattach, not to the `def` line of the generator function.

And objects of a class made at a call site CPython has specialized (a
loop): on 3.13 the call pushes a shim frame (_Py_InitCleanup, named
`__init__` in a file `__init__`) under `__init__`; CPython hides it (it is
incomplete: EXIT_INIT_CHECK, before its _co_firsttraceable), memattach
showed it as a frame `__init__ (__init__)` in the stack of every
allocation `__init__` makes.

Waits for 'go' on stdin (the test attaches first), runs, prints 'DONE',
and waits for 'quit'.
"""
import sys

from gate import gated

N = 20000
GENS = [None] * N
COROS = [None] * N
CELLS = [None] * N
KEPT = [None] * N


def gen(i):  # MARK: gen_def
    yield i


async def coro(i):  # MARK: coro_def
    return i


def closure(i):  # MARK: closure_def
    def inner():
        return i
    return inner


class Kept:
    def __init__(self, i):
        self.data = bytearray(100)  # MARK: init_alloc


def work():
    for i in range(N):
        GENS[i] = gen(i)  # MARK: gen_site
    for i in range(N):
        COROS[i] = coro(i)  # MARK: coro_site
    for i in range(N):
        CELLS[i] = closure(i)  # MARK: closure_site
    for i in range(N):
        KEPT[i] = Kept(i)  # MARK: init_site


if __name__ == "__main__":
    sys.exit(gated(work))
