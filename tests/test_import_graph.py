"""No import circle anywhere in src/sopcorr/, counting imports inside functions, and the layering
issue 12 asks for: evaluate/ reaches networks and matching algorithms only through matchers/
(dense SIFT excepted). The graph is read from every module's source with ``ast``."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = "sopcorr"


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted((SRC / PKG).rglob("*.py")):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _is_package(name: str, mods: dict[str, Path]) -> bool:
    return name in mods and mods[name].name == "__init__.py"


def _resolve(node: ast.ImportFrom, module: str, mods) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if _is_package(module, mods) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(packages: bool = True) -> dict[str, set[str]]:
    """module -> the sopcorr modules it imports (module-level or inside functions), plus (with
    ``packages``) the packages whose __init__ such an import runs (those not above the
    importing module)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node, mod, mods)
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.add(sub if sub in mods else base)
        own = set()
        parts = mod.split(".")
        for k in range(1, len(parts) + 1):
            own.add(".".join(parts[:k]))
        for t in targets:
            if t not in mods:
                continue
            tp = t.split(".")
            for k in range(1, len(tp) + 1):
                anc = ".".join(tp[:k])
                if anc in mods and (anc == t or (packages and anc not in own)) and anc != mod:
                    graph[mod].add(anc)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_reader_sees_imports_inside_functions_and_circles():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(g) == [["a", "b", "c"]]
    graph = import_graph()
    # an import inside a function (matchers.methods builds its matchers lazily)
    assert "sopcorr.matchers.pseudo" in graph["sopcorr.matchers.methods"]
    assert "sopcorr.flow.geometric" in graph["sopcorr.matchers.geometric"]


def test_no_import_circle_in_sopcorr():
    assert find_cycles(import_graph()) == []


def test_evaluate_reaches_networks_and_matching_only_through_matchers():
    allowed = {"sopcorr.flow.dsift"}          # shared descriptor functions may be imported directly
    forbidden = ("sopcorr.flow", "sopcorr.siamese")
    bad = []
    for mod, deps in import_graph(packages=False).items():
        if not mod.startswith("sopcorr.evaluate"):
            continue
        for d in deps:
            if d.startswith(forbidden) and d not in allowed:
                bad.append(f"{mod} -> {d}")
    assert bad == []
