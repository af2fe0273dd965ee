"""Target with named Python threads, all idle (no CPU spent):

main thread        'MainThread', blocked in read(0)
'ingest-worker'    waits on an Event
'pool #2 (db)'     waits on an Event (a name with spaces and punctuation)
a Thread subclass  named 'cache-refresher' by its constructor
a default name     'Thread-N (idle)' on 3.10+, 'Thread-N' before
a renamed thread   started as 'before', then renamed 'after-rename'

Prints 'READY <pid> <native id of main>' then one line
'THREAD <native id> <name>' per thread (native ids as this process sees
them: inside a PID namespace they differ from the host's); on a line on
stdin it prints 'GOT' and exits 0.

Arguments (none: the above, exactly):
  alloc  every thread but the main one allocates (small lists, a few kept)
         every 10 ms instead of idling, so that a capture defines them all,
         and holds a 256 KiB bytearray in a local variable
  raw    one more thread, started with _thread.start_new_thread (threading
         never hears of it: it has no Thread name), printed as
         'RAW <native id>' after the THREAD lines; it allocates with alloc
and, on stdin, the line 'late' starts one more thread, 'late-comer'
(printed as its THREAD line), instead of ending the target.
"""
import sys
import threading

stop = threading.Event()
ALLOC = "alloc" in sys.argv[1:]


def idle(ready):
    ready.set()
    if not ALLOC:
        stop.wait()
        return
    kept = []
    # a large local: the heap census lists it, with its thread, first
    ballast = bytearray(256 << 10)
    while not stop.wait(0.01):
        kept.append([object() for _ in range(20)])
        if len(kept) > 50:
            del kept[:25]
    del ballast


class Refresher(threading.Thread):
    def __init__(self, ready):
        super().__init__(name="cache-refresher", daemon=True)
        self.ready = ready

    def run(self):
        idle(self.ready)


def start(name):
    ready = threading.Event()
    t = threading.Thread(target=idle, args=(ready,), name=name, daemon=True)
    t.start()
    ready.wait()
    return t


def raw_thread():
    import _thread
    ready = _thread.allocate_lock()
    ids = []

    def body():
        ids.append(_thread.get_native_id())
        ready.release()
        kept = []
        while not stop.is_set():
            # no threading call here: threading.current_thread() would
            # make this thread a _DummyThread with a name
            if ALLOC:
                kept.append([object() for _ in range(20)])
                if len(kept) > 50:
                    del kept[:25]
            import time
            time.sleep(0.01)

    ready.acquire()
    _thread.start_new_thread(body, ())
    ready.acquire()
    return ids[0]


def main():
    threads = []
    for name in ("ingest-worker", "pool #2 (db)", None, "before"):
        threads.append(start(name))
    ready = threading.Event()
    r = Refresher(ready)
    r.start()
    ready.wait()
    threads.append(r)
    threads[3].name = "after-rename"
    raw = raw_thread() if "raw" in sys.argv[1:] else None
    import os
    print("READY %d %d" % (os.getpid(), threading.get_native_id()),
          flush=True)
    print("THREAD %d %s" % (threading.get_native_id(),
                            threading.current_thread().name), flush=True)
    for t in threads:
        print("THREAD %d %s" % (t.native_id, t.name), flush=True)
    if raw is not None:
        print("RAW %d" % raw, flush=True)
    while sys.stdin.readline().strip() == "late":
        t = start("late-comer")
        print("THREAD %d %s" % (t.native_id, t.name), flush=True)
    stop.set()
    print("GOT", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
