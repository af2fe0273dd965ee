"""The protocol of the targets that test_attach runs to the end
(run_to_done): print READY, wait for 'go' on stdin (the test attaches
meanwhile), do the work, print DONE, then wait for one more line ('quit')
so that the process is still there while the test stops tracking."""
import sys


def gated(work):
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    work()
    print("DONE", flush=True)
    sys.stdin.readline()
    return 0
