"""The package's import graph: no cycle between modules and no arrow against the documented flow.

Every ``import`` in the package is read from the source (module level and inside functions alike, ``TYPE_CHECKING``
blocks included), so a lazy import cannot hide a cycle. The rooms and their order are the ones
``docs/architecture.md`` shows: a module may import its own room and the rooms listed before it, never a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "contrastive_mer"

#: the documented flow, earliest room first (docs/architecture.md, "Rooms and arrows")
ROOMS = ["core", "encoders", "data", "model", "store", "evaluation", "pretrain", "extract",
         "frontend", "workflows", "cli", "api"]
#: modules at the package root and the room each belongs to (the root holds what every stage shares;
#: ``experiment`` loads a config and checks it with every component it names, so it sits with the model)
ROOT_MODULES = {"errors": "core", "utils": "core", "config_paths": "core", "config": "core", "registry": "core",
                "distributed": "core", "fusion": "core", "configs": "core", "experiment": "model",
                "__init__": "api"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "api"
    if len(parts) == 2 and not (PACKAGE / parts[1]).is_dir():
        return ROOT_MODULES[parts[1]]
    return "core" if parts[1] == "configs" else parts[1]


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The package modules ``path`` imports anywhere in its body, resolved to module names in ``known``."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target.startswith("contrastive_mer") and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, name, known) - {"contrastive_mer"} for name, path in mods.items()}


def test_every_root_module_has_a_room():
    for name in modules():
        parts = name.split(".")
        if len(parts) == 2 and not (PACKAGE / parts[1]).is_dir():
            assert parts[1] in ROOT_MODULES, f"{name}: a module at the package root without a room in ROOT_MODULES"
        assert room(name) in ROOMS, f"{name}: room {room(name)!r} is not in the documented flow"


def test_no_arrow_against_the_flow():
    bad = [f"{src} ({room(src)}) imports {dst} ({room(dst)})" for src, dsts in graph().items() for dst in dsts
           if room(src) != "api" and ROOMS.index(room(dst)) > ROOMS.index(room(src))]
    assert not bad, "imports against the documented flow:\n" + "\n".join(sorted(bad))


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``edges`` as a list of nodes (first == last), or None; iterative DFS with colours."""
    colour = {n: 0 for n in edges}
    for start in sorted(edges):
        if colour[start]:
            continue
        stack = [(start, iter(sorted(edges[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(nxt, 2) == 1:
                return path[path.index(nxt):] + [nxt]
            elif colour.get(nxt) == 0:
                colour[nxt] = 1
                stack.append((nxt, iter(sorted(edges[nxt]))))
                path.append(nxt)
    return None


def test_no_import_cycle():
    # the lazy public API (``contrastive_mer/__init__``) maps names to modules; its arrows are not a cycle
    edges = {n: {d for d in ds if d != "contrastive_mer"} for n, ds in graph().items() if n != "contrastive_mer"}
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("edges, cyclic", [({"a": {"b"}, "b": {"c"}, "c": set()}, False),
                                           ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
                                           ({"a": {"a"}}, True)])
def test_cycle_finder_on_known_graphs(edges, cyclic):
    assert (find_cycle(edges) is not None) == cyclic


def test_relative_and_function_level_imports_are_seen(tmp_path):
    pkg = tmp_path / "contrastive_mer" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    src = pkg / "a.py"
    src.write_text("def f():\n    from . import b\n    from contrastive_mer.sub.c import x\n")
    known = {"contrastive_mer", "contrastive_mer.sub", "contrastive_mer.sub.a", "contrastive_mer.sub.b",
             "contrastive_mer.sub.c"}
    import tests.test_layout as layout

    old = layout.ROOT
    layout.ROOT = tmp_path
    try:
        assert imports_of(src, "contrastive_mer.sub.a", known) == {"contrastive_mer.sub", "contrastive_mer.sub.b",
                                                                     "contrastive_mer.sub.c"}
    finally:
        layout.ROOT = old


def test_architecture_doc_names_every_module():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    missing = [p.relative_to(PACKAGE).as_posix() for p in sorted(PACKAGE.rglob("*.py"))
               if f"`{p.relative_to(PACKAGE).as_posix()}`" not in doc]
    assert not missing, "docs/architecture.md does not name: " + ", ".join(missing)


def test_every_module_says_what_it_is():
    bare = [module_name(p) for p in sorted(PACKAGE.rglob("*.py")) if not ast.get_docstring(ast.parse(p.read_text()))]
    assert not bare, "modules without a docstring: " + ", ".join(bare)
