"""memattach's live figures per line against tracemalloc's, by hand.

    python3 bench/oracle.py --python EXE [--script PATH] [--order first|later]
                            [--top N] [--build DIR]

Runs e2e/test_oracle's comparison (its checks and its tolerances) on one
interpreter, with a work script of the same protocol as
tests/targets/stdlib_work.py (the default; bench/thirdparty_work.py is work
from third-party packages), and prints the lines where the two differ most.
Results: docs/performance.md, "Checked against tracemalloc".
"""
import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--script",
                    default=os.path.join(SRC, "tests/targets/stdlib_work.py"))
    ap.add_argument("--order", choices=("first", "later"), action="append")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    args = ap.parse_args()
    os.environ.setdefault("MEMATTACH", os.path.join(args.build, "memattach"))
    import ma_test
    import test_oracle as T
    T.set_script(os.path.abspath(args.script))
    T.MIN_BIG = 1
    zero = (0, 0)
    with tempfile.TemporaryDirectory() as tmp:
        for order in args.order or ["first", "later"]:
            T.run("oracle", args.python, order, [], tmp)
            tm = T.tracemalloc_lines(
                os.path.join(tmp, "tm-oracle-%s.txt" % order))
            ma = T.memattach_lines(os.path.join(tmp, "oracle-%s.cap" % order))
            print("%s: the lines where the two differ most" % order)
            for k in sorted((k for k in set(tm) | set(ma) if T.of_work(k)),
                            key=lambda k: -abs(tm.get(k, zero)[0] -
                                               ma.get(k, zero)[0]))[:args.top]:
                print("  %-64s tracemalloc %9d %7d  memattach %9d %7d" %
                      (k[-64:], *tm.get(k, zero), *ma.get(k, zero)))
    ma_test.finish()


if __name__ == "__main__":
    main()
