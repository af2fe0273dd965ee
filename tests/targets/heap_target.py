"""A known heap for `memattach heap` (tests/e2e/test_heap.py).

Plants, then prints its own ground truth (computed in-process with
gc.get_objects(), gc.get_referents() and sys.getsizeof()) as one JSON line,
then READY, and waits:
  - a large bytearray in a module global          __main__.big
  - a list of N (1 M) small dicts held by a class __main__.Holder.items
  - a list of 20,000 bytes of 1,000 in an instance's attribute
                                                  __main__.owner (Owner.rows)
  - a linked list of 20,000 nodes, each with 100 bytes  __main__.chain_head
  - 60 array.array and 60 collections.deque of many sizes (their buffers
    are in sys.getsizeof)                          __main__.arrays, queues
  - 100 k strings in a local of a sleeping frame  keeper(): names
  - a reference cycle of big objects, no root     (garbage; gc disabled)
  - a numpy array in a module global, when numpy imports  __main__.arr
  - a thread blocked in read() on stdin: it prints what it gets
  - a thread that reaps children (waitpid(-1, WNOHANG), every millisecond)
    and a SIGCHLD handler: the census' copy must never show to either
    ('CHILD ...' would say it did)
Arguments: N (default 1000000).  HEAP_TARGET_BIG_MIB: the bytearray's size
(default 48).
"""
import array
import collections
import gc
import json
import os
import signal
import sys
import threading
import time

gc.disable()
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000

big = bytearray(int(os.environ.get("HEAP_TARGET_BIG_MIB", "48")) << 20)


class Holder:
    items = [{"k": i, "v": "value-%d" % i} for i in range(N)]


class Owner:
    def __init__(self):
        self.rows = [bytes(1000) for _ in range(20000)]


owner = Owner()


class Link:
    __slots__ = ("nxt", "pad")


chain_head = None
for _ in range(20000):
    link = Link()
    link.nxt, link.pad = chain_head, bytes(100)
    chain_head = link
del link
arrays = [array.array("dqH"[k % 3], range(k * 997)) for k in range(60)]
queues = []
for k in range(60):
    q = collections.deque(range(k * 131))
    for _ in range(k * 7):  # a left index other than the first block's
        q.popleft()
    queues.append(q)
del q


class Node:
    def __init__(self):
        self.other = None
        self.payload = bytes(8 * 1024 * 1024)


a = Node()
b = Node()
a.other = b
b.other = a
del a, b

try:
    import numpy
    arr = numpy.ones(4 * 1024 * 1024)  # 32 MiB of float64
except ImportError:
    arr = None


def truth():
    """What sys.getsizeof says of every object gc can see, by type."""
    # gc.get_objects() does not list the permanent generation (gc.freeze()),
    # where 3.12 puts its startup objects; the census does: back to the
    # collector's lists with them, so that both count the same
    gc.unfreeze()
    seen = {}
    todo = list(gc.get_objects())
    for o in todo:
        seen[id(o)] = o
    i = 0
    while i < len(todo):
        o = todo[i]
        i += 1
        refs = gc.get_referents(o)
        if isinstance(o, dict):  # as the census: every dict, subclasses too
            refs = refs + list(o.keys())
        for r in refs:
            if id(r) not in seen:
                seen[id(r)] = r
                todo.append(r)
    by = {}
    for o in seen.values():
        n = type(o).__name__
        c = by.setdefault(n, [0, 0])
        c[0] += 1
        c[1] += sys.getsizeof(o)
    del todo, seen
    # One str leaves this function, not a dict of lists that the census
    # would count and the truth would not
    return json.dumps({"by_type": by, "numpy": arr is not None})


def reaper():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid:
                print("CHILD reaped by wait: %d" % pid, flush=True)
        except ChildProcessError:
            pass
        time.sleep(0.001)


def on_sigchld(sig, frame):
    print("CHILD SIGCHLD", flush=True)


def reader():
    line = sys.stdin.readline()  # MARK: read
    print("GOT " + line.strip(), flush=True)


def keeper():
    names = ["name-%d" % i for i in range(100000)]
    t = threading.Thread(target=reader, name="reader")
    t.start()
    signal.signal(signal.SIGCHLD, on_sigchld)
    threading.Thread(target=reaper, name="reaper", daemon=True).start()
    size = sum(sys.getsizeof(s) for s in names) + sys.getsizeof(names)
    line = truth()
    print(line[:-1] + ', "names": %d}' % size, flush=True)
    del line
    print("READY", flush=True)
    t.join()
    time.sleep(3600)  # MARK: sleep
    return names


keeper()
