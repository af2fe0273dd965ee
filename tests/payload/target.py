"""Target for the payload tests (tests/unit/test_payload.c).

Loads the payload in-process with ctypes (until the attacher injects it, this
is how its hooks meet a real interpreter) and runs scenarios on command, one
line on stdin each, one reply line on stdout.  Lines that the test checks
stack traces against carry '# MARK: name' comments; keep them stable.

Environment: MA_PAYLOAD (the payload .so), MA_TESTALLOC_DIR (directory of
libma_testalloc_{a,b}.so).
"""
import ctypes
import os
import sys
import threading
import time
import warnings

# 3.12+ warns on fork() in a process with several threads: the payload's
# watchdog is one, on purpose; the warning is not what these tests check
warnings.filterwarnings("ignore", category=DeprecationWarning)

PAYLOAD = os.environ["MA_PAYLOAD"]
ALLOCDIR = os.environ["MA_TESTALLOC_DIR"]

keep = {}


def reply(*words):
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()


def addr_of(buf):
    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))


def load_alloc(name):
    lib = ctypes.CDLL(os.path.join(ALLOCDIR, "libma_testalloc_%s.so" % name))
    for f in ("ma_test_malloc", "ma_test_calloc", "ma_test_realloc",
              "ma_test_memalign", "ma_test_mmap", "ma_test_malloc_addr"):
        getattr(lib, f).restype = ctypes.c_void_p
    lib.ma_test_malloc.argtypes = [ctypes.c_size_t]
    lib.ma_test_calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
    lib.ma_test_realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.ma_test_free.argtypes = [ctypes.c_void_p]
    lib.ma_test_memalign.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
    lib.ma_test_mmap.argtypes = [ctypes.c_size_t]
    lib.ma_test_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.ma_test_churn.argtypes = [ctypes.c_uint]
    lib.ma_test_churn.restype = ctypes.c_ulong
    return lib


class Ctl(ctypes.Structure):
    _fields_ = [("magic", ctypes.c_uint32), ("abi", ctypes.c_uint32),
                ("generation", ctypes.c_uint32), ("status", ctypes.c_int32),
                ("ring_fd", ctypes.c_int32), ("state", ctypes.c_uint32),
                ("message", ctypes.c_char * 128)]


payload = None
libs = {}


def ctl_line():
    c = Ctl.in_dll(payload, "ma_ctl")
    return (c.status, c.ring_fd, c.state, c.generation,
            c.message.decode(errors="replace").replace(" ", "_") or "-")


def alloc_big():
    return bytearray(7 * 1024 * 1024)  # MARK: big


def call_big():
    keep["big"] = alloc_big()  # MARK: call_big
    return keep["big"]


def alloc_in_thread(out):
    out.append(bytearray(3 * 1024 * 1024 + 17))  # MARK: thread_alloc
    out.append(threading.get_native_id() if hasattr(threading, "get_native_id")
               else 0)


def free_in_thread(out):
    out.append(threading.get_native_id() if hasattr(threading, "get_native_id")
               else 0)
    del out[0]  # MARK: thread_free


def loop(seconds):
    # allocation-heavy: every iteration allocates and frees Python objects
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for i in range(1000):
            x = [i, str(i), (i, i + 1)]  # MARK: loop
            del x
        n += 1000
    return n


def make_records(n):
    out = []
    for i in range(n):
        out.append({"id": i, "name": "user%d" % i, "tags": [str(i), "x"]})
    return out


def loop2(seconds):
    # a more typical allocation-heavy workload: build and drop records
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        n += len(make_records(1000))  # MARK: loop2
    return n


churners = []
churn_ops = []
churn_stop = threading.Event()


def py_churn(ms):
    end = time.perf_counter() + ms / 1000.0
    n = 0
    while time.perf_counter() < end and not churn_stop.is_set():
        x = [bytearray(n % 3000), str(n), {n: n}]  # MARK: churn
        del x
        n += 1
    churn_ops.append(n)


def native_churn(lib, ms):
    end = time.perf_counter() + ms / 1000.0
    n = 0
    while time.perf_counter() < end and not churn_stop.is_set():
        n += lib.ma_test_churn(50)
    churn_ops.append(n)


def short_threads(count):
    for i in range(count):
        t = threading.Thread(target=lambda: bytearray(100000))
        t.start()
        t.join()


def cmd(words):
    global payload
    op = words[0]
    if op == "load":
        libs[words[1]] = load_alloc(words[1])
        reply("loaded", words[1])
    elif op == "start":
        if payload is None:
            payload = ctypes.CDLL(PAYLOAD)
        cfg = bytes.fromhex(words[1])
        buf = ctypes.create_string_buffer(cfg, len(cfg))
        t0 = time.perf_counter()
        payload.ma_start(buf)
        took = time.perf_counter() - t0
        reply("started", *(ctl_line() + ("%.3fms" % (took * 1e3),)))
    elif op == "ctl":
        reply("ctl", *ctl_line())
    elif op == "stop":
        payload.ma_stop()
        reply("stopped", *ctl_line())
    elif op == "big":
        b = call_big()
        reply("big", addr_of(b), len(b))
    elif op == "free_big":
        del keep["big"]  # MARK: free_big
        reply("freed")
    elif op == "thread":
        out = []
        t = threading.Thread(target=alloc_in_thread, args=(out,), name="allocator")
        t.start()
        t.join()
        addr = addr_of(out[0])
        t = threading.Thread(target=free_in_thread, args=(out,), name="freer")
        t.start()
        t.join()
        reply("thread", addr, out[0], out[1])
    elif op == "native":
        lib = libs[words[1]]
        n = int(words[2])
        p = lib.ma_test_malloc(n)
        q = lib.ma_test_calloc(3, n)
        r = lib.ma_test_memalign(4096, n)
        reply("native", p, q, r)
        keep["native"] = (lib, p, q, r)
    elif op == "native_free":
        lib, p, q, r = keep.pop("native")
        lib.ma_test_free(p)
        lib.ma_test_free(q)
        lib.ma_test_free(r)
        reply("native_freed")
    elif op == "mmap":
        lib = libs[words[1]]
        n = int(words[2])
        p = lib.ma_test_mmap(n)
        lib.ma_test_munmap(p, n)
        reply("mmap", p)
    elif op == "got":
        reply("got", *[libs[k].ma_test_malloc_addr() or 0 for k in words[1:]])
    elif op == "fork":
        pid = os.fork()
        if pid == 0:
            try:
                x = bytearray(5 * 1024 * 1024 + 3)  # MARK: child
                del x
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        reply("fork", pid, status)
    elif op == "loop":
        n = loop(float(words[1]))
        reply("loop", n)
    elif op == "loop2":
        n = loop2(float(words[1]))
        reply("loop", n)
    elif op == "churn":
        lib = libs[words[1]]
        nnative, npy, ms = int(words[2]), int(words[3]), int(words[4])
        churn_stop.clear()
        for i in range(nnative):
            churners.append(threading.Thread(target=native_churn,
                                             args=(lib, ms)))
        for i in range(npy):
            churners.append(threading.Thread(target=py_churn, args=(ms,)))
        for t in churners:
            t.start()
        reply("churning", len(churners))
    elif op == "join":
        churn_stop.set()
        for t in churners:
            t.join()
        del churners[:]
        reply("joined", sum(churn_ops))
        del churn_ops[:]
    elif op == "short_threads":
        short_threads(int(words[1]))
        reply("done")
    elif op == "tids":
        reply("tids", os.getpid(), threading.get_native_id()
              if hasattr(threading, "get_native_id") else 0)
    elif op == "exit":
        reply("bye")
        sys.exit(0)
    else:
        reply("error", "unknown", op)


def main():
    reply("READY", os.getpid(), "%d.%d.%d" % sys.version_info[:3])
    for line in sys.stdin:
        words = line.split()
        if words:
            cmd(words)


if __name__ == "__main__":
    main()
