"""A program that moves its own descriptors around while tracked, as
test_subprocess and daemons do (test_hazards.py, fd_reuse).
Commands on stdin, one per line, each answered on stdout:
  low       frees the lowest free descriptor number L for a while (opens
            /dev/null there, keeps a copy, closes L): 'LOW L'
  restore   puts the copy back at L with dup2: 'RESTORED'
  dup2 N    puts /dev/null at number N with dup2, whatever was there:
            'DUPED N'
  close N   closes number N, whatever it is (os.closerange's way):
            'CLOSED N'
  work      allocates 50 buffers of 100,000 bytes and keeps them: 'WORKED'
  check N.. each N must be an open descriptor of /dev/null: 'FDS ok', or
            'FDS bad' and why
  quit      exits 0
"""
import os
import sys

NULL = os.stat("/dev/null").st_rdev


def main():
    saved = low = None
    keep = []
    print("READY", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "low":
            low = os.open("/dev/null", os.O_RDONLY)
            saved = os.dup(low)
            os.close(low)
            print("LOW", low, flush=True)
        elif cmd[0] == "restore":
            os.dup2(saved, low)
            print("RESTORED", flush=True)
        elif cmd[0] == "dup2":
            fd = os.open("/dev/null", os.O_RDONLY)
            os.dup2(fd, int(cmd[1]))
            os.close(fd)
            print("DUPED", cmd[1], flush=True)
        elif cmd[0] == "close":
            try:
                os.close(int(cmd[1]))
            except OSError:
                pass
            print("CLOSED", cmd[1], flush=True)
        elif cmd[0] == "work":
            keep.append([bytearray(100000) for _ in range(50)])  # MARK: work
            print("WORKED", flush=True)
        elif cmd[0] == "check":
            bad = []
            for n in map(int, cmd[1:]):
                try:
                    if os.fstat(n).st_rdev != NULL:
                        bad.append("%d is not /dev/null" % n)
                except OSError as e:
                    bad.append("%d: %s" % (n, e.strerror))
            print("FDS", "bad " + "; ".join(bad) if bad else "ok", flush=True)
        elif cmd[0] == "quit":
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
