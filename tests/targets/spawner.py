"""Target for `memattach stacks`: a main thread that starts a thread per
iteration and joins it, as a server that starts a thread per request does.

_thread.start_new_thread makes each new thread's Python state in the main
thread, and until the new thread runs, that state names the main thread
(3.8-3.11) or no thread (3.12+): the reader must still give the main thread
its own frames, and list no frameless state of its own for the thread being
started.  Prints 'READY <main tid>' once, then loops until killed.
"""
import threading


def work():
    pass


def spawn_forever():
    print("READY", threading.get_native_id(), flush=True)
    while True:
        t = threading.Thread(target=work)
        t.start()  # MARK: start
        t.join()  # MARK: join


spawn_forever()  # MARK: module
