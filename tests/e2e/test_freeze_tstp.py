#!/usr/bin/env python3
"""A Ctrl-Z during the freeze waits for the thaw.  memattach stopped while
it holds the target frozen (every thread in a ptrace stop) keeps the target
frozen for as long as it is stopped; on a CPU-starved host the freeze of
an attach lasts seconds (found by probing: 1.7 s under `chrt -i 0` with a
busy loop on memattach's CPU), and a Ctrl-Z there left the target stopped
until `fg`.  memattach now defers SIGTSTP, SIGTTIN and SIGTTOU while it
freezes: it stops after the thaw, the target running.

An attach sends itself a SIGTSTP (to the process, as a terminal's Ctrl-Z
does) at its first freeze.stopped step (MEMATTACH_TEST_STOP_SIGNAL): once
memattach is stopped, no thread of the target may be in a tracing stop;
then it is resumed and ends its session, the target well."""
import os
import signal
import subprocess
import time

from kill_lib import KillTarget, each_interpreter, memattach_env, proc_state
from ma_test import MEMATTACH, check


def traced_stops(pid):
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        if proc_state(int(tid)) in ("t", "T"):
            out.append(int(tid))
    return out


def run(label, exe, tmp):
    cap = os.path.join(tmp, "tstp.cap")
    with KillTarget(exe, tmp) as t:
        p = subprocess.Popen(
            [MEMATTACH, "attach", "-q", "-d", "2", "-o", cap, str(t.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env=memattach_env(MEMATTACH_TEST_STOP_AT="freeze.stopped",
                              MEMATTACH_TEST_STOP_SIGNAL="TSTP"))
        end = time.time() + 30
        while time.time() < end and proc_state(p.pid) != "T" and \
                p.poll() is None:
            time.sleep(0.002)
        stopped = proc_state(p.pid) == "T"
        time.sleep(0.2)
        held = traced_stops(t.pid)
        p.send_signal(signal.SIGCONT)
        _, err = p.communicate(timeout=60)
        check(stopped, "%s: memattach stopped by its Ctrl-Z" % label,
              err[-300:])
        check(stopped and not held, "%s: stopped, memattach holds no "
              "thread of the target" % label,
              "threads in a stop: %s" % held)
        check(p.returncode in (0, 8) and not t.health(),
              "%s: resumed, the attach ends, the target well" % label,
              "exit %s %s" % (p.returncode, err[-300:]))


def main():
    each_interpreter("memattach-tstp-", run)


if __name__ == "__main__":
    main()
