"""Every exported family is declared once (locust_metrics/families.py): the README's metrics table, the
dashboards' list of known series and the package's code all follow that one table."""

from __future__ import annotations

import ast
import re

from support import REPO

from locust_metrics import families as F


def readme_rows() -> dict[str, tuple[str, tuple[str, ...]]]:
    """``{series name: (type, labels)}`` of the README's metrics table."""
    text = (REPO / "README.md").read_text()
    table = text[text.index("| metric | type | labels | meaning |"):]
    rows = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        names, kind, labels = (cell.strip() for cell in line.strip("|").split("|")[:3])
        for name in re.findall(r"`([a-z_]+)`", names):
            rows[name] = (kind, tuple(label.strip() for label in labels.split(",") if label.strip()))
    return rows


def test_the_readme_metrics_table_is_the_family_table() -> None:
    want = {(f.name if f.type != F.COUNTER else f.sample()): (f.type, f.labels) for f in F.FAMILIES}
    assert readme_rows() == want


def test_no_family_name_is_spelled_outside_the_family_table() -> None:
    names = {f.name for f in F.FAMILIES}
    for path in (REPO / "locust_metrics").glob("*.py"):
        if path.name == "families.py":
            continue
        tree = ast.parse(path.read_text())
        docs = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                assert not any(re.search(rf"\b{name}(_total|_bucket|_count|_sum)?\b", node.value) for name in names), (
                    path.name, node.value)


def test_sample_names() -> None:
    assert F.REQUESTS.sample() == "locust_requests_total" and F.SLOW_THRESHOLD.sample() == F.SLOW_THRESHOLD.name
    assert F.REQUEST_DURATION.series_names() == tuple(
        f"locust_request_duration_seconds{s}" for s in ("_bucket", "_count", "_sum", ""))  # "": the native series
    assert len({f.name for f in F.FAMILIES}) == len(F.FAMILIES)
