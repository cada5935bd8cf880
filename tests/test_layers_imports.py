"""The house rule of DEVELOPERS.md ("Floors"), checked on the code's own imports: every import, at module level
or inside a function, points to the same floor or one below; no import circle is larger than 3 files, and
none runs through the registry, the weights or the data layer."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "mivis"

# the floors, lowest first (a module takes the floor of its longest listed prefix); DEVELOPERS.md says the same
FLOORS = [
    ("ground", ["mivis", "mivis.paths", "mivis.params", "mivis.registry", "mivis.progress", "mivis.device",
                "mivis.threads", "mivis.weights"]),
    ("data", ["mivis.data"]),
    ("registry", ["mivis.runs", "mivis.uploads"]),
    # attacks' augment and losses import nothing of mivis: GAN training (priors) uses them too
    ("models", ["mivis.models", "mivis.surgery", "mivis.augment", "mivis.pretrained", "mivis.grid",
                "mivis.attacks.augment", "mivis.attacks.losses"]),
    ("defenses", ["mivis.defenses"]),
    ("classifiers", ["mivis.train", "mivis.sizing", "mivis.importing", "mivis.celeba"]),
    ("priors", ["mivis.priors", "mivis.classroom"]),
    ("judges", ["mivis.evaluation", "mivis.checks", "mivis.votes"]),
    ("attacks", ["mivis.attacks"]),
    ("analyses", ["mivis.analysis", "mivis.figures"]),
    ("sweeps", ["mivis.sweep", "mivis.report"]),
    ("jobs", ["mivis.jobs"]),
    ("doors", ["mivis.cli", "mivis.__main__", "mivis.ui", "mivis.api"]),
]

# imports that point up a floor, each with its reason (at most a few)
ALLOWED_UP = {
    # a self-check's default model: without a model, the RepVGG fusion check builds a timm repvgg_a0
    # classifier the way mivis does (pages/architecture.py and tests call it so); models uses surgery below
    ("mivis.surgery.repvgg", "mivis.models"),
}

# no circle may pass through these (the lowest floors: they must stand on their own)
NO_CIRCLE = ("mivis.runs", "mivis.weights", "mivis.data")


def modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _targets(mods: dict, cur: str, is_pkg: bool, node) -> list[str]:
    """The mivis modules an import statement loads (the most specific module it names)."""
    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None
    if isinstance(node, ast.Import):
        return [m for a in node.names if a.name.startswith("mivis") and (m := known(a.name))]
    if node.level:
        base = cur if is_pkg else cur.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        mod = base + ("." + node.module if node.module else "")
    else:
        mod = node.module or ""
    if not mod.startswith("mivis"):
        return []
    out = []
    for a in node.names:
        m = f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else known(mod)
        if m:
            out.append(m)
    return out


def import_graph() -> dict[str, dict[str, list[tuple[int, bool]]]]:
    """module -> imported module -> [(line, inside a function)], from every import statement in mivis/."""
    mods = modules()
    graph: dict[str, dict[str, list]] = {m: {} for m in mods}
    for m, f in mods.items():
        is_pkg = f.name == "__init__.py"

        def visit(node, in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    for t in _targets(mods, m, is_pkg, child):
                        if t != m:
                            graph[m].setdefault(t, []).append((child.lineno, inner))
                visit(child, inner)
        visit(ast.parse(f.read_text(encoding="utf-8")), False)
    return graph


def floor_of(module: str) -> int:
    best, floor = -1, None
    for i, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, floor = len(p), i
    assert floor is not None, f"{module} stands on no floor: add it to FLOORS here and in DEVELOPERS.md"
    return floor


def circles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter[0]; counter[0] += 1
        stack.append(root); on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1
                    stack.append(w); on.add(w)
                    work.append((w, iter(graph[w])))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_graph_is_read_from_the_code():
    g = import_graph()
    # a module-level and a function-level import the builder must see (the test is blind otherwise)
    assert any(not f for _, f in g["mivis.sweep.runner"]["mivis.sweep.steps"])
    assert any(f for _, f in g["mivis.jobs.builtin"]["mivis.train"])
    assert any(f for _, f in g["mivis.runs"]["mivis.weights"])
    # the circle finder finds a circle
    assert circles({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}, "d": {"a": []}}) == [["a", "b", "c"]]


def test_every_module_stands_on_a_floor_and_imports_only_its_floor_or_below():
    g = import_graph()
    up = []
    for src, targets in g.items():
        for dst, where in targets.items():
            if floor_of(dst) > floor_of(src) and (src, dst) not in ALLOWED_UP:
                kind = "in a function" if any(f for _, f in where) else "at module level"
                up.append(f"{src} (floor {FLOORS[floor_of(src)][0]}) imports {dst} (floor {FLOORS[floor_of(dst)][0]}) "
                          f"{kind}, line {where[0][0]}")
    assert not up, "imports pointing up a floor:\n" + "\n".join(up)
    assert len(ALLOWED_UP) <= 3
    for src, dst in ALLOWED_UP:  # an allowance that is no longer used is removed
        assert dst in g[src], f"{src} no longer imports {dst}: drop it from ALLOWED_UP"


def test_no_import_circle_larger_than_three_files_nor_through_the_low_floors():
    big = [c for c in circles(import_graph()) if len(c) > 3]
    assert not big, f"import circles larger than 3 files: {big}"
    low = [c for c in circles(import_graph()) if any(m == p or m.startswith(p + ".") for m in c for p in NO_CIRCLE)]
    assert not low, f"import circles through the registry, weights or data: {low}"
