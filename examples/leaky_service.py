"""A small 'service' that leaks: the sample program of memattach's demo.

Request handlers run in worker threads; a module-level cache remembers every
response and is never evicted, so memory grows for as long as it runs.  One
thread waits on a socket-like pipe (blocked in a syscall), as idle workers do.
"""
import os
import sys
import threading
import time

CACHE = {}


def render(request_id):
    # Each response is ~10 KiB and is kept forever: the leak.
    body = ("row %d\n" % request_id) * 1000
    CACHE[request_id] = body
    scratch = [str(i) for i in range(200)]  # short-lived garbage
    return len(body) + len(scratch)


def handle_requests(worker, stop):
    request_id = worker * 10_000_000
    while not stop.is_set():
        render(request_id)
        request_id += 1
        time.sleep(0.002)


def wait_for_admin_command(fd):
    return os.read(fd, 1)  # blocked in read() until the pipe is written


def main():
    stop = threading.Event()
    r, _w = os.pipe()
    workers = [threading.Thread(target=handle_requests, args=(i, stop),
                                name="worker-%d" % i) for i in range(2)]
    admin = threading.Thread(target=wait_for_admin_command, args=(r,),
                             name="admin", daemon=True)
    for t in workers + [admin]:
        t.start()
    print("leaky_service", flush=True)
    try:
        while True:
            time.sleep(0.5)
    finally:
        stop.set()


if __name__ == "__main__":
    sys.exit(main())
