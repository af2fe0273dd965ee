"""Thread names are threading.Thread names, read from the target's memory
(sys.modules['threading']._active -> Thread._name), with the kernel's comm
where there is none.

On every interpreter, named_threads.py (alloc raw) prints each thread's
native id and Thread.name; `stacks` (text and JSON), `info` (text and
JSON) and the attach summary ('Threads now') must call every thread by that
name, and the thread started with _thread.start_new_thread (no Thread) by
its comm.  A short attach, during which one more thread ('late-comer')
starts, must give a capture whose reports name the threads the same way:
report --threads (text, JSON), --thread NAME, speedscope and pprof; the
heap census names the thread of a local variable the same way.
A process that never imported threading is called by its comm.  A process
that starts thousands of threads a second is tracked with its threads
past the first 1,024 folded into "(other threads)", every event with its
stack, and leaves no per-thread memory behind.
"""
import gzip
import json
import os
import re
import subprocess
import tempfile
import time

from ma_test import (MEMATTACH, Attach, Target, check, finish,
                     interpreters, memattach, report_json, stacks_json,
                     thread_by_tid)


def comm_of(pid, tid):
    with open("/proc/%d/task/%d/comm" % (pid, tid)) as f:
        return f.read().rstrip("\n")


def expected_threads(t):
    """{native id: Thread.name} and the raw thread's native id"""
    names = {}
    for _ in range(6):
        _, tid, name = t.readline().split(" ", 2)
        names[int(tid)] = name
    raw = int(t.readline().split()[1])
    return names, raw


def check_live(label, t, names, raw):
    doc = stacks_json(t.pid)
    got = {x["tid"]: x for x in doc["threads"]}
    check(all(tid in got and got[tid]["name"] == name and
              got[tid]["python_name"] == name for tid, name in names.items()),
          "%s: stacks --json names every Thread by its name" % label,
          json.dumps([(x["tid"], x["name"], x["python_name"])
                      for x in doc["threads"]]) + "\n" + repr(names))
    r = got.get(raw, {})
    check(r.get("name") == comm_of(t.pid, raw) and r.get("python_name") is
          None and r.get("comm") == r.get("name"),
          "%s: stacks --json: the _thread thread by its comm" % label, r)

    rc, out, err = memattach("stacks", t.pid)
    missing = [n for tid, n in names.items()
               if 'Thread %d "%s"' % (tid, n) not in out]
    check(rc == 0 and not missing and
          'Thread %d "%s"' % (raw, comm_of(t.pid, raw)) in out,
          "%s: stacks (text): thread headers name them" % label,
          "missing %r\n%s%s" % (missing, out, err))

    rc, out, err = memattach("info", t.pid)
    lines = out.splitlines()
    missing = [n for tid, n in names.items()
               if not any(ln.split()[:1] == [str(tid)] and
                          ln.split(None, 1)[1].startswith(n + " ")
                          for ln in lines if ln.startswith("  "))]
    check(rc == 0 and not missing,
          "%s: info lists every thread by its name" % label,
          "missing %r\n%s%s" % (missing, out, err))
    rc, out, err = memattach("info", "--json", t.pid)
    doc = json.loads(out) if rc == 0 else {}
    got = {x["tid"]: x["name"] for x in doc.get("threads", [])}
    check(all(got.get(tid) == n for tid, n in names.items()) and
          got.get(raw) == comm_of(t.pid, raw),
          "%s: info --json names every thread" % label, (got, names))


def check_heap(label, t, names, raw):
    """the heap census names a local's thread by its Thread name (the
    _thread thread by its comm)"""
    names = dict(names)
    names[raw] = comm_of(t.pid, raw)
    rc, out, err = memattach("heap", "--top", "50", t.pid)
    seen = re.findall(r'thread (\d+) "([^"]*)"\)', out)
    wrong = [(tid, n) for tid, n in seen if names.get(int(tid)) != n]
    check(rc == 0 and seen and not wrong and
          any(n != "MainThread" for _, n in seen),
          "%s: heap: locals' threads by their Thread names" % label,
          "%r\n%s%s" % (wrong, out, err))


def check_capture(label, t, names, raw, tmp):
    cap = os.path.join(tmp, label + ".cap")
    # memattach PID: the stacks ('Threads now') first, then tracking;
    # a thread started while tracking is named by the next read
    a = subprocess.Popen([MEMATTACH, "--no-heap", "-q", "-d", "2.5", "-o",
                          cap, str(t.pid)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while not os.path.exists(cap) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    t.proc.stdin.write(b"late\n")
    t.proc.stdin.flush()
    late = t.readline().split(" ", 2)
    out, err = a.communicate(timeout=60)
    check(a.returncode == 0 and len(late) == 3 and late[2] == "late-comer",
          "%s: attach ran, late-comer started meanwhile" % label,
          out + err + repr(late))
    now = out.split("Threads now:", 1)[-1]
    missing = [n for tid, n in names.items()
               if "  %s (%d)" % (n, tid) not in now]
    check(not missing and "  %s (%d)" % (comm_of(t.pid, raw), raw) in now,
          "%s: the attach summary names the threads" % label,
          "missing %r\n%s" % (missing, out))

    every = dict(names)
    every[int(late[1])] = "late-comer"
    rc, out, err = memattach("report", "--threads", "-f", "json", cap)
    doc = json.loads(out) if rc == 0 else {}
    got = {x["tid"]: x for x in doc.get("threads", [])}
    wrong = [(tid, n, got.get(tid, {}).get("name"))
             for tid, n in every.items()
             if got.get(tid, {}).get("name") != n]
    check(rc == 0 and not wrong,
          "%s: report --threads (json): every allocating Thread by name, "
          "the late one too" % label, "%r\n%s" % (wrong, err))
    r = got.get(raw, {})
    check(r.get("name") == comm_of(t.pid, raw) and r.get("comm") ==
          r.get("name"), "%s: report: the _thread thread by its comm" % label,
          r)

    rc, out, err = memattach("report", "--threads", cap)
    missing = [n for tid, n in every.items()
               if not any(ln.split()[:1] == [str(tid)] and n in ln
                          for ln in out.splitlines())]
    check(rc == 0 and not missing,
          "%s: report --threads (text) names them" % label,
          "missing %r\n%s%s" % (missing, out, err))

    rc, out, err = memattach("report", "-f", "json", "--thread",
                             "pool #2 (db)", cap)
    doc = json.loads(out) if rc == 0 else {}
    sel = [x["tid"] for x in doc.get("threads", []) if x.get("selected")]
    pool = [tid for tid, n in every.items() if n == "pool #2 (db)"]
    check(rc == 0 and sel == pool,
          "%s: report --thread 'pool #2 (db)' selects that thread" % label,
          (sel, pool, err))

    ss = os.path.join(tmp, label + ".speedscope.json")
    rc, out, err = memattach("report", "-f", "speedscope", "-o", ss, cap)
    text = open(ss).read() if rc == 0 else ""
    check(rc == 0 and all(json.dumps(n)[1:-1] in text
                          for n in every.values()),
          "%s: speedscope profiles per thread carry the names" % label, err)
    pp = os.path.join(tmp, label + ".pb.gz")
    rc, out, err = memattach("report", "-f", "pprof", "-o", pp, cap)
    data = gzip.decompress(open(pp, "rb").read()) if rc == 0 else b""
    check(rc == 0 and all(n.encode() in data for n in every.values()),
          "%s: pprof thread labels carry the names" % label, err)


def check_no_threading(label, exe):
    # -S: a site-packages .pth file may import threading at startup
    p = subprocess.Popen(
        [exe, "-S", "-c", "import sys; print('READY', 'threading' in "
         "sys.modules, flush=True); sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready = p.stdout.readline().split()
        doc = stacks_json(p.pid)
        th = doc["threads"]
        check(ready == ["READY", "False"] and len(th) == 1 and
              th[0]["python_name"] is None and
              th[0]["name"] == comm_of(p.pid, p.pid),
              "%s: without threading imported, the comm" % label,
              (ready, th))
    finally:
        p.kill()
        p.wait()


def check_fork_child(label, exe, tmp):
    """A fork child's main thread is the Thread that forked, named
    'MainThread', whose _native_id CPython leaves at the parent's thread
    ID: stacks, info and a capture must still call it MainThread (before,
    stacks and info on 3.11+ and the capture on every version called it
    by its comm)"""
    with Target(exe, "fork_named.py") as t:
        pid = int(t.ready_line.split()[1])
        try:
            th = thread_by_tid(stacks_json(pid), pid)
            check(th and th["name"] == "MainThread",
                  "%s: fork child: stacks names its main thread "
                  "MainThread" % label, th and th["name"])
            rc, out, err = memattach("info", "--json", str(pid))
            main = [x for x in json.loads(out)["threads"]
                    if x["tid"] == pid] if rc == 0 else []
            check(main and main[0]["name"] == "MainThread",
                  "%s: fork child: info names its main thread "
                  "MainThread" % label, err or main)
            cap = os.path.join(tmp, label + "-fork.cap")
            a = Attach(pid, "--duration", 1.5, output=cap)
            rc = a.wait()
            ths = report_json(cap, "--threads")["threads"] if rc == 0 \
                else []
            mine = [x["name"] for x in ths if x["tid"] == pid]
            check(mine == ["MainThread"],
                  "%s: fork child: the capture names its main thread "
                  "MainThread" % label, (rc, mine, a.stderr[-300:]))
        finally:
            os.kill(pid, 9)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def thread_churn(label, exe, tmp):
    """A thread started per iteration (tests/targets/spawner.py), thousands
    a second, tracked 6 s: the threads after the first 1,024 are counted
    under "(other threads)" and no event loses its stack (before, a key per
    thread and stack filled the key table within seconds and the summary
    warned of events counted without their stack); the report lists at
    most 1,026 threads; and after the detach the target keeps no more of
    the payload's per-thread memory than a few slots (before, a new thread
    took the slot after the last one taken, every one of the 1,024 was
    touched, and 14.5 MB stayed after the detach)"""
    with Target(exe, "spawner.py") as t:
        time.sleep(0.5)
        before = rss_kib(t.pid)
        cap = os.path.join(tmp, "churn.cap")
        a = Attach(t.pid, "--duration", 6, output=cap)
        rc = a.wait()
        time.sleep(0.5)
        after = rss_kib(t.pid)
        out = a.stdout + a.stderr
        check(rc == 0 and "key table was full" not in out,
              "%s: thread churn: attach exits 0, every event with its "
              "stack" % label, out[-600:])
        if rc != 0:
            return
        ths = report_json(cap, "--threads")["threads"]
        other = [x for x in ths if x["name"] == "(other threads)"]
        check(len(ths) <= 1026 and
              (len(ths) < 1025 or (other and other[0]["total"]["count"])),
              "%s: thread churn: %d threads in the report, the rest under "
              "(other threads)" % (label, len(ths)),
              other[0] if other else None)
        check(after - before < 8192,
              "%s: thread churn: %d KiB more in the target after the "
              "detach (under 8 MiB)" % (label, after - before))


def main():
    tmp = tempfile.mkdtemp(prefix="memattach-names-")
    every = list(interpreters())
    for label, exe in every:
        # the thread churn on two: Debian's, and the newest pyenv one
        if label.startswith("debian") or label == every[-1][0]:
            try:
                thread_churn(label, exe, tmp)
            except Exception as e:
                check(False, "%s: thread churn ran without error" % label,
                      repr(e))
        try:
            with Target(exe, "named_threads.py", "alloc", "raw") as t:
                names, raw = expected_threads(t)
                check_live(label, t, names, raw)
                check_heap(label, t, names, raw)
                check_capture(label, t, names, raw, tmp)
                t.proc.stdin.write(b"quit\n")
                t.proc.stdin.flush()
                check(t.readline() == "GOT", "%s: target runs on" % label)
            check_no_threading(label, exe)
            check_fork_child(label, exe, tmp)
        except Exception as e:
            check(False, "%s: ran without error" % label, repr(e))
    finish()


if __name__ == "__main__":
    main()
