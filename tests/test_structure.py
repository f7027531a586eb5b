"""The package's structure: every module imports, and the imports between its modules form no cycle.

Every import counts, wherever it is written (module level, inside a function, under ``TYPE_CHECKING``): a
function-level import hides a cycle from Python at import time, not from the design.
"""

from __future__ import annotations

import ast
import importlib
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = "locust_metrics"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
MODULES = sorted(path.stem for path in ROOT.glob("*.py"))


def imported_modules(module: str) -> set[str]:
    """The package's modules that ``module`` imports, anywhere in its source."""
    tree = ast.parse((ROOT / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):  # import locust_metrics.x
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level <= 1:
            base = f"{PACKAGE}.{node.module}" if node.level and node.module else (node.module or PACKAGE)
            # from .x import y / from locust_metrics.x import y: x; from . import x / from locust_metrics import x: x
            targets = [f"{base}.{alias.name}" for alias in node.names] if base == PACKAGE else [base]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            if parts[0] == PACKAGE and len(parts) > 1:
                found.add(parts[1])
    return {name for name in found if name in MODULES and name != module}


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports(module: str) -> None:
    importlib.import_module(f"{PACKAGE}.{module}" if module != "__init__" else PACKAGE)


def test_the_modules_import_each_other_without_a_cycle() -> None:
    graph = {module: imported_modules(module) for module in MODULES}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:  # pragma: no cover - the failure's message
        pytest.fail(f"import cycle among the package's modules: {' -> '.join(exc.args[1])}")
    assert set(order) == set(MODULES)


def test_the_parser_sees_every_kind_of_import() -> None:
    assert "threshold_reports" in imported_modules("exporter"), "a function-level import"
    assert {"distributed", "threshold_checks"} <= imported_modules("snapshot"), "imports under TYPE_CHECKING"
    assert "families" in imported_modules("collector"), "from . import families as F"
    assert "_version" in imported_modules("__init__")


def test_readers_of_the_snapshot_do_not_depend_on_the_exporter() -> None:
    """The outputs are functions of a snapshot: they never import the exporter (only it wires them)."""
    for module in ("snapshot", "collector", "encoders", "scraping", "push"):
        assert "exporter" not in imported_modules(module), module
