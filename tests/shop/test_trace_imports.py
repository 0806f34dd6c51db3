"""The house rule of shop/trace/: it never imports the rest of the shop, and has no import cycles.

Read from the source with ``ast`` (every import, also those inside functions), so a lazy
``from shop.models import Product`` in a function body fails here as well.
"""

from __future__ import annotations

import ast

from core.config import PROJECT_ROOT

PACKAGE = "shop.trace"
TRACE_DIR = PROJECT_ROOT / "shop" / "trace"


def imported_names(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """What ``source`` (the text of ``module``) imports, as absolute dotted names.

    ``from a.b import c`` gives ``a.b`` and ``a.b.c`` (``c`` may be a submodule);
    ``from shop import c`` gives only ``shop.c``, so that ``from shop import trace`` is
    not taken for an import of the shop package's own contents.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != "shop":
                found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


def outside_trace(names: set[str]) -> set[str]:
    """The names among ``names`` that are the shop, or in it but not in shop.trace."""
    return {
        n
        for n in names
        if (n == "shop" or n.startswith("shop.")) and n != PACKAGE and not n.startswith(PACKAGE + ".")
    }


def _modules() -> dict[str, set[str]]:
    """{module: names it imports} for every module of shop/trace/."""
    out = {}
    for path in sorted(TRACE_DIR.glob("*.py")):
        is_package = path.name == "__init__.py"
        name = PACKAGE if is_package else f"{PACKAGE}.{path.stem}"
        out[name] = imported_names(path.read_text(encoding="utf-8"), name, is_package=is_package)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles among the modules of ``graph`` (each found once per entry point)."""
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            found.append(path[path.index(node) :] + [node])
            return
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, path + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return found


def test_the_checker_sees_lazy_relative_and_from_imports():
    source = (
        "from shop.trace import lots\n"
        "from . import gs1\n"
        "from .models import HarvestLot\n"
        "def f():\n"
        "    from shop.models import Product\n"
        "    from .. import orders\n"
        "    import shop.catalog\n"
        "    from shop import N_\n"
    )
    names = imported_names(source, "shop.trace.example")
    assert {"shop.trace.lots", "shop.trace.gs1", "shop.trace.models"} <= names
    assert outside_trace(names) == {
        "shop.models",
        "shop.models.Product",
        "shop.orders",
        "shop.catalog",
        "shop.N_",
    }
    assert outside_trace(imported_names("from shop import trace\n", "shop.trace.x")) == set()
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_shop_trace_imports_no_other_shop_module():
    modules = _modules()
    assert {"shop.trace.models", "shop.trace.views", "shop.trace.ports"} <= set(modules)
    violations = {
        name: sorted(outside_trace(names)) for name, names in modules.items() if outside_trace(names)
    }
    assert violations == {}, (
        f"shop.trace must not import the rest of shop (hand it in via ShopPort): {violations}"
    )


def test_shop_trace_has_no_import_cycles():
    modules = _modules()
    # importing shop.trace.x imports the package shop.trace (its __init__) first
    graph = {
        name: {n for n in names if n in modules and n != name} | ({PACKAGE} if name != PACKAGE else set())
        for name, names in modules.items()
    }
    assert _cycles(graph) == []


def test_the_flat_files_are_gone():
    flat = ["lots", "trace_views", "trace_forms", "trace_cli", "epcis"]
    assert [f for f in flat if (PROJECT_ROOT / "shop" / f"{f}.py").exists()] == []
    assert not (PROJECT_ROOT / "shop" / "trace.py").exists()  # shop.trace is the package
    # what is left of trace_models / trace_demo is a name core still uses, nothing more
    for name in ("trace_models", "trace_demo"):
        path = PROJECT_ROOT / "shop" / f"{name}.py"
        if path.exists():
            tree = ast.parse(path.read_text(encoding="utf-8"))
            assert all(isinstance(n, ast.Import | ast.ImportFrom | ast.Expr | ast.Assign) for n in tree.body)
