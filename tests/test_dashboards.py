"""Lint of the Grafana dashboards in dashboards/*.json (static: no Grafana, no Prometheus needed).

Checks what Grafana would not tell you until someone looks: every panel and query on the DS_PROMETHEUS
datasource variable, unique panel ids, no overlapping panels, no averaged percentiles, every quantile from
summed buckets, units that match what a query returns, every Locust selector wired to the dashboard's
variables, only metric names the exporter (or the shipped recording rules) produce.

The dashboards are built by dashboards/generate.py (grafana-foundation-sdk); the last tests check that the
committed JSON is exactly its output, and that its ``--check`` mode catches a stale file.

The helpers :func:`load_dashboards`, :func:`dashboard_queries` and :func:`substitute` are also used by
tests/test_stack_e2e.py, which runs every query against a real Prometheus.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from locust_metrics.families import series_names

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS = REPO / "dashboards"
RULES = REPO / "deploy" / "prometheus" / "rules"
DS_UID = "${DS_PROMETHEUS}"

EXPORTED_METRICS = series_names()
"""Every series name the exporter produces (locust_metrics/families.py)."""

ENDPOINT_METRICS = {
    "locust_request_duration_seconds", "locust_request_duration_seconds_bucket",
    "locust_request_duration_seconds_sum", "locust_request_duration_seconds_count", "locust_requests_total",
    "locust_request_failures_total", "locust_slow_requests_total", "locust_slow_request_threshold_seconds",
    "locust_response_size_bytes_total",
}
NODE_METRICS = {"locust_process_cpu_seconds_total", "locust_process_cpu_usage_ratio",
                "locust_process_resident_memory_bytes"}
AGGREGATIONS = {"sum", "avg", "min", "max", "count", "stddev", "stdvar", "quantile", "topk", "bottomk", "group"}


def recorded_metrics() -> set[str]:
    """Series names recorded by the shipped rule files."""
    names = set()
    for path in RULES.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return names


def load_dashboards() -> dict[str, dict[str, Any]]:
    """``{file name: dashboard JSON}`` of every dashboards/*.json."""
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including the ones inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


@dataclass
class Query:
    """One PromQL query of a dashboard, where it comes from, and how Grafana runs it."""

    dashboard: str
    where: str  # "panel <id> <title> / <refId>", "annotation <name>", "variable <name>"
    expr: str
    kind: str  # "range", "instant", "annotation", "variable"
    panel: dict[str, Any] | None = None
    target: dict[str, Any] | None = None


LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<match>.*?)\s*,\s*(?P<label>[a-zA-Z_]\w*)\s*\)\s*$", re.S)


def dashboard_queries(name: str, dashboard: dict[str, Any]) -> list[Query]:
    """Every query of ``dashboard``: panel targets, annotations and query variables.

    A variable's ``label_values(<selector>, <label>)`` is returned as the selector itself (kind "variable"): the
    e2e test asks Prometheus for the label's values of the series it matches, as Grafana does.
    """
    queries: list[Query] = []
    for panel in all_panels(dashboard):
        for t in panel.get("targets", []):
            kind = "instant" if t.get("instant") and not t.get("range") else "range"
            queries.append(Query(name, f"panel {panel['id']} {panel.get('title')!r} / {t.get('refId')}",
                                 t.get("expr", ""), kind, panel, t))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            queries.append(Query(name, f"annotation {annotation['name']!r}", annotation["expr"], "annotation"))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            match = LABEL_VALUES.match(query)
            assert match, f"{name}: variable {variable['name']}: only label_values(selector, label) is supported"
            queries.append(Query(name, f"variable {variable['name']} ({match['label']})", match["match"],
                                 "variable"))
    return queries


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana variables (``$name``, ``${name}``, ``[[name]]``) by ``values``; unknown ones stay."""
    def replace(match: re.Match) -> str:
        key = match.group("a") or match.group("b") or match.group("c")
        return values.get(key, match.group(0))
    return re.sub(r"\$\{(?P<a>\w+)(?::\w+)?\}|\$(?P<b>\w+)|\[\[(?P<c>\w+)\]\]", replace, expr)


# ----------------------------------------------------------------------------------------------- PromQL bits
def _matching_paren(expr: str, open_index: int) -> int:
    depth = 0
    quote = None
    for i in range(open_index, len(expr)):
        c = expr[i]
        if quote:
            if c == "\\":
                continue
            if c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced parentheses in {expr!r}")


def _paren_name(expr: str, index: int) -> str:
    """Name of the function or aggregation whose argument list opens at ``expr[index] == '('``.

    ``"by"`` for a grouping clause, ``""`` for a plain parenthesis.
    """
    before = expr[:index].rstrip()
    ident = re.search(r"([A-Za-z_][A-Za-z0-9_]*)$", before)
    if ident:
        return ident.group(1)
    if before.endswith(")"):  # `sum by (le) (` -> the aggregation before the clause
        depth = 0
        for j in range(len(before) - 1, -1, -1):
            if before[j] == ")":
                depth += 1
            elif before[j] == "(":
                depth -= 1
                if depth == 0:
                    agg = re.search(r"([A-Za-z_]+)\s+(?:by|without)\s*$", before[:j])
                    return agg.group(1) if agg else ""
    return ""


def enclosing_calls(expr: str, position: int) -> list[str]:
    """Names of the functions/aggregations around ``position`` in ``expr``, innermost first."""
    names = []
    for index, c in enumerate(expr[:position]):
        if c == "(" and _matching_paren(expr, index) > position:
            name = _paren_name(expr, index)
            if name not in ("by", "without"):
                names.append(name)
    return names[::-1]


def quantile_problems(expr: str) -> list[str]:
    """Why ``expr`` computes percentiles wrongly: averaged/aggregated quantiles, quantiles not from summed buckets."""
    problems = []
    if re.search(r"\bavg(_over_time)?\b", expr):
        problems.append("uses avg: never average response time percentiles (or their buckets)")
    for match in re.finditer(r"histogram_quantile\s*\(", expr):
        outer = [n for n in enclosing_calls(expr, match.start()) if n]
        if any(n in AGGREGATIONS or n.endswith("_over_time") for n in outer):
            problems.append(f"aggregates the output of histogram_quantile ({outer})")
        open_index = match.end() - 1
        inner = expr[open_index:_matching_paren(expr, open_index) + 1]
        grouping = re.search(r"\bsum\s+by\s*\(([^)]*)\)", inner)
        if re.search(r"\blocust_request_duration_seconds[{\[]", inner):  # the native histogram
            if not re.search(r"\bsum\b", inner):
                problems.append("histogram_quantile not over summed native histograms")
        elif "_bucket" not in inner:
            problems.append("histogram_quantile not over _bucket series")
        elif not grouping or "le" not in [k.strip() for k in grouping.group(1).split(",")]:
            problems.append("histogram_quantile not over buckets summed by le")
    for match in re.finditer(r"[a-z_]+:[a-z_]+:p\d+\w*", expr):  # recorded quantiles
        outer = [n for n in enclosing_calls(expr, match.start()) if n]
        if any(n in AGGREGATIONS or n.endswith("_over_time") for n in outer):
            problems.append(f"aggregates the recorded quantile {match.group(0)} ({outer})")
    if re.search(r"\bquantile(_over_time)?\s*\(", expr):
        problems.append("quantile()/quantile_over_time() over samples is not a response time percentile")
    return problems


SELECTOR = re.compile(r"(?<![\w:])(?P<metric>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{(?P<labels>[^}]*)\}")


def selectors(expr: str) -> list[tuple[str, str]]:
    """``(metric, label matchers text)`` of every ``metric{...}`` selector in ``expr``."""
    return [(m["metric"], m["labels"]) for m in SELECTOR.finditer(expr)]


def bare_metric_names(expr: str) -> set[str]:
    """Locust series names used in ``expr`` (with or without braces; not label names in by/without clauses)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    return set(re.findall(r"(?<![\w:])((?:[a-z_]+:)?locust_[a-z0-9_]+(?::[a-z0-9_]+)?)", expr))


def expected_unit(expr: str) -> set[str] | None:
    """The units a query's values can have, from what it computes; None when any unit is fine."""
    if re.search(r"\)\s*/\s*\(?|\)\s*/\s*sum", expr) or ("/" in expr and "rate(" in expr):
        return {"percentunit"}
    if "histogram_quantile" in expr or re.search(r":p\d+", expr):
        return {"s"}
    if "* 1000" in expr and "time_seconds" in expr:
        return {"dateTimeAsIso", "dateTimeFromNow", "dateTimeAsLocal", "dateTimeAsSystem"}
    if "_bytes" in expr:
        return {"Bps", "binBps"} if "rate(" in expr else {"bytes", "decbytes"}
    if "cpu_usage_ratio" in expr:
        return {"percentunit"}
    if "rate(" in expr and re.search(r"_(total|bucket|count)\b|\blocust_request_duration_seconds[{\[]", expr):
        return {"reqps", "ops"}
    if "increase(" in expr and "_total" in expr:
        return {"short", "none"}
    if "_seconds" in expr:
        return {"s"}
    return None


def target_unit(panel: dict[str, Any], target: dict[str, Any]) -> str | None:
    """The unit Grafana shows a target's values in: a per-query override, a table column's, or the default."""
    field_config = panel.get("fieldConfig", {})
    overrides = field_config.get("overrides", [])
    for override in overrides:
        matcher = override["matcher"]
        if matcher["id"] == "byFrameRefID" and matcher["options"] == target["refId"]:
            for p in override["properties"]:
                if p["id"] == "unit":
                    return p["value"]
    if panel["type"] == "table":
        column = f"Value #{target['refId']}"
        for transformation in panel.get("transformations", []):
            if transformation["id"] == "organize":
                column = transformation["options"].get("renameByName", {}).get(column, column)
        for override in overrides:
            matcher = override["matcher"]
            if matcher["id"] == "byName" and matcher["options"] == column:
                for p in override["properties"]:
                    if p["id"] == "unit":
                        return p["value"]
    if panel["type"] == "heatmap":
        return panel.get("options", {}).get("cellValues", {}).get("unit") or field_config["defaults"].get("unit")
    return field_config.get("defaults", {}).get("unit")


# ----------------------------------------------------------------------------------------------- fixtures
DASHBOARD_FILES = sorted(p.name for p in DASHBOARDS.glob("*.json"))


@pytest.fixture(params=DASHBOARD_FILES)
def board(request) -> tuple[str, dict[str, Any]]:
    return request.param, json.loads((DASHBOARDS / request.param).read_text())


def panels_with_targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in all_panels(dashboard) if p["type"] not in ("row", "text")]


# ----------------------------------------------------------------------------------------------- the tests
def test_both_dashboards_are_shipped():
    assert {"locust-metrics.json", "locust-metrics-compare.json"} <= set(DASHBOARD_FILES)


def test_dashboard_header(board):
    name, d = board
    assert d["schemaVersion"] >= 39, "Grafana 11+"
    assert d["id"] is None, "id must be null so imports and provisioning create their own"
    assert re.fullmatch(r"[a-z0-9-]{1,40}", d["uid"]), "a stable, URL-safe uid of at most 40 characters"
    assert d["uid"] == Path(name).stem, "uid = file name, so links and provisioning stay stable"
    assert d["title"] and d["description"]
    assert "locust" in d["tags"]
    inputs = {i["name"]: i for i in d["__inputs"]}
    assert inputs["DS_PROMETHEUS"]["type"] == "datasource" and inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    required = {(r["type"], r["id"]) for r in d["__requires"]}
    assert ("datasource", "prometheus") in required and ("grafana", "grafana") in required
    for panel_type in {p["type"] for p in all_panels(d)} - {"row"}:
        assert ("panel", panel_type) in required, f"__requires lacks panel {panel_type}"


def test_uids_are_unique():
    uids = [d["uid"] for d in load_dashboards().values()]
    assert len(uids) == len(set(uids))


def test_variables(board):
    name, d = board
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables["DS_PROMETHEUS"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    expected = ["job", "instance", "method", "name"] + (["node"] if name == "locust-metrics.json" else [])
    for key in expected:
        v = variables[key]
        assert v["type"] == "query" and v["multi"] and v["includeAll"], key
        assert v["datasource"]["uid"] == DS_UID, key
        assert v.get("allValue") == ".*", f"{key}: All must be a regex, not a list of every value"
        query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        assert LABEL_VALUES.match(query) and LABEL_VALUES.match(query)["label"] == key, query
    adhoc = [v for v in d["templating"]["list"] if v["type"] == "adhoc"]
    assert len(adhoc) == 1 and adhoc[0]["datasource"]["uid"] == DS_UID, "ad hoc filters for --metrics-label labels"
    if name == "locust-metrics-compare.json":
        assert variables["baseline"]["type"] == "textbox" and variables["baseline"]["query"]


def test_every_panel_and_query_uses_the_datasource_variable(board):
    name, d = board
    for panel in panels_with_targets(d):
        assert panel["datasource"] == {"type": "prometheus", "uid": DS_UID}, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for t in panel["targets"]:
            assert t["datasource"] == {"type": "prometheus", "uid": DS_UID}, (panel["title"], t["refId"])
            assert t["expr"].strip(), (panel["title"], t["refId"])
    for annotation in d["annotations"]["list"]:
        if not annotation.get("builtIn"):
            assert annotation["datasource"] == {"type": "prometheus", "uid": DS_UID}, annotation["name"]
    text = json.dumps(d)
    uids = set(re.findall(r'"uid":\s*"([^"]*)"', text)) - {d["uid"]}
    assert uids <= {DS_UID, "-- Grafana --"}, f"hard-coded datasource uids: {uids - {DS_UID, '-- Grafana --'}}"


def test_panel_ids_are_unique(board):
    name, d = board
    ids = [p["id"] for p in all_panels(d)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_panels_do_not_overlap_and_fit_the_grid(board):
    name, d = board
    boxes = []
    for p in d["panels"]:  # top level (rows collapse their own panels)
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0, p["title"]
        assert g["x"] + g["w"] <= 24, f"{p['title']} is wider than the grid"
        boxes.append((p["title"], g))
    for i, (title_a, a) in enumerate(boxes):
        for title_b, b in boxes[i + 1:]:
            overlap = (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
                       and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])
            assert not overlap, f"{title_a!r} {a} overlaps {title_b!r} {b}"


def test_no_averaged_percentiles_and_quantiles_from_summed_buckets(board):
    name, d = board
    for q in dashboard_queries(name, d):
        assert not quantile_problems(q.expr), (q.where, q.expr, quantile_problems(q.expr))


@pytest.mark.parametrize("expr", [
    "avg(histogram_quantile(0.95, sum by (le, name) (rate(locust_request_duration_seconds_bucket[1m]))))",
    "avg by (name) (endpoint:locust_request_duration_seconds:p95_rate1m)",
    "max(histogram_quantile(0.95, sum by (le, name) (rate(locust_request_duration_seconds_bucket[1m]))))",
    "histogram_quantile(0.95, rate(locust_request_duration_seconds_bucket[1m]))",
    "histogram_quantile(0.95, sum by (name) (rate(locust_request_duration_seconds_bucket[1m])))",
    "sum(endpoint:locust_request_duration_seconds:p95_rate1m)",
    "quantile_over_time(0.95, locust_users[5m])",
    "histogram_quantile(0.95, rate(locust_request_duration_seconds[1m]))",
    "max(histogram_quantile(0.95, sum by (name) (rate(locust_request_duration_seconds[1m]))))",
])
def test_the_quantile_lint_catches_wrong_percentiles(expr):
    assert quantile_problems(expr)


def test_the_quantile_lint_accepts_right_percentiles():
    ok = "histogram_quantile(0.95, sum by (le, method, name) (rate(locust_request_duration_seconds_bucket{a=~\"b\"}[1m])))"
    assert not quantile_problems(ok)
    assert not quantile_problems(f"({ok}) / ({ok}) - 1")
    native = "histogram_quantile(0.95, sum by (method, name) (rate(locust_request_duration_seconds{a=~\"b\"}[1m])))"
    assert not quantile_problems(native) and not quantile_problems(f"{native} or {ok}")


def test_units_are_set_and_match_the_queries(board):
    name, d = board
    for panel in panels_with_targets(d):
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults.get("unit"), f"{panel['title']}: no unit"
        if panel["type"] == "heatmap":
            assert panel["options"]["yAxis"]["unit"] == "s", "the heatmap's buckets are seconds"
        for t in panel["targets"]:
            unit = target_unit(panel, t)
            assert unit, (panel["title"], t["refId"])
            expected = expected_unit(t["expr"])
            if expected is not None:
                assert unit in expected, f"{panel['title']} / {t['refId']}: unit {unit}, expected {expected}: {t['expr']}"


def test_units_cover_seconds_reqps_percentunit_and_bytes():
    units = {target_unit(p, t) for d in load_dashboards().values() for p in panels_with_targets(d) for t in p["targets"]}
    assert {"s", "reqps", "percentunit", "bytes", "Bps"} <= units


def test_selectors_use_the_variables_and_known_metrics(board):
    name, d = board
    known = EXPORTED_METRICS | recorded_metrics() | {"ALERTS"}
    has_node_var = any(v["name"] == "node" for v in d["templating"]["list"])
    for q in dashboard_queries(name, d):
        for metric in bare_metric_names(q.expr):
            assert metric in known, f"{q.where}: unknown series {metric}"
        found = selectors(q.expr)
        if not found and q.kind == "variable" and re.fullmatch(r"[a-z_]+", q.expr.strip()):
            found = [(q.expr.strip(), "")]  # label_values(metric, label)
        assert found, f"{q.where}: no selector"
        for metric, labels in found:
            assert metric in known, f"{q.where}: unknown series {metric}"
            if q.kind == "variable" and metric == "locust_metrics_info":
                continue  # the job / instance variables themselves
            assert 'job=~"$job"' in labels, f"{q.where}: {metric} not filtered by $job"
            if q.kind != "variable":
                assert 'instance=~"$instance"' in labels, f"{q.where}: {metric} not filtered by $instance"
            base = metric.split(":")[1] if ":" in metric else metric
            if q.kind != "variable" and (metric in ENDPOINT_METRICS or metric.startswith("endpoint:")):
                assert 'method=~"$method"' in labels and 'name=~"$name"' in labels, f"{q.where}: {metric}"
            if q.kind != "variable" and has_node_var and base in NODE_METRICS:
                assert 'node=~"$node"' in labels, f"{q.where}: {metric}"


def test_main_dashboard_has_the_promised_panels():
    d = load_dashboards()["locust-metrics.json"]
    panels = {p["title"]: p for p in all_panels(d)}
    exprs = {title: " ".join(t["expr"] for t in p.get("targets", [])) for title, p in panels.items()}

    def panel_with(*needles: str, type_: str | None = None) -> dict[str, Any]:
        for title, expr in exprs.items():
            if all(n in expr for n in needles) and (type_ is None or panels[title]["type"] == type_):
                return panels[title]
        raise AssertionError(f"no {type_ or 'panel'} with {needles}")

    panel_with("sum by (method, name) (rate(locust_requests_total", type_="timeseries")
    panel_with("sum by (method, name, error) (rate(locust_request_failures_total", type_="timeseries")
    panel_with("locust_request_failures_total", "/ sum by (method, name) (rate(locust_requests_total",
               type_="timeseries")
    percentiles = panel_with("histogram_quantile(0.5,", "histogram_quantile(0.9,", "histogram_quantile(0.95,",
                             "histogram_quantile(0.99,", type_="timeseries")
    assert len(percentiles["targets"]) == 4
    heatmap = panel_with("locust_request_duration_seconds_bucket", type_="heatmap")
    assert heatmap["options"]["calculate"] is False, "buckets as Prometheus returns them"
    native, classic = heatmap["targets"]
    # A: the native histogram (Grafana makes a heatmap-cells frame of it, whatever the format); B: the classic
    # buckets, only where A has nothing, as le rows that Grafana de-accumulates (format heatmap)
    assert native["expr"].startswith("sum(rate(locust_request_duration_seconds{") and "_bucket" not in native["expr"]
    assert classic["format"] == "heatmap" and classic["legendFormat"] == "{{le}}"
    assert re.fullmatch(r"sum by \(le\) \(rate\(locust_request_duration_seconds_bucket\{.*\)\) unless on\(\) "
                        + re.escape(native["expr"]), classic["expr"]), classic["expr"]
    panel_with("rate(locust_slow_requests_total", type_="timeseries")
    slow_ratio = panel_with("locust_slow_requests_total", "locust_request_duration_seconds_count",
                            "locust_slow_request_threshold_seconds", type_="timeseries")
    assert slow_ratio["fieldConfig"]["defaults"]["unit"] == "percentunit"
    panel_with("locust_users{", "locust_users_target", type_="timeseries")
    panel_with("locust_runner_state", type_="state-timeline")
    panel_with("sum by (state) (locust_workers", type_="timeseries")
    cpu = panel_with("locust_process_cpu_usage_ratio", type_="timeseries")
    steps = cpu["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps if s["value"] is not None] == [0.9], "the CPU panel draws Locust's 0.9 line"
    assert cpu["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"
    panel_with("locust_process_resident_memory_bytes", type_="timeseries")
    panel_with("rate(locust_response_size_bytes_total", type_="timeseries")
    endpoints = panel_with("increase(locust_requests_total", "locust_request_failures_total",
                           "histogram_quantile(0.95", "locust_slow_requests_total", type_="table")
    assert all(t["instant"] for t in endpoints["targets"])
    names = {a["name"]: a for a in d["annotations"]["list"]}
    for name, metric in (("Test start", "locust_test_start_time_seconds"), ("Test stop", "locust_test_stop_time_seconds")):
        assert metric in names[name]["expr"] and names[name]["useValueForTime"] and names[name]["enable"]


def test_provisioning_points_at_the_dashboards():
    provider = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/locust-metrics.yml").read_text())
    paths = [p["options"]["path"] for p in provider["providers"]]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = [v for v in compose["services"]["grafana"]["volumes"]]
    assert any(m.startswith("./dashboards:") and m.split(":")[1] in paths for m in mounts), (mounts, paths)
    datasources = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    prometheus = [d for d in datasources["datasources"] if d["type"] == "prometheus"]
    assert len(prometheus) == 1 and prometheus[0]["isDefault"], "the DS_PROMETHEUS variable picks the default"


# ----------------------------------------------------------------------------------------------- dashboards as code
GENERATOR = DASHBOARDS / "generate.py"
needs_sdk = pytest.mark.skipif(sys.version_info < (3, 11), reason="grafana-foundation-sdk needs Python 3.11+")


def load_generator() -> Any:
    """dashboards/generate.py as a module (it needs grafana-foundation-sdk, from the ``test`` extra)."""
    spec = importlib.util.spec_from_file_location("dashboards_generate", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def differing_parts(committed: dict[str, Any], built: dict[str, Any]) -> list[str]:
    """Top-level keys and panel titles that differ between two dashboards (for a readable failure)."""
    parts = [key for key in sorted(set(committed) | set(built)) if key != "panels"
             and committed.get(key) != built.get(key)]
    old = {(p.get("id"), p.get("title")): p for p in all_panels(committed)}
    new = {(p.get("id"), p.get("title")): p for p in all_panels(built)}
    parts += [f"panel {id_} {title!r}" for id_, title in sorted(set(old) | set(new), key=str)
              if old.get((id_, title)) != new.get((id_, title))]
    return parts


@needs_sdk
def test_committed_dashboards_are_the_generators_output():
    built = load_generator().build_all()
    assert sorted(built) == DASHBOARD_FILES, "every dashboards/*.json is generated, and nothing else is"
    for name, text in built.items():
        committed = (DASHBOARDS / name).read_text()
        differ = differing_parts(json.loads(committed), json.loads(text))
        assert not differ, (f"{name} is not what dashboards/generate.py builds ({', '.join(differ)}): edit the "
                            "generator, not the JSON, and run python dashboards/generate.py")
        assert committed == text, f"{name}: same dashboard, other formatting: run python dashboards/generate.py"


@needs_sdk
def test_generator_check_mode_catches_a_stale_file(tmp_path):
    for name in DASHBOARD_FILES:
        shutil.copy(DASHBOARDS / name, tmp_path / name)

    def check() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(GENERATOR), "--check", "--out", str(tmp_path)],
                              capture_output=True, text=True, timeout=60)

    fresh = check()
    assert fresh.returncode == 0, fresh.stderr
    stale = json.loads((tmp_path / "locust-metrics.json").read_text())
    stale["panels"][1]["targets"][0]["expr"] = "sum(rate(locust_requests_total[5m]))"  # a hand edit
    (tmp_path / "locust-metrics.json").write_text(json.dumps(stale, indent=2) + "\n")
    result = check()
    assert result.returncode == 1 and "locust-metrics.json" in result.stderr, result
    assert "locust-metrics-compare.json" not in result.stderr, result.stderr
    rewrite = subprocess.run([sys.executable, str(GENERATOR), "--out", str(tmp_path)], capture_output=True, text=True,
                             timeout=60)
    assert rewrite.returncode == 0 and "locust-metrics.json" in rewrite.stdout, rewrite
    assert (tmp_path / "locust-metrics.json").read_text() == (DASHBOARDS / "locust-metrics.json").read_text()
    assert check().returncode == 0
