"""Allocation-heavy loop for the benchmark and the attach/detach cycles:
each thread builds and drops small containers and strings as fast as it can
and counts iterations; the main thread prints the total every 100 ms
('it N'), so a test can see the target making progress."""
import sys
import threading
import time

COUNTS = []


def churn(slot):
    n = 0
    while True:
        d = {"a": [n, n + 1], "b": str(n)}
        t = (d, [d] * 3)
        n += 1
        if n % 1000 == 0:
            COUNTS[slot] = n
        del d, t


def main():
    nthreads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    for i in range(nthreads):
        COUNTS.append(0)
        threading.Thread(target=churn, args=(i,), daemon=True).start()
    print("READY", flush=True)
    while True:
        time.sleep(0.1)
        print("it", sum(COUNTS), flush=True)


if __name__ == "__main__":
    sys.exit(main())
