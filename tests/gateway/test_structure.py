"""The gateway's modules form no import loop, and each one imports alone in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"


def modules() -> dict[str, Path]:
    return {f"gateway.{p.stem}": p for p in sorted(GATEWAY.glob("*.py")) if p.stem != "__init__"}


def imports_of(path: Path, names: set[str]) -> set[str]:
    """Every gateway module `path` imports, anywhere in it (under TYPE_CHECKING and in functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module in names:
                found.add(node.module)
            if node.module == "gateway":
                found |= {f"gateway.{a.name}" for a in node.names} & names
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names} & names
    return found


def test_no_import_loop_in_the_gateway():
    mods = modules()
    graph = nx.DiGraph()
    for name, path in mods.items():
        graph.add_node(name)
        graph.add_edges_from((name, other) for other in imports_of(path, set(mods)))
    assert graph.number_of_edges() > 20  # the walk found the imports
    assert list(nx.simple_cycles(graph)) == []


def test_each_gateway_module_imports_alone():
    """In one fresh interpreter, each module imported with no other gateway module loaded before it."""
    script = (
        "import importlib, sys\n"
        f"for name in {sorted(modules())!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'gateway' or m.startswith('gateway.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
