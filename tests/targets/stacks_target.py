"""Target for `memattach stacks`: known nested functions in two threads.

main thread: main -> wait_for_quit, blocked in read(0) (a syscall)
spinner:     outer -> middle -> spin, spinning in pure Python (holds the GIL)
Prints 'READY <main tid> <spinner tid>' once both are in place; after one
line arrives on stdin it prints 'GOT <line>' and exits 0.
"""
import sys
import threading
import time

STOP = False
spinning = threading.Event()


def spin():
    spinning.set()
    while not STOP: pass  # MARK: spin


def middle():
    spin()  # MARK: middle_calls_spin


def outer():
    middle()  # MARK: outer_calls_middle


def wait_for_quit():
    return sys.stdin.buffer.readline()  # MARK: blocked_read


def main():
    t = threading.Thread(target=outer, name="spinner", daemon=True)
    t.start()
    spinning.wait()
    time.sleep(0.2)
    print("READY", threading.get_native_id(), t.native_id, flush=True)
    line = wait_for_quit()  # MARK: main_calls_wait
    print("GOT", line.decode().strip(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())  # MARK: module_calls_main
