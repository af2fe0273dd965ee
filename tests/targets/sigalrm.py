"""Target receiving SIGALRM every 10 ms: counts ticks in the handler,
allocates in the main loop, prints 'ticks N' every 100 ms."""
import signal
import sys
import time

TICKS = 0


def on_alarm(sig, frame):
    global TICKS
    TICKS += 1


def main():
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)
    print("READY", flush=True)
    last = time.monotonic()
    junk = []
    while True:
        junk.append(bytearray(1000))
        if len(junk) > 1000:
            junk.clear()
        time.sleep(0.0005)
        if time.monotonic() - last >= 0.1:
            print("ticks", TICKS, flush=True)
            last = time.monotonic()


if __name__ == "__main__":
    sys.exit(main())
