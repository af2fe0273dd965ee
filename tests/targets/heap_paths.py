"""Paths the heap census must name right (tests/e2e/test_heap.py, paths):
each bytearray below has a size of its own, by which the test finds its row,
and the path that must lead to it.  Prints, as one JSON line, the paths
this interpreter must show, by bytearray length, then waits:
  - list and tuple items: CPython's traverse visits them from the last to
    the first and skips NULL ones (a list made by PyList_New and not
    filled, through ctypes when it imports)
  - a dict in an instance's attribute, plain (3.11+ keep the attribute as
    a value, no __dict__) and in __slots__; a dict in the real __dict__ of
    a tuple subclass' instance and of a function
  - dict keys of other types than str: int (shown as a number), bool
    (True), bytes, tuple, float, an int too large for 60 bits (shown as ?)
  - control characters in a str key, a global's name, a class' name and
    a module's name (escaped: \\x1b, \\u009b)
  - structseqs, of static types (sys.flags, always there) and of heap types
    with hidden fields (os.stat_result): none unreadable
  - an object both a global of __main__ and a local of a sleeping thread's
    frame hold: named by the global (the local used to win: it is at depth
    0, the global two steps down)
"""
import json
import os
import sys
import threading
import time
import types

MINOR = sys.version_info[1]
expect = {}


def plant(length, path):
    expect[length] = path
    return bytearray(length)


x = "shared"
lst = [None, None, x, x, 5, 5,
       plant(1_500_000, "__main__.lst -> list[6] -> bytearray")]
tup = (None, x, None, x,
       plant(1_480_000, "__main__.tup -> tuple[4] -> bytearray"))

try:
    import ctypes

    api = ctypes.pythonapi
    api.PyList_New.restype = ctypes.py_object
    api.PyList_New.argtypes = [ctypes.c_ssize_t]
    api.PyList_SetItem.argtypes = [ctypes.py_object, ctypes.c_ssize_t,
                                   ctypes.py_object]
    holes = api.PyList_New(4)  # [NULL, NULL, item, NULL]
    item = plant(1_460_000, "__main__.holes -> list[2] -> bytearray")
    api.Py_IncRef(ctypes.py_object(item))  # PyList_SetItem steals it
    api.PyList_SetItem(holes, 2, item)
    del item
except (ImportError, AttributeError, OSError):
    pass


class Registry:
    def __init__(self):
        self.name = "reg"
        self.table = {}


reg = Registry()
reg.table["big"] = plant(
    1_440_000, "__main__.reg -> Registry%s -> dict['big'] -> bytearray"
    % (".table" if MINOR <= 10 else ""))


class Slotted:
    __slots__ = ("table",)


slotted = Slotted()
slotted.table = {"big": plant(
    1_420_000, "__main__.slotted -> Slotted -> dict['big'] -> bytearray")}


class Rec(tuple):
    pass


rec = Rec((1, 2))
rec.data = {"rk": plant(
    1_400_000, "__main__.rec -> Rec.data -> dict['rk'] -> bytearray")}


def func():
    pass


func.cache = {"fk": plant(
    1_380_000, "__main__.func -> function.cache -> dict['fk'] -> bytearray")}

keyed = {
    12345678: plant(1_360_000, "__main__.keyed -> dict[12345678] -> "
                    "bytearray"),
    -7: plant(1_340_000, "__main__.keyed -> dict[-7] -> bytearray"),
    b"secret-bytes": plant(1_320_000, "__main__.keyed -> dict[?] -> "
                           "bytearray"),
    (1, 2): plant(1_300_000, "__main__.keyed -> dict[?] -> bytearray"),
    2.5: plant(1_280_000, "__main__.keyed -> dict[?] -> bytearray"),
    2 ** 70: plant(1_260_000, "__main__.keyed -> dict[?] -> bytearray"),
    True: plant(1_250_000, "__main__.keyed -> dict[True] -> bytearray"),
    "\x1b[2J\x07evil\x9b": plant(
        1_240_000,
        "__main__.keyed -> dict['\\x1b[2J\\x07evil\\u009b'] -> bytearray"),
    "\u00e9-key": plant(1_220_000,
                        "__main__.keyed -> dict['\u00e9-key'] -> bytearray"),
    # quotes escaped as Python writes them; a long key cut with "..."
    # (it was cut at 95 bytes with no closing quote, and 'a'b' unescaped)
    "it's a \\ key": plant(
        1_210_000, "__main__.keyed -> dict['it\\'s a \\\\ key'] -> "
        "bytearray"),
    "\u00e9" * 150: plant(
        1_205_000, "__main__.keyed -> dict['%s...'] -> bytearray"
        % ("\u00e9" * 38)),  # 77 bytes at most, whole characters
}
globals()["g\x1b]0;t\x07"] = plant(
    1_200_000, "__main__.g\\x1b]0;t\\x07 -> bytearray")
Evil = type("Evil\x1b[31m", (), {})
ev = Evil()
ev.blob = plant(1_180_000, "__main__.ev -> Evil\\x1b[31m%s -> bytearray"
                % (".blob" if MINOR <= 10 else ""))
mod = types.ModuleType("mod\x1b[2Jx")
mod.payload = plant(1_160_000, "mod\\x1b[2Jx.payload -> bytearray")
sys.modules[mod.__name__] = mod
del mod

stat = os.stat("/")
both = plant(1_140_000, "__main__.both -> bytearray")


def keeper(obj):
    kept = obj  # a local: the census' root for it, and obj another
    started.set()
    time.sleep(3600)
    return kept


started = threading.Event()
threading.Thread(target=keeper, args=(both,), daemon=True).start()
started.wait()

print(json.dumps(expect), flush=True)
time.sleep(3600)
