"""Target for hazard 1 (docs/architecture.md): threads where a remote dlopen() would
deadlock.  argv[1]:
  malloc  - the main thread runs malloc/free in a tight C loop (ctypes, GIL
            released); a Python thread allocates too
  loader  - a thread sits inside dlopen() of a library whose constructor
            sleeps $MA_BLOCK_SECONDS (holding the loader's lock); the main
            thread keeps allocating and prints 'it N'
Prints READY (for 'loader': once the thread is inside dlopen)."""
import ctypes
import os
import sys
import threading
import time

LIBDIR = os.environ["MA_TEST_LIBDIR"]


def py_alloc():
    n = 0
    while True:
        x = [str(n)] * 10
        n += 1
        if n % 100000 == 0:
            time.sleep(0.001)


def main():
    mode = sys.argv[1]
    if mode == "malloc":
        threading.Thread(target=py_alloc, daemon=True).start()
        lib = ctypes.CDLL(os.path.join(LIBDIR, "libma_native_alloc.so"))
        print("READY", flush=True)
        lib.ma_native_alloc_tight_run()
    else:
        # libc's dlopen through ctypes releases the GIL (ctypes.CDLL()
        # itself would hold it for the whole constructor)
        libc = ctypes.CDLL(None)
        libc.dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
        libc.dlopen.restype = ctypes.c_void_p
        path = os.path.join(LIBDIR, "libma_block_ctor.so").encode()
        t = threading.Thread(target=libc.dlopen, args=(path, 2),
                             daemon=True)
        t.start()
        time.sleep(0.5)
        print("READY", flush=True)
        n = 0
        last = time.monotonic()
        while True:
            junk = [bytearray(100) for _ in range(100)]
            n += 1
            if time.monotonic() - last > 0.1:
                print("it", n, "loaded", not t.is_alive(), flush=True)
                last = time.monotonic()
            time.sleep(0.001)


if __name__ == "__main__":
    sys.exit(main())
