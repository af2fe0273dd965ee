"""A process with what a session can leave behind: a memfd named like a
session's ring, mapped, its header saying the session is in STATE (a
number: enum ma_ring_state, common/ma_ring.h: 2 tracking, 4 stopped), as a
payload leaves its ring mapped past its stop when a thread stayed in a
recording section (docs/payload.md).  The header's first fields and its
state's offset are common/ma_ring.h's (magic, version 2, state at 192).
Prints READY, then sleeps.
Arguments: STATE"""
import mmap
import os
import struct
import sys
import time

MAGIC = 0x31474e4952414d00
fd = os.memfd_create("memattach-ring")
os.ftruncate(fd, 1 << 16)
ring = mmap.mmap(fd, 1 << 16)
ring[0:16] = struct.pack("<QII", MAGIC, 2, 4096)
ring[192:196] = struct.pack("<I", int(sys.argv[1]))
print("READY", flush=True)
time.sleep(3600)
