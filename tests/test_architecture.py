"""The import graph keeps the architecture: read from the source with ``ast`` (every import,
also those inside functions and under TYPE_CHECKING), so a lazy import that breaks a rule
fails here as well.

- Layers: ``core`` imports no domain; ``coop`` and ``iot`` import only ``core``;
  ``shop.trace`` imports ``core``, ``coop`` and ``iot`` but never the rest of ``shop``;
  ``shop`` imports ``core``, ``coop``, ``iot`` and ``shop.trace``; ``app`` may import all.
- Nothing but the composition root (``app``) imports a view module (blueprints), except
  that a package's extra view module (``<part>_views``, adding routes to the package's
  blueprint) may import that package's ``views``.
- No import cycles between the project's modules (a package's ``__init__`` counts: it is
  imported before any of its modules).

That workers never import Flask is tested by running them (tests/iot/test_workers.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.config import PROJECT_ROOT

PACKAGES = ("core", "coop", "iot", "shop")
# layer -> the layers it may import (besides itself)
ALLOWED = {
    "core": set(),
    "coop": {"core"},
    "iot": {"core"},
    "shop.trace": {"core", "coop", "iot"},
    "shop": {"core", "coop", "iot", "shop.trace"},
    "app": {"core", "coop", "iot", "shop", "shop.trace"},
}
VIEW_NAMES = ("views", "admin_views", "staff_views", "webhook_views", "api", "production_views")


def layer(module: str) -> str:
    if module == "shop.trace" or module.startswith("shop.trace."):
        return "shop.trace"
    return module.split(".")[0]


def is_view(module: str) -> bool:
    name = module.rsplit(".", 1)[-1]
    return (name in VIEW_NAMES or name.endswith("_views")) and module.split(".")[0] in PACKAGES


def _extends_blueprint(module: str, dep: str) -> bool:
    """``shop.trace.gs1_views -> shop.trace.views``: routes added to the package's own blueprint."""
    return module.endswith("_views") and dep == module.rsplit(".", 1)[0] + ".views"


def modules(root: Path = PROJECT_ROOT) -> dict[str, Path]:
    found = {"app": root / "app.py"}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imported(source: str, module: str, known: set[str], *, is_package: bool = False) -> set[str]:
    """The project modules that ``source`` (the text of ``module``) imports.

    ``from a.b import c`` is an import of ``a.b.c`` if that is a module, else of ``a.b``;
    relative imports are resolved; names outside the project are dropped.
    """
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names} & known
            names.update(submodules)
            if len(submodules) < len(node.names):
                names.add(target)  # some names are attributes of ``target`` itself
    out = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            out.add(name)
    return out


def graph(root: Path = PROJECT_ROOT) -> dict[str, set[str]]:
    found = modules(root)
    known = set(found)
    out = {}
    for name, path in found.items():
        deps = imported(path.read_text(encoding="utf-8"), name, known, is_package=path.name == "__init__.py")
        # importing a.b.c first imports the packages a and a.b
        parent = name.rpartition(".")[0]
        while parent:
            deps.add(parent)
            parent = parent.rpartition(".")[0]
        out[name] = {d for d in deps if d != name}
    return out


def layer_violations(g: dict[str, set[str]]) -> list[str]:
    out = []
    for name, deps in sorted(g.items()):
        for dep in sorted(deps):
            if layer(dep) != layer(name) and layer(dep) not in ALLOWED[layer(name)]:
                if name.startswith(dep + "."):
                    continue  # a package's own __init__, imported on the way in
                out.append(f"{name} -> {dep}")
    return out


def view_imports(g: dict[str, set[str]]) -> list[str]:
    return [
        f"{n} -> {d}"
        for n, deps in sorted(g.items())
        if n != "app"
        for d in sorted(deps)
        if is_view(d) and not _extends_blueprint(n, d)
    ]


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


# --- the checker checks -----------------------------------------------------------------


@pytest.fixture
def planted(tmp_path):
    """A small tree with one of every violation."""
    files = {
        "app.py": "import shop.views\n",
        "core/__init__.py": "",
        "core/db.py": "def f():\n    from iot import models\n",  # core -> domain, lazily
        "coop/__init__.py": "",
        "coop/ledger.py": "from shop.orders import x\n",  # coop -> shop
        "iot/__init__.py": "",
        "iot/models.py": "",
        "shop/__init__.py": "",
        "shop/orders.py": "from . import views\n",  # a view imported by a service
        "shop/views.py": "from shop.trace import lots\n",
        "shop/trace/__init__.py": "",
        "shop/trace/lots.py": "import typing\nif typing.TYPE_CHECKING:\n    from ..orders import x\n",
    }
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return graph(tmp_path)


def test_the_checker_finds_planted_violations(planted):
    assert layer_violations(planted) == [
        "coop.ledger -> shop.orders",
        "core.db -> iot.models",
        "shop.trace.lots -> shop.orders",
    ]
    assert view_imports(planted) == ["shop.orders -> shop.views"]
    assert cycles(planted) == [["shop.orders", "shop.trace.lots", "shop.views"]]


# --- the real tree ------------------------------------------------------------------------


def test_layers_point_one_way():
    g = graph()
    assert {"core.clock", "iot.ingest.writer", "shop.trace.ports", "coop.ledger"} <= set(g)
    assert layer_violations(g) == []


def test_only_the_app_imports_views():
    assert view_imports(graph()) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_top_level_stays_as_it_is():
    allowed = {"app.py", "core", "coop", "iot", "shop", "migrations", "tests", "bench", "docs", "deploy"}
    allowed |= {"templates", "static", "translations", "README.md", "Makefile", "pyproject.toml", "babel.cfg"}
    allowed |= {"requirements.lock"}
    tracked_dirs = {p.name for p in PROJECT_ROOT.iterdir() if not p.name.startswith(".")}
    ignored = {"instance", "screenshots", "build", "__pycache__"} | {
        p for p in tracked_dirs if p.endswith(".egg-info")
    }
    assert tracked_dirs - ignored - allowed == set()


@pytest.mark.parametrize(
    "models", ["core.models", "coop.models", "iot.models", "shop.trace.models", "shop.models"]
)
def test_each_layers_tables_configure_with_only_the_layers_below(models):
    """String-named relationships hide dependencies from the import graph: configure each
    layer's mappers in a fresh interpreter, with nothing above it loaded."""
    import subprocess
    import sys

    code = (
        "import importlib, sys\n"
        f"importlib.import_module({models!r})\n"
        "from sqlalchemy.orm import configure_mappers\n"
        "configure_mappers()\n"
        "areas = ('core', 'coop', 'iot', 'shop')\n"
        "ours = [m for m in sys.modules if m.endswith('.models') and m.split('.')[0] in areas]\n"
        "print(' '.join(sorted(ours)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = {layer(m) for m in out.stdout.split()}
    assert loaded <= ALLOWED[layer(models)] | {layer(models)}, (models, loaded)
