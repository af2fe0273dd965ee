"""bench/oracle.py's third-party work: tests/targets/stdlib_work.py's
protocol and harness (argv OUT ORDER; READY, 'go', DONE, a last line),
with work from packages a user's program would have: networkx,
jsonschema, pydantic (its core is Rust), jinja2, flask's test client,
libcst (a Rust parser), pygments, sympy and PyYAML.  Not in the suite:
Debian's python3 does not carry them; run it with an interpreter that
does (pip install networkx jsonschema pydantic jinja2 flask libcst
pygments sympy pyyaml).
"""
import os
import sys
import threading

import flask
import jinja2
import jsonschema
import libcst
import networkx as nx
import pydantic
import pygments
import pygments.formatters
import pygments.lexers
import sympy
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "tests", "targets"))
from stdlib_work import main  # noqa: E402 (the harness)

KEEP = []
SRC = {}


def load():
    with open(os.path.join(os.path.dirname(os.__file__), "ast.py")) as f:
        SRC["ast"] = f.read()


def graphs():
    g = nx.gnm_random_graph(3000, 12000, seed=1)
    pr = nx.betweenness_centrality(g, k=50, seed=1)
    sp = dict(nx.single_source_shortest_path_length(g, 0))
    return g, pr, sp


def schemas():
    schema = {"type": "array", "items": {"type": "object", "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["id", "name"]}}
    doc = [{"id": i, "name": "n%d" % i, "tags": ["a", "b"]} for i in range(1500)]
    jsonschema.validate(doc, schema)
    return doc


class Item(pydantic.BaseModel):
    id: int
    name: str
    tags: list[str]


def models():
    return [Item(id=i, name="n%d" % i, tags=["x", "y"]) for i in range(5000)]


def templates():
    t = jinja2.Template("{% for r in rows %}<tr><td>{{ r.id }}</td><td>{{ r.name|upper }}</td></tr>{% endfor %}")
    return [t.render(rows=[{"id": i, "name": "n%d" % i} for i in range(300)]) for _ in range(20)]


app = flask.Flask("w")


@app.route("/item/<int:i>")
def item(i):
    return flask.jsonify({"id": i, "v": list(range(i % 50))})


def requests_():
    c = app.test_client()
    return [c.get("/item/%d" % i).get_data() for i in range(300)]


def cst():
    return libcst.parse_module(SRC["ast"][:40000])


def highlight():
    return pygments.highlight(SRC["ast"], pygments.lexers.PythonLexer(),
                              pygments.formatters.HtmlFormatter())


def algebra():
    x, y = sympy.symbols("x y")
    return sympy.expand((x + y + 1) ** 12)


def worker():
    KEEP.append(graphs())
    KEEP.append(requests_())


def work():
    t = threading.Thread(target=worker, name="worker")
    t.start()
    KEEP.append(schemas())
    KEEP.append(models())
    KEEP.append(templates())
    KEEP.append(cst())
    KEEP.append(highlight())
    KEEP.append(algebra())
    KEEP.append(yaml.safe_load(yaml.safe_dump({"k%d" % i: [i, "v"] for i in range(2000)})))
    t.join()


if __name__ == "__main__":
    main(load, work, KEEP)
