#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Seeds for tests/fuzz/fuzz_heap.c: heap census streams as the copy writes
them (common/ma_heap.h), with the copy's memory the reader looks into (type
names, root names) laid out for the built-in offsets of 3.11 (table index
3).  usage: gen_heap_seeds.py OUTDIR"""
import os
import struct
import sys

BASE = 0x7F3A12340000
T_OBJ, T_ROOT, T_POOLS, T_END = 1, 2, 3, 4
R_MODULE, R_LOCAL = 1, 2
O_GC, O_PYMALLOC, O_TYPE = 1, 4, 16


def obj(addr, typ, size, edges, flags=O_GC, refcnt=1):
    return struct.pack("<IIQQQQQII", T_OBJ, len(edges), addr, typ, size, 0,
                       refcnt, flags, 0) + b"".join(
                           struct.pack("<Q", e) for e in edges)


def root(kind, o, name, depth=0):
    return struct.pack("<IIQQQQqII", T_ROOT, kind, o, name, 0,
                       0x7F0000009000 if kind == R_LOCAL else 0, 77, depth, 0)


def pools():
    return struct.pack("<IIQQQ", T_POOLS, 16384, 3, 1, 4096) + \
        b"".join(struct.pack("<Q", i) for i in range(128))


def end(n, e):
    return struct.pack("<II6Q", T_END, 0, n, e, 0, 0, 1000, 1 << 20)


def memory():
    m = bytearray(0x1000)
    # two types: "dict" at +0x100, "list" at +0x180, names at +0x200
    struct.pack_into("<Q", m, 0x100 + 24, BASE + 0x200)
    struct.pack_into("<Q", m, 0x180 + 24, BASE + 0x210)
    m[0x200:0x205] = b"dict\0"
    m[0x210:0x215] = b"list\0"
    # an ASCII str "__main__" at +0x300 (3.11: length at 16, state at 32,
    # data at 48; kind 1 << 2, compact 1 << 5, ascii 1 << 6)
    struct.pack_into("<QQI", m, 0x300 + 16, 8, 0, 1 << 2 | 1 << 5 | 1 << 6)
    m[0x300 + 48:0x300 + 57] = b"__main__\0"
    struct.pack_into("<QQI", m, 0x380 + 16, 5, 0, 1 << 2 | 1 << 5 | 1 << 6)
    m[0x380 + 48:0x380 + 54] = b"cache\0"
    return bytes(m)


def stream():
    d, l = BASE + 0x100, BASE + 0x180
    a = [0x55550000 + 0x40 * i for i in range(8)]
    s = b""
    s += obj(a[0], d, 232, [a[1], a[2]])           # a module's dict
    s += obj(a[1], l, 88, [a[3], a[4], a[5]])       # a list
    s += obj(a[2], d, 232, [a[1], a[6]])            # shares the list
    s += obj(a[3], l, 56, [a[4]], flags=O_GC | O_PYMALLOC)
    s += obj(a[4], l, 56, [a[3]], flags=O_GC | O_PYMALLOC)  # a cycle
    s += obj(a[5], d, 64, [0xdead0000])             # dangling edge
    s += obj(a[6], l, 1 << 20, [])
    s += obj(a[5], d, 64, [])                       # found twice
    s += root(R_MODULE, a[0], BASE + 0x300)
    s += root(R_LOCAL, a[2], BASE + 0x380, depth=1)
    s += pools()
    s += end(7, 10)
    return s


def seed(cut, s, mem):
    return bytes([cut, 3]) + struct.pack("<H", len(s)) + s + mem


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    s, mem = stream(), memory()
    seeds = {"whole.seed": seed(0, s, mem), "cut-40.seed": seed(5, s, mem),
             "cut-8.seed": seed(1, s, mem),
             # roots and no object: found by fuzz/heap (a NULL index)
             "roots-only.seed": seed(0, root(R_MODULE, 0x1234, BASE + 0x300)
                                     + end(0, 0), mem)}
    for name, blob in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(blob)


if __name__ == "__main__":
    main()
