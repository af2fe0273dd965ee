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
"""
import sys
import threading

stop = threading.Event()


def idle(ready):
    ready.set()
    stop.wait()


class Refresher(threading.Thread):
    def __init__(self, ready):
        super().__init__(name="cache-refresher", daemon=True)
        self.ready = ready

    def run(self):
        idle(self.ready)


def main():
    threads = []
    for name in ("ingest-worker", "pool #2 (db)", None, "before"):
        ready = threading.Event()
        t = threading.Thread(target=idle, args=(ready,), name=name,
                             daemon=True)
        t.start()
        ready.wait()
        threads.append(t)
    ready = threading.Event()
    r = Refresher(ready)
    r.start()
    ready.wait()
    threads.append(r)
    threads[3].name = "after-rename"
    import os
    print("READY %d %d" % (os.getpid(), threading.get_native_id()),
          flush=True)
    print("THREAD %d %s" % (threading.get_native_id(),
                            threading.current_thread().name), flush=True)
    for t in threads:
        print("THREAD %d %s" % (t.native_id, t.name), flush=True)
    sys.stdin.readline()
    stop.set()
    print("GOT", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
