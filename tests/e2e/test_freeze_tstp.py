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
from ma_test import MEMATTACH, check, skip


def traced_stops(pid):
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        if proc_state(int(tid)) in ("t", "T"):
            out.append(int(tid))
    return out


def run(label, exe, tmp):
    cap = os.path.join(tmp, "tstp.cap")
    with KillTarget(exe, tmp) as t:
        # its own process group, as a shell's job: the kernel drops the
        # stop signals of a process group that no parent outside it in
        # the session holds (an orphaned one: a suite run in the
        # background whose shell has gone), and Ctrl-Z needs a job
        p = subprocess.Popen(
            [MEMATTACH, "attach", "-q", "-d", "2", "-o", cap, str(t.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            preexec_fn=os.setpgrp,
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


def sched(pid):
    """(nice, policy) of a process's main thread, from its stat"""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after the command: state is field 3, nice 19, policy 41
    return int(fields[19 - 3]), int(fields[41 - 3])


def starved(label, exe, tmp):
    """memattach run at nice 19 under SCHED_IDLE (so as not to disturb a
    production host) holds the target frozen at the default priority:
    nice 0, SCHED_OTHER, for the length of the freeze, and goes back to
    what it was given after it.  It ran the freeze at its own priority:
    starved by a busy CPU, it held the target stopped 128-1717 ms instead
    of 2-4 (priority inversion; found by probing)."""
    if os.geteuid() != 0:
        skip("%s: starved" % label, "needs root to lower a nice value")
        return
    cap = os.path.join(tmp, "starved.cap")
    seen = {}
    with KillTarget(exe, tmp) as t:
        for step in ("freeze.stopped", "track.sample"):
            p = subprocess.Popen(
                ["nice", "-n", "19", "chrt", "-i", "0", MEMATTACH, "attach",
                 "-q", "-d", "1", "-o", cap, str(t.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                env=memattach_env(MEMATTACH_TEST_STOP_AT=step))
            end = time.time() + 30
            while time.time() < end and proc_state(p.pid) != "T" and \
                    p.poll() is None:
                time.sleep(0.002)
            seen[step] = sched(p.pid) if proc_state(p.pid) == "T" else None
            p.send_signal(signal.SIGCONT)
            _, err = p.communicate(timeout=60)
            check(p.returncode == 0, "%s: starved: the attach stopped at %s "
                  "ends well" % (label, step), err[-300:])
        check(seen["freeze.stopped"] == (0, 0),
              "%s: at nice 19, SCHED_IDLE: the freeze at nice 0, "
              "SCHED_OTHER" % label, seen)
        check(seen["track.sample"] == (19, 5),
              "%s: after the freeze: back at nice 19, SCHED_IDLE" % label,
              seen)
        check(not t.health(), "%s: starved: the target well" % label)


def main():
    each_interpreter("memattach-tstp-", run, starved)


if __name__ == "__main__":
    main()
