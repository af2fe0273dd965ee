# SPDX-License-Identifier: MIT
"""Line table test vectors from the running interpreter (3.8 to 3.13).

Compiles a set of tricky functions (and a few stdlib modules) and prints,
for every code object found recursively in co_consts:

    V <sys.hexversion in hex>                       (once, first line)
    C <co_firstlineno> <line table hex> <lines> <name>

where the line table is co_lnotab (<= 3.9) or co_linetable (3.10+), and
<lines> is a comma-separated list of the line the interpreter itself gives
for each 2-byte offset of the bytecode (offset 0, 2, 4, ...): for 3.8/3.9
the line of the last dis.findlinestarts() start <= offset, for 3.10+ what
co_lines() says (None -> -1).  An offset co_lines() does not cover is "x"
(not checked).  Must stay valid syntax for Python 3.8.
"""

import dis
import sys

PAD = "\n" * 310  # pushes the first line of some functions past 300


def tricky_source():
    parts = []
    parts.append(PAD)
    # A long function: line jumps > 127 and > 255 forward, and a loop whose
    # body spans > 127 lines so that the jump back is a large negative delta.
    body = ["def long_function(n):", "    total = 0", "    i = 0",
            "    while i < n:"]
    for k in range(150):
        body.append("        total += %d * i" % k)
    body.append("        i += 1")
    body.append("    for j in range(n):")
    body.extend(["" for _ in range(140)])
    body.append("        total -= j")
    body.extend(["" for _ in range(300)])
    body.append("    return total")
    parts.append("\n".join(body))
    # Many bytes on one line: byte increments > 255 in co_lnotab
    parts.append("def wide_line(a):\n    return (" +
                 ", ".join("a + %d" % k for k in range(200)) + ")\n")
    # Columns >= 128 force the long form in 3.11+
    parts.append("def wide_columns(a, b):\n    x = (" + " " * 200 +
                 "a + b)\n    return x\n")
    parts.append('''
def multi_line(a, b,
               c):
    x = foo(a,
            b,

            c)
    y = [a
         for a in b
         if a]
    return (x +
            y
            -
            1)


@decorator_one
@decorator_two(
    1,
    2)
def decorated(x):
    return x


def loops(n):
    r = []
    for i in range(n):
        if i % 2:
            continue
        while i > 0:
            i -= 1
            if i == 3:
                break
        else:
            r.append(i)
    return r


def exceptions(f):
    try:
        f()
    except ValueError as e:
        print(e)
    except (TypeError, KeyError):
        pass
    else:
        return 1
    finally:
        print("done")
    with open(f) as a, \\
            open(f) as b:
        return a.read() + b.read()


def comprehensions(xs):
    a = [x * 2 for x in xs if x]
    b = {x: y for x, y in zip(xs,
                               xs)}
    c = {x for x in xs}
    d = (x for x in xs)
    e = lambda q: (q +
                   1)
    return a, b, c, d, e


def generator(n):
    for i in range(n):
        yield i
        yield from range(i)


async def coroutine(x):
    async with x as y:
        async for z in y:
            await z


class Klass:
    attr = 1

    def method(self):
        def inner():
            return self
        return inner

    @property
    def prop(self):
        return (
            self.attr)


def nested_blocks(x):
    if x:
        if x > 1:
            if x > 2:
                return 3
            return 2
        return 1
    return 0


def empty():
    pass


def only_docstring():
    """Just a docstring"""
''')
    return "\n".join(parts)


MATCH_SOURCE = '''
def matcher(p):
    match p:
        case (x, y):
            return x
        case {"k": v}:
            return v
        case _:
            return None
'''


def expected_lines(code):
    n = len(code.co_code) // 2
    if sys.version_info < (3, 10):
        starts = list(dis.findlinestarts(code))
        out = []
        for k in range(n):
            off = 2 * k
            line = code.co_firstlineno
            for s, ln in starts:
                if s <= off:
                    line = ln
            out.append(str(line))
        return out
    out = ["x"] * n
    for start, end, line in code.co_lines():
        for off in range(start, end, 2):
            if 0 <= off // 2 < n:
                out[off // 2] = str(-1 if line is None else line)
    return out


def walk(code, emit):
    if sys.version_info < (3, 10):
        table = code.co_lnotab
    else:
        table = code.co_linetable
    name = getattr(code, "co_qualname", code.co_name)
    emit("C %d %s %s %s" % (code.co_firstlineno, table.hex() or "-",
                            ",".join(expected_lines(code)) or "-",
                            name.replace(" ", "_")))
    for c in code.co_consts:
        if hasattr(c, "co_code"):
            walk(c, emit)


def main():
    out = sys.stdout
    out.write("V %x\n" % sys.hexversion)

    def emit(s):
        out.write(s + "\n")

    sources = [("<tricky>", tricky_source())]
    if sys.version_info >= (3, 10):
        sources.append(("<match>", PAD + MATCH_SOURCE))
    # Real-world code: a few large stdlib modules, compiled by this very
    # interpreter (not imported, so nothing runs).
    for mod in ("argparse", "dis", "inspect", "typing"):
        path = getattr(__import__(mod), "__file__", None)
        if path and path.endswith(".py"):
            with open(path, encoding="utf-8") as f:
                sources.append((path, f.read()))
    for name, src in sources:
        walk(compile(src, name, "exec"), emit)


if __name__ == "__main__":
    main()
