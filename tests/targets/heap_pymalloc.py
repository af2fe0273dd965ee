"""Objects whose bytes lie in known allocators, for the census' split of
the objects' bytes between pymalloc's blocks and the rest
(tests/e2e/test_heap.py, pymalloc_split).  pymalloc serves requests of up
to 512 bytes; an object's separately allocated table or buffer goes by its
own size:
  - 5 000 bytearray(1000): each object in a pymalloc block, its 1 001-byte
    buffer in malloc's
  - a list of 200 000 items: the list in pymalloc, its item table in malloc
  - a dict of 100 000 ints: its keys table in malloc
  - 40 000 lists of 10 items: object and 80-byte item table, both pymalloc
  - 40 000 instances of a class of three attributes (3.13 keeps their
    values inline, in the object's block), and the ints in them and in the
    dict (above 256: not the interpreter's static ones)
Prints, as one JSON line, the bytes that must be in malloc's blocks and
those that must be in pymalloc's, by sys.getsizeof, then waits."""
import json
import sys
import time


class Point:
    def __init__(self, i):
        self.x = i
        self.y = i
        self.z = i


arrays = [bytearray(1000) for _ in range(5000)]
big = [None] * 200000
table = {i: i for i in range(100000)}
small = [[0] * 10 for _ in range(40000)]
points = [Point(i) for i in range(40000)]

EMPTY_LIST, EMPTY_DICT = sys.getsizeof([]), sys.getsizeof({})
in_malloc = (sum(a.__alloc__() for a in arrays) +
             sys.getsizeof(big) - EMPTY_LIST +
             sys.getsizeof(table) - EMPTY_DICT)
in_pymalloc = (sum(sys.getsizeof(a) - a.__alloc__() for a in arrays) +
               EMPTY_LIST + EMPTY_DICT +
               sum(sys.getsizeof(s) for s in small) +
               sum(sys.getsizeof(p) for p in points) +
               sum(sys.getsizeof(i) for i in table if i > 256) +
               sum(sys.getsizeof(p.x) for p in points if p.x > 256))
print(json.dumps({"in_malloc": in_malloc, "in_pymalloc": in_pymalloc}),
      flush=True)
time.sleep(3600)
