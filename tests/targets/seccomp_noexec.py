"""A process under a seccomp filter (PR_SET_NO_NEW_PRIVS first) that
refuses, with EPERM, either memfd_create (argv[1] "memfd") or any mmap or
mprotect asking for PROT_EXEC ("exec"): what a sandboxed worker may do.
Prints READY, then answers each line on stdin with "ALIVE N" and the
descriptors it holds; EOF ends it."""
import ctypes
import os
import struct
import sys

libc = ctypes.CDLL(None, use_errno=True)
LD_W_ABS, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06
ALLOW, EPERM = 0x7fff0000, 0x00050000 | 1
NR_MMAP, NR_MPROTECT, NR_MEMFD_CREATE = 9, 10, 319
if sys.argv[1] == "memfd":
    prog = [(LD_W_ABS, 0, 0, 0), (JEQ, 0, 1, NR_MEMFD_CREATE),
            (RET, 0, 0, EPERM), (RET, 0, 0, ALLOW)]
else:
    # mmap or mprotect with PROT_EXEC (4) in their third argument
    prog = [(LD_W_ABS, 0, 0, 0), (JEQ, 1, 0, NR_MMAP),
            (JEQ, 0, 3, NR_MPROTECT), (LD_W_ABS, 0, 0, 32),
            (JSET, 0, 1, 4), (RET, 0, 0, EPERM), (RET, 0, 0, ALLOW)]
code = ctypes.create_string_buffer(
    b"".join(struct.pack("HBBI", *i) for i in prog))


class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


fprog = Fprog(len(prog), ctypes.addressof(code))
if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.byref(fprog),
                                             0, 0):
    print("NOFILTER", ctypes.get_errno(), flush=True)
    sys.exit(1)
print("READY", flush=True)
n = 0
for line in sys.stdin:
    n += 1
    print("ALIVE %d %s" % (n, " ".join(sorted(os.listdir("/proc/self/fd")))),
          flush=True)
