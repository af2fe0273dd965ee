"""Work done by code we did not write (the standard library), measured by
CPython's own tracemalloc at the same time as by memattach (test_oracle.py).

argv: OUT ORDER.  ORDER 'first': tracemalloc starts before READY, so that
memattach's allocator wrappers go on top of tracemalloc's; 'later':
tracemalloc starts after 'go', on top of memattach's.

Every module the work uses is imported before READY: an import during the
work would charge code objects to marshal.loads, where CPython's tuple free
list makes the two tools disagree by design (tracemalloc re-charges a
reused tuple to its new line, memattach charges the block to the allocator
call that made it: docs/limits.md).

Prints READY; at 'go' clears tracemalloc's traces, runs the work (the main
thread and one worker thread at once), keeps its results, collects the
garbage, turns the collector off (nothing is freed by it after the
snapshot), writes tracemalloc's live bytes and blocks per line to OUT as
'FILE:LINE BYTES COUNT' lines, and prints DONE; ends at the next line.
"""
import ast
import collections
import csv
import difflib
import email
import email.feedparser
import email.parser
import email.policy
import gc
import io
import json
import os
import re
import sys
import textwrap
import threading
import tracemalloc
import xml.etree.ElementTree as ET

KEEP = []
SRC = {}


def load():
    base = os.path.dirname(os.__file__)
    for name in ("ast", "json/decoder", "difflib", "textwrap", "csv",
                 "string"):
        with open(os.path.join(base, name + ".py")) as f:
            SRC[name] = f.read()


def parse_sources():
    return [ast.parse(text, name) for name, text in SRC.items()]


def json_round_trip():
    doc = {"k%d" % i: {"a": [i, i * 2.5, "x" * (i % 50)], "b": None,
                       "c": {"n": i}}
           for i in range(3000)}
    return json.loads(json.dumps(doc))


def xml_round_trip():
    root = ET.Element("root")
    for i in range(2000):
        e = ET.SubElement(root, "item", id=str(i))
        e.text = "t%d" % i
    return ET.fromstring(ET.tostring(root))


def mails():
    msg = ("From: a@example.com\nTo: b@example.com\nSubject: s\n\n" +
           "body line\n" * 500)
    return [email.message_from_string(msg) for _ in range(50)]


def table():
    buf = io.StringIO()
    w = csv.writer(buf)
    for i in range(3000):
        w.writerow([i, "n%d" % i, i / 3])
    return list(csv.reader(io.StringIO(buf.getvalue())))


def text_work():
    a = SRC["difflib"].splitlines()
    b = [line.replace("a", "b") for line in a]
    return (list(difflib.unified_diff(a, b)),
            [textwrap.fill(line * 3, 30) for line in a[:500]],
            collections.Counter(re.findall(r"\w+", SRC["ast"])))


def worker():
    KEEP.append(json_round_trip())
    KEEP.append(table())


def work():
    t = threading.Thread(target=worker, name="worker")
    t.start()
    KEEP.append(parse_sources())
    KEEP.append(xml_round_trip())
    KEEP.append(mails())
    KEEP.append(text_work())
    t.join()


def report(path):
    snap = tracemalloc.take_snapshot()
    out = []
    for st in snap.statistics("lineno"):
        f = st.traceback[0]
        out.append("%s:%d %d %d" % (f.filename, f.lineno, st.size, st.count))
    del snap, st, f
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, "\n".join(out).encode())
    os.close(fd)


def main(load=load, work=work, keep=KEEP):
    """The harness, for this work or another's (bench/thirdparty_work.py)"""
    out, order = sys.argv[1], sys.argv[2]
    if order == "first":
        tracemalloc.start(1)
    load()
    # the work once untracked: every lazy import and cache of the
    # libraries (re's compiled patterns, email's policies) is made now
    work()
    keep.clear()
    gc.collect()
    print("READY", flush=True)
    sys.stdin.readline()
    if order == "first":
        tracemalloc.clear_traces()
    else:
        tracemalloc.start(1)
    work()
    gc.collect()
    gc.disable()
    report(out)
    print("DONE", flush=True)
    sys.stdin.readline()


if __name__ == "__main__":
    main()
