"""Target for killing memattach at every step (test_kill_steps.py) and for
the chaos benchmark (bench/chaos.py): everything a kill must not disturb.

- three threads allocate: small objects that live from one to thousands of
  allocations, and now and then a 256 KiB buffer (malloc's mmap path);
- the main thread is blocked in sys.stdin.readline() (it is the thread
  memattach picks first for its remote calls);
- one thread is blocked in select() on a datagram socket, one in
  epoll_wait() on another, one sleeps in 50 ms steps;
- SIGALRM arrives every 10 ms.
Commands on stdin, one per line: 'ECHO x' prints 'GOT x'; 'STAT' prints
'STAT allocs alarms sleeps selects epolls'; 'QUIT' exits 0.  Datagrams sent
to DIR/sel and DIR/epl are printed as 'SEL x' and 'EPOLL x'.  Prints
'READY' once everything is in place.
Usage: kill_target.py DIR
"""
import collections
import os
import select
import signal
import socket
import sys
import threading
import time

OUT = threading.Lock()
COUNTS = {"allocs": 0, "alarms": 0, "sleeps": 0, "selects": 0, "epolls": 0}


def say(*words):
    with OUT:
        sys.stdout.write(" ".join(str(w) for w in words) + "\n")
        sys.stdout.flush()


def allocate(seed):
    keep = collections.deque(maxlen=2000 + 1000 * seed)
    n = 0
    while True:
        # the same work at every turn: str() of a growing n would slow
        # the loop down as n gains digits
        m = 1000000 + n % 1000000
        keep.append({"n": m, "s": str(m) * 3, "l": [m] * 5})
        if n % 5000 == seed:
            keep.append(bytearray(256 * 1024))
        n += 1
        if n % 1000 == 0:
            COUNTS["allocs"] += 1000


def selecting(sock):
    while True:
        r, _, _ = select.select([sock], [], [])
        if r:
            COUNTS["selects"] += 1
            say("SEL", sock.recv(256).decode())


def epolling(sock):
    ep = select.epoll()
    ep.register(sock.fileno(), select.EPOLLIN)
    while True:
        for _fd, _ev in ep.poll():
            COUNTS["epolls"] += 1
            say("EPOLL", sock.recv(256).decode())


def sleeping():
    while True:
        time.sleep(0.05)
        COUNTS["sleeps"] += 1


def on_alarm(_sig, _frame):
    COUNTS["alarms"] += 1


def bound(path):
    if os.path.exists(path):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    return s


def main():
    where = sys.argv[1]
    for i in range(3):
        threading.Thread(target=allocate, args=(i,), daemon=True).start()
    threading.Thread(target=selecting, args=(bound(os.path.join(
        where, "sel")),), daemon=True).start()
    threading.Thread(target=epolling, args=(bound(os.path.join(
        where, "epl")),), daemon=True).start()
    threading.Thread(target=sleeping, daemon=True).start()
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)
    time.sleep(0.1)
    say("READY")
    while True:
        line = sys.stdin.readline()
        if not line or line.strip() == "QUIT":
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
            return 0
        word, _, rest = line.strip().partition(" ")
        if word == "ECHO":
            say("GOT", rest)
        elif word == "STAT":
            say("STAT", *(COUNTS[k] for k in ("allocs", "alarms", "sleeps",
                                             "selects", "epolls")))


if __name__ == "__main__":
    sys.exit(main())
