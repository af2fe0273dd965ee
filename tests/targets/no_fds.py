"""A process that has used up its file descriptors: its limit lowered to
64, then /dev/null opened until the kernel refuses.  Prints READY and
waits on stdin; "close" gives back one descriptor (prints CLOSED), EOF or
"quit" ends it."""
import os
import resource
import sys

resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
held = []
while True:
    try:
        held.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        break
print("READY", len(held), flush=True)
for line in sys.stdin:
    if line.strip() == "close" and held:
        os.close(held.pop())
        print("CLOSED", flush=True)
    elif line.strip() == "quit":
        break
