"""The docker-compose stack's parts as local processes, end to end, on 127.0.0.1 (about a minute).

One module-scoped run (:func:`stack`) starts, from the shipped files:

* the demo target and a Locust master with two workers, from docker-compose.yml's own command lines (host
  names and ports replaced, a run time added), so the example locustfile runs distributed with the plugin;
* a real Alertmanager with deploy/alertmanager/alertmanager.yml, its webhook pointed at a receiver in the test;
* a real Prometheus with deploy/prometheus/prometheus.yml (scrape and evaluation interval 1 s, targets pointed
  at the local processes) and the shipped rules, whose ``for:`` durations are shortened in a test copy (the
  shipped file itself is what ``promtool test rules`` exercises in tests/test_alert_rules.py);
* a second real Prometheus, the same but with native histograms on (2.42's
  ``--enable-feature=native-histograms``) and no Alertmanager: the master serves it protobuf (the compose command
  has ``--metrics-native-histograms=true``) and it stores ``locust_request_duration_seconds`` as a native
  histogram, without the classic ``_bucket/_count/_sum`` series (2.42 keeps no classic series of a histogram it
  ingests natively), while the first one asks for text and stores the classic series only. Both scrape the same
  run, so the dashboards are compared on the same requests, at no extra run time.

While the test runs, LocustSlowRequests must fire for the demo's slow endpoint and reach the webhook through
Alertmanager; then one worker is killed and LocustWorkerMissing must arrive too. After Locust exits, every query
of every dashboard (panel targets, annotations, variables; Grafana variables substituted) runs against each
Prometheus: none may fail, nearly all must return data, and the key panels must show what the run did; with native
histograms on, every query that returns data without them returns data too, but for the few that read the classic
series on purpose (:data:`CLASSIC_ONLY`), and the heatmap shows native buckets.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import (
    ALERTMANAGER_BINARIES,
    PROMETHEUS_BINARIES,
    REPO,
    AlertmanagerServer,
    ChildProcess,
    PrometheusAPIError,
    PrometheusServer,
    WebhookReceiver,
    for_prometheus_2,
    free_port,
    http_get,
    require_binary,
    sample_points,
    wait_for,
)
from test_compose import local_command
from test_dashboards import Query, dashboard_queries, load_dashboards, substitute

RUN_TIME = 35  # seconds of load; the whole module takes about a minute
AUTOQUIT = 3  # seconds the master stays up after the test: both Prometheus scrape its final numbers (1 s interval)
TEST_FOR = 2  # seconds: every alert's `for:` in the test copy of the rules
MIN_DATA_SHARE = 0.9  # "nearly all" dashboard queries return data
RATE_INTERVAL = 4  # seconds: what run_queries substitutes for $__rate_interval


def rules_test_copy(for_seconds: int) -> dict[str, Any]:
    """The shipped rules with every alert's ``for:`` capped at ``for_seconds`` (expressions unchanged)."""
    document = yaml.safe_load((REPO / "deploy/prometheus/rules/locust.rules.yml").read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            if "alert" in rule and "for" in rule:
                rule["for"] = f"{for_seconds}s"
    return document


def local_alertmanager_config(webhook_url: str) -> dict[str, Any]:
    """The shipped Alertmanager config, its webhooks sent to ``webhook_url`` and its waits shortened."""
    config = yaml.safe_load((REPO / "deploy/alertmanager/alertmanager.yml").read_text())
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = webhook_url
    config["route"].update(group_wait="0s", group_interval="1s")
    return config


def local_prometheus_config(locust: str, alertmanager: str | None, itself: str) -> dict[str, Any]:
    """The shipped prometheus.yml, scraping and evaluating every second, its targets the local processes (no
    Alertmanager when ``alertmanager`` is None)."""
    config, _ = for_prometheus_2(yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text()))
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    targets = {"locust": [locust], "prometheus": [itself]}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    if alertmanager is None:
        del config["alerting"]
    else:
        config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager]}]
    return config


@dataclass
class Stack:
    prometheus: PrometheusServer  # classic: text scrapes, classic series only
    native: PrometheusServer  # native histograms on: protobuf scrapes, native duration histograms only
    alertmanager: AlertmanagerServer
    webhook: WebhookReceiver
    workdir: Path
    instance: str
    start: float = 0.0
    end: float = 0.0
    slow_alert: dict[str, Any] = field(default_factory=dict)
    missing_alert: dict[str, Any] = field(default_factory=dict)
    master_log: str = ""
    master_exit: int | None = None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_binary(*PROMETHEUS_BINARIES)
    require_binary(*ALERTMANAGER_BINARIES)
    workdir = tmp_path_factory.mktemp("stack")
    target_port, metrics_port, master_port, web_port, prom_port, native_port = (free_port() for _ in range(6))
    instance = f"127.0.0.1:{metrics_port}"
    processes: list[ChildProcess] = []
    with WebhookReceiver() as webhook, \
            AlertmanagerServer(workdir / "alertmanager", local_alertmanager_config(webhook.url)) as alertmanager, \
            PrometheusServer(workdir / "prometheus",
                             local_prometheus_config(instance, alertmanager.address, f"127.0.0.1:{prom_port}"),
                             rule_files={"locust.rules.yml": rules_test_copy(TEST_FOR)}, port=prom_port) as prom, \
            PrometheusServer(workdir / "prometheus-native",
                             local_prometheus_config(instance, None, f"127.0.0.1:{native_port}"),
                             rule_files={"locust.rules.yml": rules_test_copy(TEST_FOR)}, port=native_port,
                             extra_args=["--enable-feature=native-histograms"]) as native:
        result = Stack(prom, native, alertmanager, webhook, workdir, instance)
        try:
            def start(name: str, args: list[str]) -> ChildProcess:
                processes.append(ChildProcess(args, REPO, name=name, log_dir=workdir))
                return processes[-1]

            demo = start("demo-target", local_command("demo-target", {"0.0.0.0": "127.0.0.1", "8080": str(target_port)}))
            wait_for(lambda: demo.running() and http_get(f"http://127.0.0.1:{target_port}/health", timeout=2)[0] == 200,
                     20, what="demo target")
            master = start("locust-master", local_command(
                "locust-master",
                {"http://demo-target:8080": f"http://127.0.0.1:{target_port}", "--metrics-port=9646":
                 f"--metrics-port={metrics_port}"},
                ["--metrics-host=127.0.0.1", "--web-host=127.0.0.1", f"--web-port={web_port}",
                 "--master-bind-host=127.0.0.1", f"--master-bind-port={master_port}", f"--run-time={RUN_TIME}s",
                 f"--autoquit={AUTOQUIT}", "--expect-workers=2"]))
            workers = [start(f"worker-{i}", local_command(
                "worker", {"--master-host=locust-master": "--master-host=127.0.0.1"},
                [f"--master-port={master_port}"])) for i in range(2)]
            result.start = time.time()
            prom.wait_for(lambda: prom.query('locust_workers{job="locust", state="running"} == 2')
                          and prom.query('sum(locust_users{job="locust"}) == 20'), 40,
                          what="20 users running on 2 workers")
            workers[1].kill()  # a worker dies: the master marks it missing after ~3 s without heartbeats
            result.slow_alert = webhook.wait_for_alert("LocustSlowRequests", "firing", timeout=60,
                                                       name="/reports/sales")
            result.missing_alert = webhook.wait_for_alert("LocustWorkerMissing", "firing", timeout=30)

            # fails the test if it does not stop by itself
            result.master_exit = master.wait(timeout=RUN_TIME + AUTOQUIT + 60)
            result.end = time.time()
            result.master_log = master.output()
            yield result
        finally:
            for process in reversed(processes):
                process.stop(timeout=15)


# ----------------------------------------------------------------------------------------------- alerts
def test_master_ran_and_exited_after_the_final_scrape(stack):
    assert stack.master_exit in (0, 1), stack.master_log[-3000:]  # 1: the example's failures
    assert "serving Prometheus metrics" in stack.master_log
    assert 15 < stack.end - stack.start < RUN_TIME + AUTOQUIT + 60


def test_slow_request_alert_reaches_the_alertmanager_webhook(stack):
    alert = stack.slow_alert
    labels = alert["labels"]
    assert labels["alertname"] == "LocustSlowRequests" and labels["severity"] == "warning"
    assert labels["method"] == "GET" and labels["name"] == "/reports/sales"
    assert labels["job"] == "locust" and labels["instance"] == stack.instance
    assert labels["env"] == "demo", "the compose command's --metrics-label reaches the alert"
    assert alert["receiver"] == "locust-webhook", "routed by the shipped Alertmanager config"
    assert re.fullmatch(r"100% of GET /reports/sales requests are slow", alert["annotations"]["summary"])
    assert "slow threshold of 1s" in alert["annotations"]["description"], "the threshold comes from the exporter"
    held = stack.alertmanager.alerts("LocustSlowRequests")
    assert any(a["labels"].get("name") == "/reports/sales" for a in held)
    slow_names = {a["labels"].get("name") for a in stack.webhook.alerts()
                  if a["labels"]["alertname"] == "LocustSlowRequests"}
    assert "/health" not in slow_names, "the fast endpoint never fires"


def test_worker_missing_alert_fires_when_a_worker_dies(stack):
    alert = stack.missing_alert
    assert alert["labels"]["severity"] == "warning" and alert["labels"]["instance"] == stack.instance
    assert alert["annotations"]["summary"] == f"1 Locust worker(s) missing on {stack.instance}"


def test_no_traffic_and_failure_alerts_stay_quiet(stack):
    received = {a["labels"]["alertname"] for a in stack.webhook.alerts() if a["status"] == "firing"}
    assert "LocustHighLatencyP95" not in received, "the demo's p95 stays under 2 s"
    assert "LocustMetricsNamesDropped" not in received


@pytest.mark.parametrize("which", ["prometheus", "native"])
def test_every_rule_evaluates_without_errors(stack, which):
    rules = [rule for group in getattr(stack, which).rules() for rule in group["rules"]]
    shipped = yaml.safe_load((REPO / "deploy/prometheus/rules/locust.rules.yml").read_text())["groups"]
    assert len(rules) == sum(len(group["rules"]) for group in shipped)
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, bad


# ----------------------------------------------------------------------------------------------- dashboards
def grafana_regex(value: str) -> str:
    """A value as Grafana puts it in a Prometheus regex matcher (special characters escaped)."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", value)


@dataclass
class Outcome:
    query: Query
    expr: str
    series: int = 0
    error: str = ""
    values: list[Any] = field(default_factory=list)


def run_queries(stack: Stack, variables: dict[str, str], prom: PrometheusServer | None = None) -> list[Outcome]:
    """Every query of every dashboard, as Grafana runs it when someone looks right after the test, against
    ``prom`` (default: the classic Prometheus).

    The time range runs from just before the test to now (Locust has exited: its gauges are stale by now);
    instant queries (tables, some stats) run at now, range queries over the whole range, annotations with their
    own step, variables as ``label_values()`` over the range.
    """
    prom = prom or stack.prometheus
    start, now = stack.start - 5, time.time()
    values = {"__rate_interval": f"{RATE_INTERVAL}s", "__interval": "1s", "__range": f"{int(now - start)}s",
              "__range_s": str(int(now - start)), "baseline": "15s", **variables}
    outcomes = []
    for name, board in load_dashboards().items():
        for query in dashboard_queries(name, board):
            expr = substitute(query.expr, values)
            outcome = Outcome(query, expr)
            assert "$" not in expr, f"{query.where}: unsubstituted variable in {expr}"
            try:
                if query.kind == "variable":
                    label = re.search(r"\((\w+)\)$", query.where).group(1)
                    outcome.values = prom.label_values(label, expr, start, now)
                    outcome.series = len(outcome.values)
                elif query.kind == "instant":
                    outcome.values = prom.query(expr, now)
                    outcome.series = len(outcome.values)
                else:
                    step = 5 if query.kind == "annotation" else 2
                    outcome.values = prom.query_range(expr, start, now, step)
                    outcome.series = sum(1 for s in outcome.values if sample_points(s))
            except PrometheusAPIError as exc:
                outcome.error = str(exc)
            outcomes.append(outcome)
    return outcomes


ALL = {"job": ".*", "instance": ".*", "method": ".*", "name": ".*", "node": ".*"}


def report_outcomes(stack: Stack, outcomes: list[Outcome], label: str) -> None:
    """Writes every outcome to ``<workdir>/<label>-queries.json`` and prints a summary and the empty ones."""
    report = [{"where": f"{o.query.dashboard}: {o.query.where}", "kind": o.query.kind, "series": o.series,
               "error": o.error, "expr": o.expr} for o in outcomes]
    path = stack.workdir / f"{label}-queries.json"
    path.write_text(json.dumps(report, indent=2))
    empty = [o for o in outcomes if not o.series and not o.error]
    print(f"\n[{label}] {len(outcomes)} queries, {sum(1 for o in outcomes if o.series)} with data, "
          f"{len(empty)} empty, {sum(1 for o in outcomes if o.error)} errors (details: {path})")
    for o in empty:
        print(f"[{label}] empty: {o.query.dashboard}: {o.query.where}: {o.expr}")


@pytest.fixture(scope="module")
def all_outcomes(stack) -> list[Outcome]:
    # Annotations run with a 5 s step (aligned, as Grafana does): give the stop time one step to show up.
    time.sleep(max(0.0, stack.end + 6 - time.time()))
    outcomes = run_queries(stack, ALL)
    report_outcomes(stack, outcomes, "dashboards")
    return outcomes


@pytest.fixture(scope="module")
def native_outcomes(stack, all_outcomes) -> list[Outcome]:
    """The same queries against the Prometheus with native histograms on (right after the classic ones)."""
    outcomes = run_queries(stack, ALL, stack.native)
    report_outcomes(stack, outcomes, "dashboards, native histograms")
    return outcomes


def outcome(outcomes: list[Outcome], dashboard: str, title: str, ref: str = "A") -> Outcome:
    for o in outcomes:
        if o.query.dashboard == dashboard and o.query.panel and o.query.panel["title"] == title \
                and o.query.target["refId"] == ref:
            return o
    raise AssertionError(f"no query {dashboard} {title} {ref}")


def test_every_dashboard_query_runs_and_nearly_all_return_data(all_outcomes):
    errors = [(o.query.where, o.expr, o.error) for o in all_outcomes if o.error]
    assert not errors, errors
    with_data = sum(1 for o in all_outcomes if o.series)
    assert len(all_outcomes) >= 80
    assert with_data / len(all_outcomes) >= MIN_DATA_SHARE, \
        [f"{o.query.dashboard}: {o.query.where}" for o in all_outcomes if not o.series]
    kinds = {o.query.kind for o in all_outcomes}
    assert kinds == {"range", "instant", "annotation", "variable"}


def series_by(o: Outcome, label: str) -> dict[str, list[float]]:
    """The float samples of each series of ``o`` by the value of ``label``."""
    out: dict[str, list[float]] = {}
    for s in o.values:
        out.setdefault(s["metric"].get(label, ""), []).extend(
            float(v) for _, v in sample_points(s) if not isinstance(v, dict))
    return out


def test_main_dashboard_shows_the_run(stack, all_outcomes):
    main = "locust-metrics.json"
    names = series_by(outcome(all_outcomes, main, "Requests/s by endpoint"), "name")
    assert {"/reports/sales", "/health", "/search", "/products/[id]", "/checkout"} <= set(names)
    p95 = series_by(outcome(all_outcomes, main, "p95 by endpoint"), "name")
    finite = [v for v in p95["/reports/sales"] if not math.isnan(v)]
    # the demo's report takes 1.1-1.5 s (plus client overhead: a few land in the (1.5, 2] bucket)
    assert finite and all(1.0 < v <= 2.0 for v in finite) and min(finite) <= 1.5, finite
    slow = series_by(outcome(all_outcomes, main, "Slow ratio against the threshold"), "name")
    assert max(v for v in slow["/reports/sales"] if not math.isnan(v)) == 1.0
    assert max(v for v in slow["/health"] if not math.isnan(v)) == 0.0
    threshold = series_by(outcome(all_outcomes, main, "Slow ratio against the threshold", "B"), "name")
    assert set(threshold["/reports/sales"]) == {1.0}
    users = series_by(outcome(all_outcomes, main, "Users by class and target"), "user_class")
    assert {"ShopUser", "ReportViewer", "ApiClient"} <= set(users)
    assert max(series_by(outcome(all_outcomes, main, "Users"), "")[""]) == 20
    assert 20.0 in series_by(outcome(all_outcomes, main, "Users by class and target", "B"), "")[""]
    nodes = series_by(outcome(all_outcomes, main, "CPU per node"), "node")
    assert {"master", "worker-0", "worker-1"} <= set(nodes)
    workers = series_by(outcome(all_outcomes, main, "Workers by state"), "state")
    assert max(workers["running"]) == 2 and max(workers["missing"]) == 1, "the killed worker shows as missing"
    states = series_by(outcome(all_outcomes, main, "Runner state"), "instance")[stack.instance]
    assert 3.0 in states, "running (3) appears in the runner state timeline"
    heatmap = outcome(all_outcomes, main, "Response time heatmap", "B")
    assert len(heatmap.values) >= 10, "one series per bucket (le)"
    assert not outcome(all_outcomes, main, "Response time heatmap", "A").values, "no native histogram stored"
    endpoints = [o for o in all_outcomes if o.query.dashboard == main and o.query.panel
                 and o.query.panel["title"] == "Endpoints" and o.query.target["refId"] != "C"]
    assert endpoints and all(o.series for o in endpoints), [o.query.where for o in endpoints if not o.series]
    alerts = outcome(all_outcomes, main, "Firing alerts")
    assert any(s["metric"]["alertname"] == "LocustSlowRequests" for s in alerts.values)
    annotations = {o.query.where: o for o in all_outcomes if o.query.dashboard == main and o.query.kind == "annotation"}
    start = annotations["annotation 'Test start'"].values[0]["values"][-1][1]
    stop = annotations["annotation 'Test stop'"].values[0]["values"][-1][1]
    assert stack.start - 10 < float(start) / 1000 < float(stop) / 1000 < stack.end + 1


def test_variables_list_the_run(all_outcomes):
    variables = {o.query.where: set(o.values) for o in all_outcomes
                 if o.query.dashboard == "locust-metrics.json" and o.query.kind == "variable"}
    assert variables["variable job (job)"] == {"locust"}
    assert variables["variable method (method)"] == {"GET", "POST"}
    assert "/reports/sales" in variables["variable name (name)"]
    assert {"master", "worker-0", "worker-1"} <= variables["variable node (node)"]


def test_dashboards_filter_on_selected_values(stack):
    """With one job, instance, method, name and two nodes selected, every query still runs and filters."""
    selected = {"job": "locust", "instance": grafana_regex(stack.instance), "method": "GET",
                "name": grafana_regex("/reports/sales"), "node": "(master|worker-0)"}
    outcomes = run_queries(stack, selected)
    errors = [(o.query.where, o.error) for o in outcomes if o.error]
    assert not errors, errors
    print(f"\n[dashboards, one endpoint selected] {len(outcomes)} queries, "
          f"{sum(1 for o in outcomes if o.series)} with data")
    for o in outcomes:
        if not o.series:
            print(f"[dashboards, one endpoint selected] empty: {o.query.dashboard}: {o.query.where}")
    names = series_by(outcome(outcomes, "locust-metrics.json", "Requests/s by endpoint"), "name")
    assert set(names) == {"/reports/sales"}
    nodes = series_by(outcome(outcomes, "locust-metrics.json", "CPU per node"), "node")
    assert set(nodes) == {"master", "worker-0"}
    table = outcome(outcomes, "locust-metrics-compare.json", "Endpoints: now vs baseline", "C")
    assert [s["metric"]["name"] for s in table.values] == ["/reports/sales"]


# ----------------------------------------------------------------------------------------------- native histograms on
HEATMAP = "Response time heatmap"

CLASSIC_ONLY = {
    ("locust-metrics.json", HEATMAP, "B"): "the heatmap's classic buckets, only where Prometheus has no native "
    "histogram (`unless on()` the native query), so that Grafana never gets both",
}
"""Dashboard queries that read classic series on purpose (dashboard, panel title, refId: why): with native
histograms on, Prometheus 2.42 stores none of them, and they return nothing. Every other query that returns data
without native histograms must return data with them."""

NATIVE_ONLY = {
    ("locust-metrics.json", HEATMAP, "A"): "the heatmap's native buckets: nothing where only classic ones are stored",
}
"""Dashboard queries that read only the native histogram (dashboard, panel title, refId: why)."""


def named(o: Outcome) -> tuple[str, str, str]:
    """(dashboard, panel title or annotation/variable, refId) of a query, as :data:`CLASSIC_ONLY` names it."""
    if o.query.panel is None:
        return o.query.dashboard, o.query.where, ""
    return o.query.dashboard, o.query.panel["title"], o.query.target["refId"]


def test_with_native_histograms_on_the_queries_that_have_data_still_have_data(all_outcomes, native_outcomes):
    errors = [(o.query.where, o.expr, o.error) for o in native_outcomes if o.error]
    assert not errors, errors
    classic = {(o.query.dashboard, o.query.where): o for o in all_outcomes}  # `where` has the panel id
    native = {(o.query.dashboard, o.query.where): o for o in native_outcomes}
    assert len(classic) == len(all_outcomes) and classic.keys() == native.keys(), "one key per query"
    assert set(CLASSIC_ONLY) | set(NATIVE_ONLY) <= {named(o) for o in all_outcomes}, "the exceptions exist"
    # exactly the listed ones differ: a new classic-only query must be listed (with its reason), a fixed one unlisted
    lost = {named(classic[k]): classic[k].expr for k in classic if classic[k].series and not native[k].series}
    gained = {named(native[k]): native[k].expr for k in classic if native[k].series and not classic[k].series}
    assert lost.keys() == CLASSIC_ONLY.keys(), {k: lost.get(k) for k in lost.keys() ^ CLASSIC_ONLY.keys()}
    assert gained.keys() == NATIVE_ONLY.keys(), {k: gained.get(k) for k in gained.keys() ^ NATIVE_ONLY.keys()}
    with_data = sum(1 for o in native_outcomes if o.series)
    assert with_data / len(native_outcomes) >= MIN_DATA_SHARE


def test_with_native_histograms_on_prometheus_stores_the_native_histogram_only(stack):
    """The premise of the comparison: 2.42 with the flag ingests the duration histogram natively, without its
    classic series; the one without the flag has the classic series only."""
    native, classic, start, now = stack.native, stack.prometheus, stack.start - 5, time.time()
    assert native.series("locust_request_duration_seconds", start, now)
    assert native.series("locust_request_duration_seconds_bucket", start, now) == []
    assert native.series("locust_request_duration_seconds_count", start, now) == []
    assert classic.series("locust_request_duration_seconds", start, now) == []
    assert classic.series("locust_request_duration_seconds_bucket", start, now)


def native_buckets(o: Outcome) -> list[tuple[float, float, float]]:
    """(lower, upper, requests/s) of every non-empty bucket of every native histogram sample of ``o``."""
    cells = []
    for series in o.values:
        for _, sample in sample_points(series):
            assert isinstance(sample, dict), f"a float sample, not a native histogram: {sample}"
            cells += [(float(lower), float(upper), float(count))
                      for _, lower, upper, count in sample.get("buckets", ())]  # no buckets: no requests
    return cells


def test_with_native_histograms_on_the_heatmap_shows_native_buckets(native_outcomes):
    main = "locust-metrics.json"
    heatmap = outcome(native_outcomes, main, HEATMAP, "A")
    assert len(heatmap.values) == 1 and "histograms" in heatmap.values[0] and "values" not in heatmap.values[0], \
        "one series of native histogram samples: Grafana makes one heatmap-cells frame of it"
    cells = native_buckets(heatmap)
    positive = [(lower, upper) for lower, upper, _ in cells if lower > 0]
    assert len({bounds for bounds in positive}) >= 20, "many more buckets than the classic ones"
    # exponential buckets: every bound is the one below times 2^(2^-schema) (schema 6 by default, or lower where
    # --metrics-native-max-buckets halved the resolution of an endpoint), never the classic --metrics-buckets
    growth = {round(upper / lower, 9) for lower, upper in positive}
    assert len(growth) == 1 and growth <= {round(2 ** 2 ** -schema, 9) for schema in (6, 5, 4, 3)}, growth
    # the demo's sales report takes 1.1-1.5 s: requests in buckets there, each about 1% wide at schema 6
    assert any(1.1 <= lower and upper <= 1.6 and count > 0 for lower, upper, count in cells)
    assert not outcome(native_outcomes, main, HEATMAP, "B").values, "the classic query gives way to the native one"


SERIES_START_RATIO = (2 / 3, 1.4)
"""The bounds of slow ratio = rate(slow counter) / histogram_count(rate(native histogram)) in a rate window that
holds the first sample of both series. Prometheus 2.42 extrapolates the two differently there: the float counter
towards its zero point, up to 1.1 sampling intervals before its first sample, the native histogram by half an
interval (its code's "TODO(beorn7): Do this for histograms, too"; newer versions treat both alike). With at
least two samples in the window, the numerators differ by a factor from (S + e) / (S + 0.5 a + e) >= 2/3 to
(S + 1.1 a + e) / (S + 0.5 a + e) <= 1.4 (S: sampled interval >= a, the mean interval; e: extrapolation to the
end, the same for both). Later windows give the counter no more than the histogram: the ratio is at most 1."""


def test_with_native_histograms_on_the_main_dashboard_shows_the_run(stack, native_outcomes):
    main = "locust-metrics.json"
    p95 = series_by(outcome(native_outcomes, main, "p95 by endpoint"), "name")
    finite = [v for v in p95["/reports/sales"] if not math.isnan(v)]
    # every sales report takes at least 1.1 s, and a native bucket is 1.09% wide at schema 6 (2.2% after one
    # halving): no estimate below 1.1 / 1.022, where the classic (1, 1.5] bucket interpolates down towards 1 s
    # (at most 1.5 s plus the client's overhead, and a bucket: the lowest of them near or below 1.5 s)
    assert finite and all(1.1 / 1.022 < v <= 2.0 for v in finite) and min(finite) <= 1.6, finite
    endpoints = {named(o): o for o in native_outcomes if o.query.dashboard == main and o.query.panel
                 and o.query.panel["title"] == "Endpoints"}
    table_p95 = {s["metric"]["name"]: float(s["value"][1]) for s in endpoints[(main, "Endpoints", "F")].values}
    assert 1.1 / 1.022 < table_p95["/reports/sales"] <= 2.0, table_p95
    ratio = outcome(native_outcomes, main, "Slow ratio against the threshold")
    slow = series_by(ratio, "name")
    # every sales report is slow: 1.0 wherever both series are sampled over the whole rate window (exactly: the
    # same requests, scraped together), within SERIES_START_RATIO where the window holds their first sample
    points = [(t, float(v)) for series in ratio.values if series["metric"].get("name") == "/reports/sales"
              for t, v in sample_points(series) if not math.isnan(float(v))]
    first = min(t for series in stack.native.query('locust_slow_requests_total{name="/reports/sales"}[10m]',
                                                   time.time()) for t, _ in sample_points(series))
    settled = [v for t, v in points if t - RATE_INTERVAL > first]
    low, high = SERIES_START_RATIO
    assert settled and max(settled) == 1.0 and all(low <= v <= high for _, v in points), \
        ("histogram_count as the denominator", first, points)
    assert max(v for v in slow["/health"] if not math.isnan(v)) == 0.0
    recorded = series_by(outcome(native_outcomes, main, "p95, 1m (LocustHighLatencyP95)"), "name")
    assert all(1.1 / 1.022 < v <= 2.0 for v in recorded["/reports/sales"] if not math.isnan(v))
    alerts = outcome(native_outcomes, main, "Firing alerts")
    assert any(s["metric"]["alertname"] == "LocustSlowRequests" for s in alerts.values), "the rules read native"
