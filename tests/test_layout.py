"""The package's layout: no import cycles (between modules, or between the stage folders), and no
production module imports the test oracles of ``eyefast.reference``."""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "eyefast")

#: the one production user of the references: the ``ops_backend: reference`` op set
ORACLE_USERS = {"eyefast.scene.backend"}


def _modules() -> dict[str, str]:
    """eyefast module name -> file."""
    out = {}
    for d, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), os.path.dirname(ROOT))[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                out[".".join(rel)] = os.path.join(d, f)
    return out


def _imports(name: str, path: str, modules) -> set[str]:
    """The eyefast modules ``name`` imports (anywhere in the file, lazy imports too)."""
    is_pkg = path.endswith("__init__.py")
    pkg = name if is_pkg else name.rpartition(".")[0]
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import sub` imports the submodule when there is one
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            if t.startswith("eyefast"):
                while t and t not in modules:  # an attribute of a module: the module
                    t = t.rpartition(".")[0]
                if t and t != name:
                    found.add(t)
    return found


def _graph():
    mods = _modules()
    return mods, {m: _imports(m, p, mods) for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _is_package_parent(a: str, b: str) -> bool:
    """``a`` is a package containing ``b`` (importing ``b`` runs ``a/__init__``: not a dependency)."""
    return b.startswith(a + ".")


def test_the_graph_sees_the_imports():
    mods, g = _graph()
    assert "eyefast.training.trainer" in mods and "eyefast.scene.model" in mods
    assert "eyefast.scene.model" in g["eyefast.training.trainer"]
    assert "eyefast.core.eyes" in g["eyefast.scene.model"]  # relative imports (..core.eyes) resolve
    assert "eyefast.core.ops" in g["eyefast.geometry.mesh"]  # `from ..core import ops` is the module


def test_no_import_cycles_between_modules():
    _, g = _graph()
    g = {m: {t for t in ts if not _is_package_parent(t, m)} for m, ts in g.items()}
    assert _cycles(g) == []


def test_no_import_cycles_between_stage_folders():
    """The folders of the data flow (core, data, scene, geometry, training, evaluation, export, cli, and
    the top-level modules run and checkpoint) import each other without cycles."""
    _, g = _graph()

    def stage(m):
        parts = m.split(".")
        return parts[1] if len(parts) > 1 else "eyefast"

    sg: dict[str, set[str]] = {}
    for m, ts in g.items():
        if stage(m) in ("eyefast", "__main__", "train", "evaluate", "synth", "tools") or m.endswith(".__main__"):
            continue  # the package's lazy names and the `python -m eyefast.X` entry points
        sg.setdefault(stage(m), set()).update(stage(t) for t in ts if stage(t) not in (stage(m), "eyefast"))
    assert _cycles(sg) == [], {k: sorted(v) for k, v in sg.items()}


@pytest.mark.parametrize("who", ["production"])
def test_production_code_does_not_import_the_test_oracles(who):
    _, g = _graph()
    bad = {m: sorted(t for t in ts if t.startswith("eyefast.reference"))
           for m, ts in g.items() if not m.startswith("eyefast.reference") and m not in ORACLE_USERS}
    assert {m: ts for m, ts in bad.items() if ts} == {}


def test_a_cycle_and_an_oracle_import_would_be_found():
    """The checks above can fail: a made-up graph with a cycle, and a production import of an oracle."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    mods = {"eyefast.scene.x": "", "eyefast.reference.eye": ""}
    tree_src = "from ..reference.eye import trace_eyes\n"
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(tree_src)
    try:
        assert _imports("eyefast.scene.x", fh.name, mods) == {"eyefast.reference.eye"}
    finally:
        os.remove(fh.name)


def test_only_the_cli_imports_prepare():
    """``eyefast.prepare`` (from a video to a capture) is a leaf: it may use data/ and core/, and only the
    ``eyefast`` command (cli/) imports it."""
    _, g = _graph()
    users = {m for m, ts in g.items() if any(t == "eyefast.prepare" or t.startswith("eyefast.prepare.") for t in ts)}
    outside = {m for m in users if not (m == "eyefast.prepare" or m.startswith("eyefast.prepare.") or m.startswith("eyefast.cli"))}
    assert outside == set(), outside
    allowed = ("eyefast.prepare", "eyefast.data", "eyefast.core", "eyefast.cli")
    used = {t for m, ts in g.items() if m.startswith("eyefast.prepare") and not m.endswith(".__main__") for t in ts}
    assert {t for t in used if not t.startswith(allowed)} == set()
