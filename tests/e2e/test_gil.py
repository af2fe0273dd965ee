"""A process whose main thread holds the GIL inside a C call (catastrophic
regex backtracking, the classic hung notebook): `memattach stacks` works
without the GIL, shows the regex line, marks the main thread as the GIL
holder, and shows the other thread waiting."""
import json
import os
import time

import subprocess

from ma_test import (TARGETS, Target, check, finish, interpreters, line_of,
                     marks, memattach, py_version, stacks_json,
                     thread_by_tid)

SCRIPT = os.path.join(TARGETS, "gil_regex.py")
M = marks(SCRIPT)


def main():
    for label, exe in interpreters():
        # re.match is Python code calling the C matcher: its frame is the
        # innermost one, at the line of its own source that calls it.
        re_file = subprocess.run([exe, "-c", "import re; print(re.__file__)"],
                                 capture_output=True, text=True).stdout.strip()
        re_line = line_of(re_file, "match", "_compile(pattern, flags).match(")
        try:
            with Target(exe, "gil_regex.py") as t:
                _, tmain, twait = t.ready_line.split()
                time.sleep(0.3)  # well inside re.match by now
                doc = stacks_json(t.pid)
                main_t = thread_by_tid(doc, int(tmain))
                wait_t = thread_by_tid(doc, int(twait))
                got = [(f["function"], f["file"], f["line"])
                       for f in main_t["frames"]]
                check(got == [("match", re_file, re_line),
                              ("hog", SCRIPT, M["regex"]),
                              ("<module>", SCRIPT, M["module_calls_hog"])],
                      "%s: main thread is at the regex line" % label, got)
                check(main_t["holds_gil"],
                      "%s: main thread holds the GIL" % label)
                check(not wait_t["holds_gil"] and wait_t["frames"] and
                      wait_t["frames"][0]["function"] == "waiter" and
                      wait_t["frames"][0]["line"] == M["waiter_sleep"],
                      "%s: waiter thread seen, not holding the GIL" % label,
                      wait_t)
                check(t.alive(), "%s: target still running" % label)
                # The census needs no GIL either: it reads a copy
                rc, out, err = memattach("heap", "-f", "json", "-q", t.pid,
                                         timeout=120)
                doc = json.loads(out) if rc == 0 else {}
                big = [r for r in doc.get("largest", [])
                       if r["path"] == "__main__.BALLAST -> bytearray"]
                check(rc == 0 and doc["objects"] > 1000 and big and
                      big[0]["size"] >= 16 << 20,
                      "%s: heap census with the GIL held in C finds "
                      "__main__.BALLAST" % label, err[-300:])
                check(t.alive() and stacks_json(t.pid)["threads"],
                      "%s: target still running after the census" % label)
        except Exception as e:
            check(False, "%s: ran without error" % label, repr(e))
    finish()


if __name__ == "__main__":
    main()
