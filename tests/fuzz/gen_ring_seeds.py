#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Seeds for tests/fuzz/fuzz_ring.c: rings laid out as the payload writes
them (common/ma_ring.h, ma_record.h, ma_agg.h), in the harness's input
shape (flags, ring header, [aggregate header and 8 keys], data).
usage: gen_ring_seeds.py OUTDIR"""
import os
import struct
import sys

RING_MAGIC = 0x31474E4952414D00
AGG_MAGIC = 0x3147474141414D00
DATA = 64 * 1024
HDR_LEN = 400    # sizeof(struct ma_ring_hdr)
AGG_HDR_LEN = 232  # sizeof(struct ma_agg_hdr)
KEY_LEN = 584    # sizeof(struct ma_agg_key)
PAD, ALLOC, FREE, THREAD, CODE, NODE, STATS, FORK, TEMP = range(1, 10)


def rec(typ, body, thread=1):
    n = 8 + len(body)
    body += b"\0" * (-n % 8)
    n = 8 + len(body)
    return struct.pack("<II", n << 8 | typ, thread) + body


def code(cid, name, file, table, version=0x030C00F0):
    return rec(CODE, struct.pack("<IiIIII", cid, 10, len(name), len(file),
                                 len(table), version) + name + file + table)


def ring_hdr(tail, head, agg):
    h = bytearray(HDR_LEN)
    struct.pack_into("<QIIQI", h, 0, RING_MAGIC, 2, 4096, DATA, 1234)
    struct.pack_into("<Q", h, 64, head)
    struct.pack_into("<Q", h, 128, tail)
    struct.pack_into("<I", h, 192, 2)  # TRACKING
    if agg:
        struct.pack_into("<QQ", h, 384, 4096 + DATA, 0)
    return bytes(h)


def records():
    r = b""
    r += rec(THREAD, struct.pack("<iIQ16s", 4321, 0, 0x7F0000001000,
                                 b"MainThread"))
    # 3.12 line table bytes of a small function
    r += code(1, b"main", b"/tmp/x.py", bytes([0x80, 0x00, 0xd8, 0x04, 0x08]))
    r += code(2, b"f\xc3\xa9", b"/tmp/y.py", b"\x01\x02\x03\x04", 0x030800F0)
    r += rec(NODE, struct.pack("<IIIi", 1, 0, 1, 4))
    r += rec(NODE, struct.pack("<IIIi", 2, 1, 2, -1))
    for i in range(6):
        r += rec(ALLOC, struct.pack("<QQIB3x", 0x5000 + 64 * i, 64, 2, 8))
    r += rec(FREE, struct.pack("<QQB7x", 0x5000, 0, 8))
    r += rec(ALLOC, struct.pack("<QQIB3x", 0x7000000, 1 << 20, 1, 5))
    r += rec(FREE, struct.pack("<QQB7x", 0x7000000, 1 << 20, 5))
    r += rec(TEMP, struct.pack("<IBB2xQQ", 2, 8, 3, 32, 5))
    r += rec(FORK, struct.pack("<iI", 999, 0))
    r += rec(STATS, struct.pack("<6Q", 8, 2, 0, 0, 0, 0))
    return r


def agg_part(nkeys):
    h = bytearray(AGG_HDR_LEN)
    struct.pack_into("<QIIIII", h, 0, AGG_MAGIC, 1, 4096, 65536, KEY_LEN,
                     nkeys)
    struct.pack_into("<QQQQQ", h, 64, 4096, 10, 8192, 12, 3)
    struct.pack_into("<QQ", h, 128, 1024, 2)
    keys = b""
    for i in range(8):
        k = bytearray(KEY_LEN)
        if i and i < nkeys:
            struct.pack_into("<IIIB", k, 0, 1, 1, 1 + i % 2, 8)
            struct.pack_into("<7Q", k, 16, 10 * i, 640 * i, 5 * i, 320 * i,
                             3 if i % 2 else 2, 100, 2)
            struct.pack_into("<QQ", k, 72 + 16 * (i % 32), i, 64 * i)
        keys += bytes(k)
    return bytes(h) + keys


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    r = records()
    seeds = {
        "events.seed": b"\0" + ring_hdr(0, len(r), 0) + r,
        "agg.seed": b"\1" + ring_hdr(0, len(r), 1) + agg_part(6) + r,
        "raw-header.seed": b"\2" + ring_hdr(0, len(r), 0) + r,
    }
    # a lap: the consumer starts 64 bytes before the end of the data, on
    # the PAD the producer wrote there, and goes on at offset 0
    data = bytearray(DATA)
    data[:len(r)] = r
    data[DATA - 64:] = rec(PAD, b"\0" * 56)
    seeds["wrap.seed"] = (b"\0" + ring_hdr(DATA - 64, DATA + len(r), 0)
                          + bytes(data))
    for name, blob in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(blob)


if __name__ == "__main__":
    main()
