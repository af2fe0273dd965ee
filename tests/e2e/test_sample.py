"""Sampled tracking (`attach --sample BYTES`) gives unbiased estimates.

On one process doing the same work twice (tests/targets/sample_sites.py:
sites holding about 50, 20, 10, 5, 2 and 1% of 8.3 GB allocated per round,
in 1 MiB and 64 KiB buffers and 233- and 483-byte pymalloc objects), once
tracked exactly (the default) and once with --sample 32K: the estimate of
every site holding at least 1% of the bytes, allocated and (for the kept
site) still live, is within 10% of the exact figure; no site holding 5% or
more is missing; the attach summary and every report format say that the
figures are estimates.  And the usage errors of --sample, and --sample on
two processes at once (both tracked).

The mean is 32 KiB rather than the advised 512 KiB so that 8 GB give the
1% site enough samples.  The standard error of a site's estimate is
sqrt(sum over its blocks of s^2 (1 - p) / p), p = 1 - exp(-s / mean): for
small blocks about sqrt(mean * bytes), i.e. a relative error of
sqrt(32768 / 86 MB) = 1.95% for the 1% site (483-byte objects), 1.4% for
the 2% site, 0.7% for the 10% one; for 64 KiB buffers (p = 0.865) 0.8%
for the 5% site; 1 MiB buffers are sampled with p = 1 - e^-32, exactly.
10% is then at least 5.1 standard errors: a site misses it with a
probability below 4e-7 per run (Gaussian tail; the estimate sums
thousands of independent samples).  The test computes each site's
standard error from the exact capture (its mean block size) and checks
that 10% is at least 4.5 of them, so that a change of the work that makes
the test weak fails it instead.
"""
import gzip
import json
import math
import os
import tempfile

from ma_test import (TARGETS, Target, check, finish, interpreters, marks,
                     memattach, report_json, tracked_round)

SCRIPT = os.path.join(TARGETS, "sample_sites.py")
MEAN = 32 << 10
SITES = marks(SCRIPT)


def by_line(cap, view):
    doc = report_json(cap, "--group", "line", "--top", "0", "--view", view)
    rows = {}
    for r in doc["rows"]:
        if r["file"] == SCRIPT:
            for name, line in SITES.items():
                if r["line"] == line:
                    rows[name] = r
    return doc, rows


def rel_se(total_bytes, count):
    """Relative standard error of a site's estimate, from its mean size"""
    if not count:
        return 0.0
    s = total_bytes / count
    p = -math.expm1(-s / MEAN)
    return math.sqrt(count * s * s * (1 - p) / p) / total_bytes


def labels(label, cap, attach):
    check("ESTIMATES" in attach.stdout and "estimate" in attach.stdout,
          "%s: the attach summary says its figures are estimates" % label,
          attach.stdout[:300])
    rc, out, err = memattach("report", "--color", "never", cap)
    check(rc == 0 and "ESTIMATES" in out.split("\n\n")[0],
          "%s: report text: the header says estimates" % label,
          out[:400] + err)
    doc = report_json(cap)
    check(doc.get("sampled") and doc["sampled"]["estimates"] is True and
          doc["sampled"]["mean_bytes"] == MEAN,
          "%s: report json: sampled.estimates, sampled.mean_bytes" % label,
          doc.get("sampled"))
    for fmt, ext in (("html", ".html"), ("pprof", ".pb.gz"),
                     ("speedscope", ".json")):
        out = cap + ext
        rc, _, err = memattach("report", "-f", fmt, "-o", out, cap)
        data = b""
        if rc == 0:
            with open(out, "rb") as f:
                data = f.read()
            if fmt == "pprof":
                data = gzip.decompress(data)
        check(rc == 0 and b"ESTIMATES" in data,
              "%s: report %s says estimates" % (label, fmt), err)
        if fmt == "html":
            # the page says the temporary view is not known (it showed
            # "temporary 0 B")
            check(b'"unknown":{"peak":false,"temporary":true}' in data,
                  "%s: report html marks the temporary view unknown" %
                  label)
    # no temporary figure (a sampled block's distance to its free is not
    # known): said, null, empty, refused; the old binary showed 0s
    check("temporary not known (sampled)" in out_text(cap) and
          doc["sums"]["temporary"] is None and
          doc["totals"]["temporary_bytes"] is None and
          all(r["temporary"] is None for r in doc["rows"]),
          "%s: the temporary view is said not known (text, json)" % label,
          doc["sums"])
    rc, csv, err = memattach("report", "-f", "csv", cap)
    lines = csv.splitlines()
    check(rc == 0 and len(lines) > 1 and
          all(x.split(",")[13:15] == ["", ""] for x in lines[1:2]),
          "%s: csv: the temporary columns are empty" % label, lines[:2])
    rc, _, err = memattach("report", "-f", "collapsed", "--view",
                           "temporary", cap)
    check(rc == 2 and "not known" in err,
          "%s: -f collapsed --view temporary: refused, exit 2" % label,
          "exit %s: %s" % (rc, err))
    # speedscope has every view: refused for opening with one not known,
    # not for "showing that view alone"
    rc, _, err = memattach("report", "-f", "speedscope", "--view",
                           "temporary", "-o", cap + ".ss.json", cap)
    check(rc == 2 and "not known" in err and
          "opens with that view" in err,
          "%s: -f speedscope --view temporary: refused, exit 2, said why" %
          label, "exit %s: %s" % (rc, err))
    exact = report_json(cap.replace("sampled", "exact"))
    check(exact.get("sampled") is None,
          "%s: an exact capture's json says sampled: null" % label,
          exact.get("sampled"))
    # a diff of the exact capture with the sampled one says the sampled
    # side's figures are estimates (it said nothing: a count compared
    # with an estimate read as growth)
    ex = cap.replace("sampled", "exact")
    rc, out, err = memattach("report", "--diff", cap, ex, "--force")
    rc2, js, err2 = memattach("report", "--diff", cap, "-f", "json", ex,
                              "--force")
    d = json.loads(js) if rc2 == 0 else {}
    check(rc == 0 and "ESTIMATES: the after side is sampled" in out and
          d.get("before", {}).get("sampled_mean_bytes", 0) is None and
          d.get("after", {}).get("sampled_mean_bytes") == MEAN,
          "%s: report --diff with a sampled side says estimates (text, "
          "json)" % label, out[:400] + err + err2)


def out_text(cap):
    rc, out, _ = memattach("report", "--width", "300", "--color", "never",
                           cap)
    return out if rc == 0 else ""


def usage_errors():
    for args, what in ((["--sample", "0"], "a mean of 0"),
                       (["--sample", "2G"], "a mean above 1 GiB"),
                       (["--sample", "12Q"], "an unknown unit"),
                       (["--sample", "1M", "--every-event"],
                        "--sample with --every-event")):
        rc, out, err = memattach("attach", *args, str(os.getpid()))
        check(rc == 2 and "--sample" in err,
              "attach %s: refused with exit 2 (%s)" % (" ".join(args), what),
              "exit %d: %s" % (rc, err))


def several_processes(tmp, exe):
    """--sample on several PIDs: every process sampled (each one's payload
    is started with the mean, not only the first one's)"""
    with Target(exe, "churn.py") as a, Target(exe, "churn.py") as b:
        cap = os.path.join(tmp, "two.cap")
        rc, out, err = memattach("attach", "--sample", "512K", "-d", "1",
                                 "-o", cap, a.pid, b.pid, timeout=120)
        rows = {int(ln.split()[0]): ln.split()[2] for ln in out.splitlines()
                if ln.split() and ln.split()[0] in (str(a.pid), str(b.pid))}
        check(rc == 0 and rows == {a.pid: "tracked", b.pid: "tracked"},
              "attach --sample with two PIDs: both processes tracked",
              "exit %d, rows %s: %s" % (rc, rows, err.strip()[-300:]))
        # the progress lines on stderr say their figures are estimates
        # (they read as counts)
        prog = [ln for ln in err.splitlines() if "allocations," in ln]
        check(prog and all("ESTIMATES: " in ln for ln in prog),
              "attach --sample: the progress lines say ESTIMATES", prog[:2])


def main():
    tmp = tempfile.mkdtemp(prefix="memattach-sample-")
    usage_errors()
    several_processes(tmp, "/usr/bin/python3")
    first = True
    for label, exe in interpreters():
        caps, att = {}, {}
        with Target(exe, "sample_sites.py") as t:
            for mode, opts in (("exact", []),
                               ("sampled", ["--sample", "32K"])):
                cap = os.path.join(tmp, "%s-%s.cap" % (label, mode))
                a = tracked_round(t, opts, cap, label, mode, timeout=180)
                if a:
                    caps[mode], att[mode] = cap, a
            t.proc.stdin.write(b"quit\n")
            t.proc.stdin.flush()
        if len(caps) != 2:
            continue
        if first:
            labels(label, caps["sampled"], att["sampled"])
            first = False
        for view, sites in (("total", None), ("live", ["kept"])):
            de, exact = by_line(caps["exact"], view)
            ds, est = by_line(caps["sampled"], view)
            all_bytes = sum(r[view]["bytes"] for r in exact.values())
            bad, weak, seen = [], [], []
            for name in sites or sorted(exact):
                e = exact.get(name, {}).get(view, {"bytes": 0, "count": 0})
                share = e["bytes"] / max(all_bytes, 1)
                if share < 0.01 or name == "rare":
                    continue
                s = est.get(name, {}).get(view, {"bytes": 0})
                err = abs(s["bytes"] - e["bytes"]) / e["bytes"]
                se = rel_se(e["bytes"], e["count"])
                seen.append("%s %.1f%%: exact %d, estimate %d (%+.2f%%, "
                            "SE %.2f%%)" % (name, 100 * share, e["bytes"],
                                            s["bytes"], 100 * (s["bytes"] -
                                                               e["bytes"]) /
                                            e["bytes"], 100 * se))
                if share >= 0.05 and name not in est:
                    bad.append(name + " missing")
                elif err > 0.10:
                    bad.append("%s off by %.1f%%" % (name, 100 * err))
                if se * 4.5 > 0.10:
                    weak.append(name)
            want = 1 if sites else 6
            check(len(seen) >= want and not bad,
                  "%s: %s: every site with >= 1%% of the bytes estimated "
                  "within 10%%, none with >= 5%% missing" % (label, view),
                  "; ".join(bad + seen))
            print("    " + "\n    ".join(seen))
            check(not weak, "%s: %s: 10%% is >= 4.5 standard errors for "
                  "every site checked" % (label, view), weak)
    finish()


if __name__ == "__main__":
    main()
