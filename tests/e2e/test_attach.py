"""memattach attach on real processes of every interpreter present.

growth: after 10 s of tracking a process that fills a never-evicted cache
and makes short-lived garbage, the top live location is the line that
fills the cache, with bytes within 10% of what the script stored there
during the window, and the garbage line holds (almost) nothing live.

known sizes: two threads allocate bytearrays of 1, 7 and 100 MiB and a list
of N objects at known lines: sizes, counts and lines exact.

short-lived: N strings that die at once and M kept ones, tracked as the
payload does by default (aggregated: sums per stack kept in the target,
docs/payload.md) and with --every-event: the same counts at the same
lines either way, all temporaries seen as temporary, the kept ones live,
and the default capture really is aggregated (far fewer events than
allocations).

callers: a helper called from two call sites of one loop, and two helpers
taking turns at a third: every allocation is counted under the call site
it came through (the same count through both sites of the same calls), and
none under a site its helper was never called from.
"""
import re
import os
import subprocess
import tempfile

from ma_test import (TARGETS, Attach, Target, check, finish, interpreters,
                     marks, memattach, report_json, row_at, skip,
                     tracked_round)

GROWTH = os.path.join(TARGETS, "growth.py")
KNOWN = os.path.join(TARGETS, "known_sizes.py")
SHORT = os.path.join(TARGETS, "short_lived.py")
CALLERS = os.path.join(TARGETS, "callers.py")
MG = marks(GROWTH)
MK = marks(KNOWN)
MS = marks(SHORT)
MC = marks(CALLERS)
SEEN = {}
MiB = 1024 * 1024


def last_count(lines):
    for line in reversed(lines):
        if line.startswith("cache "):
            return int(line.split()[1])
    return None


def growth(label, exe, tmp):
    cap = os.path.join(tmp, "growth-%s.cap" % label)
    with Target(exe, "growth.py") as t:
        seen = [t.readline() for _ in range(3)]
        a = Attach(t.pid, "--duration", 10, output=cap)
        if not check(a.wait_attached(), "%s: growth: attached" % label,
                     a.stderr):
            a.stop()
            return
        # the target prints its count every 50 ms: the last line printed
        # when tracking starts and when it ends bound the window
        start = last_count(seen + t.drain())
        rc = a.wait(timeout=60)
        end = last_count(t.drain() or [t.readline()])
        check(rc == 0, "%s: growth: attach exits 0" % label,
              "exit %s\n%s" % (rc, a.stderr))
        # a short session: the summary's time is the capture's (it was
        # the last RSS sample's, up to 100 ms short: "in 0.4 s" beside
        # the report's "0.5 s tracked")
        rc2, out, err = memattach("attach", "-q", "-d", "0.5", "-o",
                                  cap + ".short", t.pid)
        said = re.search(r"Allocations: [^\n]* in ([0-9.]+ \w+);", out)
        rep = re.search(r", ([0-9.]+ \w+) tracked",
                        memattach("report", cap + ".short")[1])
        check(rc2 == 0 and said and rep and said.group(1) == rep.group(1),
              "%s: growth: the summary's duration is the report's" % label,
              "%s / %s %s" % (said and said.group(0), rep and rep.group(0),
                              err))
        check(t.alive(), "%s: growth: target still running" % label)
    if rc != 0:
        return
    doc = report_json(cap, "--view", "live", "--group", "line")
    top = doc["rows"][0] if doc["rows"] else {}
    check(top.get("file") == GROWTH and top.get("line") == MG["cache_fill"]
          and top.get("function") == "fill_cache",
          "%s: growth: top live location is the cache fill line" % label,
          {k: top.get(k) for k in ("function", "file", "line")})
    want = (end - start) * (64 * 1024)
    got = top.get("live", {}).get("bytes", 0)
    check(want > 0 and abs(got - want) <= 0.10 * want,
          "%s: growth: live bytes at that line within 10%% of what the "
          "script stored (%d vs %d)" % (label, got, want))
    g = row_at(doc, GROWTH, MG["garbage"])
    total_g = report_json(cap, "--view", "total", "--group", "line")
    gt = row_at(total_g, GROWTH, MG["garbage"])
    check(gt is not None and gt["total"]["bytes"] > 50 * MiB and
          (g is None or g["live"]["bytes"] <= 512 * 1024),
          "%s: growth: garbage allocated a lot, is not live" % label,
          "total %s live %s" % (gt and gt["total"], g and g["live"]))
    check(doc["complete"] and doc["totals"]["lost_records"] == 0,
          "%s: growth: capture complete, nothing lost" % label, doc["totals"])


def known_sizes(label, exe, tmp):
    cap = os.path.join(tmp, "known-%s.cap" % label)
    if not run_to_done(label, exe, "known_sizes.py", "known", cap,
                       settle=0.3):
        return
    doc = report_json(cap, "--view", "live", "--group", "line", "--top",
                      "1000")
    # Each bytearray(n) is two blocks: the object (its type's basic size,
    # asked of this very interpreter) and a buffer of n + 1 bytes (the NUL)
    basic = int(subprocess.run([exe, "-c", "print(bytearray.__basicsize__)"],
                               capture_output=True, text=True).stdout)
    for name, n in (("alloc_1", 1), ("alloc_7", 7), ("alloc_100", 100)):
        r = row_at(doc, KNOWN, MK[name])
        check(r is not None and r["live"]["count"] == 4 and
              r["live"]["bytes"] == 2 * (n * MiB + 1 + basic) and
              r["function"] == name,
              "%s: known: 2 x bytearray(%d MiB) live at %s:%d" %
              (label, n, os.path.basename(KNOWN), MK[name]),
              r and {k: r[k] for k in ("function", "line", "live")})
    r = row_at(doc, KNOWN, MK["objects"])
    check(r is not None and r["live"]["count"] >= 2 * 50000 and
          r["live"]["bytes"] >= 2 * 50000 * 16,
          "%s: known: 2 x 50000 objects live at the list line" % label,
          r and r["live"])


def run_to_done(label, exe, script, what, cap, *opts, verbose=False,
                settle=0.0):
    """Attach, let the script run ('go' ... 'DONE'), wait `settle` seconds,
    stop tracking (SIGINT): the Attach, or None when a step failed
    (reported)"""
    with Target(exe, script) as t:
        a = tracked_round(t, opts, cap, label, what, timeout=60,
                          verbose=verbose, settle=settle)
        if a:
            t.proc.stdin.write(b"quit\n")
            t.proc.stdin.flush()
    return a


def short_lived(label, exe, tmp, every):
    mode = "every-event" if every else "default"
    cap = os.path.join(tmp, "short-%s-%s.cap" % (label, mode))
    n, m = 200000, 30000
    a = run_to_done(label, exe, "short_lived.py", "short (%s)" % mode, cap,
                    *(["--every-event"] if every else []), verbose=True)
    if not a:
        return
    got = re.search(r"(\d+) of them TEMP holding (\d+) short-lived",
                    a.stderr)
    pairs = int(got.group(2)) if got else -1
    doc = report_json(cap, "--view", "total", "--group", "line", "--top",
                      "1000")
    if every:
        check(pairs == 0 and not doc["totals"]["aggregated"],
              "%s: short (%s): every block an event, none counted as a "
              "TEMP pair" % (label, mode), a.stderr[-400:])
    else:
        check(doc["totals"]["aggregated"] and
              doc["totals"]["events"] < n / 10,
              "%s: short (%s): aggregated: %d events in the capture for "
              "%d allocations" % (label, mode, doc["totals"]["events"],
                                  doc["totals"]["allocations"]),
              a.stderr[-400:])
    r = row_at(doc, SHORT, MS["temp"])
    check(r is not None and r["total"]["count"] >= n and
          r["temporary"]["count"] >= n and
          r["live"]["bytes"] <= 64 * 1024,
          "%s: short (%s): %d temporaries allocated at their line, "
          "temporary, none live" % (label, mode, n),
          r and {k: r[k] for k in ("total", "temporary", "live")})
    # the same program, the same figures whichever way the payload sent
    # them: totals exactly, temporaries (window 1 and 3) within 1%
    key = (label, "temp")
    figs = [r and r["total"]["count"], r and r["total"]["bytes"],
            r and r["temporary"]["count"]]
    w3 = row_at(report_json(cap, "--view", "temporary", "--group", "line",
                            "--temporary-window", "3", "--top", "1000"),
                SHORT, MS["temp"])
    figs.append(w3 and w3["temporary"]["count"])
    if not every:
        SEEN[key] = figs
    elif key in SEEN:
        d = SEEN[key]
        check(d[0] == figs[0] and d[1] == figs[1] and
              all(abs(d[i] - figs[i]) <= 0.01 * max(figs[i], 1)
                  for i in (2, 3)),
              "%s: short: totals and temporaries agree with and without "
              "--every-event" % label, {"default": d, "every": figs})
    r = row_at(doc, SHORT, MS["kept"])
    check(r is not None and m <= r["live"]["count"] <= m + 4 and
          r["live"]["bytes"] >= m * 40,
          "%s: short (%s): %d kept strings live at their line" %
          (label, mode, m), r and {k: r[k] for k in ("total", "live")})
    check(doc["complete"] and doc["totals"]["lost_records"] == 0,
          "%s: short (%s): capture complete, nothing lost" % (label, mode),
          doc["totals"])


def callers(label, exe, tmp):
    cap = os.path.join(tmp, "callers-%s.cap" % label)
    if not run_to_done(label, exe, "callers.py", "callers", cap):
        return
    doc = report_json(cap, "--view", "total", "--group", "stack", "--top",
                      "100000")
    n = 20000
    counts = {}  # (helper line, call site line) -> allocations
    for r in doc["rows"]:
        st = r["stack"]
        if not st or st[0]["file"] != CALLERS or st[0]["function"] not in (
                "make_a", "make_b"):
            continue
        site = (st[1]["line"] if len(st) > 1 and st[1]["file"] == CALLERS
                and st[1]["function"] == "loop" else None)
        key = (st[0]["line"], site)
        counts[key] = counts.get(key, 0) + r["total"]["count"]

    def c(helper, site):
        return counts.get((MC[helper], MC[site] if site else None), 0)

    check(c("a_temp", "site1") >= n and
          c("a_temp", "site1") == c("a_temp", "site2"),
          "%s: callers: the same calls through two sites count the same "
          "(%d, %d)" % (label, c("a_temp", "site1"), c("a_temp", "site2")))
    check(0.4 * c("a_temp", "site1") <= c("a_temp", "site3") <=
          0.6 * c("a_temp", "site1") and c("b_temp", "site3") >= n // 2,
          "%s: callers: the two helpers taking turns at one site each get "
          "their half (%d, %d)" % (label, c("a_temp", "site3"),
                                   c("b_temp", "site3")))
    check(c("a_kept", "site1") >= n and c("a_kept", "site2") >= n and
          c("b_kept", "site3") >= n // 2,
          "%s: callers: the kept blocks under their sites" % label,
          {"%s@%s" % k: v for k, v in counts.items()})
    wrong = {k: v for k, v in counts.items()
             if k[1] not in (MC["site1"], MC["site2"], MC["site3"]) or
             (k[0] in (MC["b_temp"], MC["b_kept"]) and k[1] != MC["site3"])}
    check(not wrong, "%s: callers: nothing under a site its helper was "
          "never called from" % label, wrong)


def main():
    tmp = tempfile.mkdtemp(prefix="memattach-e2e-")
    for label, exe in interpreters():
        try:
            growth(label, exe, tmp)
            known_sizes(label, exe, tmp)
            short_lived(label, exe, tmp, every=False)
            callers(label, exe, tmp)
            short_lived(label, exe, tmp, every=True)
        except Exception as e:
            check(False, "%s: ran without error" % label, repr(e))
    finish()


if __name__ == "__main__":
    main()
