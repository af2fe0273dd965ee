"""Allocation sites of known shares of the bytes, for the sampled mode
(test_sample.py).

Prints READY; then for each line 'go' on stdin runs the same deterministic
work and prints DONE; ends at 'quit'.  Per round, about 8.3 GB allocated:

  site      share  what
  huge      ~50%   4096 bytearrays of 1 MiB (malloc through the RAW domain)
  mid       ~20%   26214 bytearrays of 64 KiB
  small     ~10%   1.78 M bytes of 450 (483-byte pymalloc objects)
  mid2      ~5%    6554 bytearrays of 64 KiB
  tiny      ~2%    737 k bytes of 200 (233-byte pymalloc objects)
  kept      ~1%    178 k bytes of 450, kept until the next round
  rare      ~0.01% 600 bytes of 450 (below what the test checks)

Blocks die at once except the kept ones.  The lines are marked for the test.
"""
import sys

KEEP = []
MiB = 1 << 20


def huge():
    for _ in range(4096):
        x = bytearray(MiB)  # MARK: huge
    return x


def mid():
    for _ in range(26214):
        x = bytearray(64 << 10)  # MARK: mid
    return x


def small():
    for _ in range(1780000):
        x = bytes(450)  # MARK: small
    return x


def mid2():
    for _ in range(6554):
        x = bytearray(64 << 10)  # MARK: mid2
    return x


def tiny():
    for _ in range(737000):
        x = bytes(200)  # MARK: tiny
    return x


def kept():
    for _ in range(178000):
        KEEP.append(bytes(450))  # MARK: kept


def rare():
    for _ in range(600):
        x = bytes(450)  # MARK: rare
    return x


def work():
    KEEP.clear()
    huge()
    mid()
    small()
    mid2()
    tiny()
    kept()
    rare()


def main():
    print("READY", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        work()
        print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
