"""Native histograms in real runs: a real Prometheus 2.42 with ``--enable-feature=native-histograms`` scrapes a
real Locust (local, ``--master`` with two real ``--worker`` processes, ``--processes``) run with
``--metrics-native-histograms``; the native buckets of every endpoint's histogram (their counts summed, the zero
bucket included) and its ``histogram_count`` equal Locust's own ``--csv`` count exactly. (``histogram_count`` alone
would not do: Prometheus takes it from the ``sample_count`` we serve, the classic count.) Meanwhile a text scraper
gets text and a protobuf one protobuf.

Prometheus is the only periodic scraper of each run: the exporter waits at exit for one more scrape, so a
second periodic scraper could take the final numbers from it (a Prometheus without the flag, which gets the
classic series as before, is in tests/test_native_histograms.py and test_native_exposition.py). Each test is
one bounded run (8 s of load against the session's demo target on 127.0.0.1).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from support import (
    REPO,
    PrometheusServer,
    csv_stats,
    free_port,
    http_request,
    locust,
    native_totals,
    processes_args,
    prometheus_config,
    sample_points,
    scrape,
    wait_for,
)
from test_native_histograms import PROMETHEUS_2_42_NATIVE_ACCEPT, WireReader

from locust_metrics import protobuf as pb
from locust_metrics.threshold_reports import alert_rules

EXAMPLE = str(REPO / "examples" / "locustfile.py")
RUN_S = 8


FAILING = ["p50<1ms", "max<1ms", "avg<1ms", "GET /search:p90<=1ms"]
PASSING = ["p99<60s", "max<60s", "avg<60s", "max>=1ms", "each GET /:p95<=60s"]
"""Thresholds of the alert rules (``python -m locust_metrics alert-rules``) that the local run's Prometheus
evaluates: the demo target's requests take less than 60 s, its searches (70-190 ms) and the median request more than
1 ms (its `/` may answer within 1 ms: no endpoint-specific threshold on it may be meant to fail)."""


def native_prometheus(workdir: Path, port: int, rules: Mapping[str, Any] | None = None) -> PrometheusServer:
    """A Prometheus 2.42 with native histograms on, scraping 127.0.0.1:``port`` every second, evaluating
    ``rules`` (``{file name: rule file}``) every second."""
    config = prometheus_config([f"127.0.0.1:{port}"], scrape_interval="1s")
    return PrometheusServer(workdir / "prometheus", config, rules or {},
                            extra_args=["--enable-feature=native-histograms"])


def native_counts(prometheus: PrometheusServer, start: float, end: float) -> dict[tuple[str, str], tuple[float, float]]:
    """Per (method, name): ``(histogram count, sum of the native buckets' counts)`` of the native histogram's last
    sample stored over the run (:func:`native_totals`; every raw sample, the highest count: counts only grow)."""
    result = prometheus.query(f"locust_request_duration_seconds[{math.ceil(end - start) + 5}s]", end)
    return {(s["metric"]["method"], s["metric"]["name"]): max(native_totals(h) for _, h in sample_points(s))
            for s in result}


def assert_prometheus_is_exact(native: PrometheusServer, stats: dict, start: float, output: str = "") -> None:
    """Prometheus' native histograms of the run equal Locust's ``--csv`` ``stats`` exactly (their buckets and
    their counts); ``output``: the master's, which must not say that a worker sent no native histograms."""
    entries = {key: value["requests"] for key, value in stats.items() if key != ("", "Aggregated")}
    assert len(entries) >= 8, entries
    # exactly, every endpoint, nothing else: the buckets hold what the count says
    assert native_counts(native, start, time.time()) == {key: (n, n) for key, n in entries.items()}
    assert "sent no native histograms" not in output, output[-3000:]
    # Prometheus 2.42 with the flag ingests a histogram served with native buckets as native only (no
    # scrape_classic_histograms before 2.45): no classic series; the counters are as ever
    assert native.query("locust_request_duration_seconds_count") == []
    total = stats[("", "Aggregated")]["requests"]
    assert native.query_value("sum(max_over_time(locust_requests_total[5m]))") == total


def test_local_run_native_counts_equal_locust_csv_in_prometheus(demo_target: str, workdir: Path) -> None:
    """Also: the threshold alert rules work where Prometheus stores the duration histogram as a native one only
    (they fall back to ``histogram_count``/``histogram_sum``/``histogram_fraction``): the failing thresholds
    fire, the passing ones never do."""
    port = free_port()
    rules = {"thresholds.rules.yml": {"groups": [alert_rules(FAILING + PASSING, window="1m", for_="0s")]}}
    with native_prometheus(workdir, port, rules) as prometheus:
        start = time.time()
        args = ["-f", EXAMPLE, "--headless", "-u", "20", "-r", "20", "-t", f"{RUN_S}s", "-H", demo_target,
                "--csv", str(workdir / "run"), "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
                "--metrics-native-histograms", "true", "--metrics-final-scrape-timeout", "10"]
        with locust(args, workdir) as process:
            url = f"http://127.0.0.1:{port}/metrics"
            # mid-run, one scrape each: a text scraper (no Accept header) gets text, Prometheus's header protobuf
            # (waited for: a scrape between init and the first request has no requests yet)
            wait_for(lambda: scrape(port).sum("locust_request_duration_seconds_count") > 0, timeout=30,
                     what="a text scrape with requests")
            answer = http_request(url, headers={"Accept": PROMETHEUS_2_42_NATIVE_ACCEPT})
            assert answer.headers["Content-Type"] == pb.CONTENT_TYPE
            names = {pb.MetricFamily.FromString(m).name for m in WireReader.delimited(answer.body)}
            assert {"locust_request_duration_seconds", "locust_requests_total"} <= names
            assert process.wait(timeout=60) in (0, 1), process.output()[-3000:]
        assert_prometheus_is_exact(prometheus, csv_stats(workdir / "run"), start)
        fired = {s["metric"]["threshold"] for s in prometheus.query_range('ALERTS{alertstate="firing"}', start,
                                                                             time.time())}
        assert fired == set(FAILING)


def test_master_with_two_workers_native_counts_equal_locust_csv(demo_target: str, workdir: Path) -> None:
    """Only the master has the option: the workers adopt it from the master's options on spawn."""
    port, master_port = free_port(), free_port()
    common = ["-f", EXAMPLE, "-H", demo_target]
    with native_prometheus(workdir, port) as prometheus:
        start = time.time()
        with locust([*common, "--worker", "--master-port", str(master_port)], workdir, name="worker1"), \
                locust([*common, "--worker", "--master-port", str(master_port)], workdir, name="worker2"), \
                locust([*common, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port),
                        "--expect-workers", "2", "--headless", "-u", "20", "-r", "20", "-t", f"{RUN_S}s",
                        "--csv", str(workdir / "run"), "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
                        "--metrics-native-histograms", "true", "--metrics-final-scrape-timeout", "10"],
                       workdir, name="master") as master:
            assert master.wait(timeout=90) in (0, 1), master.output()[-3000:]
            output = master.output()
        assert_prometheus_is_exact(prometheus, csv_stats(workdir / "run"), start, output)


def test_processes_mode_native_counts_equal_locust_csv(demo_target: str, workdir: Path) -> None:
    port = free_port()
    with native_prometheus(workdir, port) as prometheus:
        start = time.time()
        args = ["-f", EXAMPLE, "-H", demo_target, *processes_args(2), "--headless", "-u", "20", "-r", "20",
                "-t", f"{RUN_S}s", "--csv", str(workdir / "run"), "--metrics-port", str(port),
                "--metrics-host", "127.0.0.1", "--metrics-native-histograms", "true",
                "--metrics-final-scrape-timeout", "10"]
        with locust(args, workdir) as process:
            assert process.wait(timeout=90) in (0, 1), process.output()[-3000:]
            output = process.output()
        assert_prometheus_is_exact(prometheus, csv_stats(workdir / "run"), start, output)


def test_a_late_worker_ships_native_histograms_from_its_first_report(demo_target: str, workdir: Path) -> None:
    """A worker that joins a running test adopts the master's option on its spawn message and ships native deltas
    from its first report: the counts stay exact."""
    port, master_port = free_port(), free_port()
    common = ["-f", EXAMPLE, "-H", demo_target]
    master_args = [*common, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port),
                   "--expect-workers", "1", "--enable-rebalancing", "--headless", "-u", "10", "-r", "10", "-t", "12s",
                   "--csv", str(workdir / "run"), "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
                   "--metrics-native-histograms", "true", "--metrics-final-scrape-timeout", "10"]
    with native_prometheus(workdir, port) as prometheus:
        start = time.time()
        with locust([*common, "--worker", "--master-port", str(master_port)], workdir, name="worker1"), \
                locust(master_args, workdir, name="master") as master:
            wait_for(lambda: (prometheus.query_value("sum(histogram_count(locust_request_duration_seconds))") or 0) > 0,
                     45, 0.5, what="the first native counts in Prometheus", retry_on=(),
                     explain=lambda: master.output()[-3000:])
            with locust([*common, "--worker", "--master-port", str(master_port)], workdir, name="worker2"):
                assert master.wait(timeout=90) in (0, 1), master.output()[-3000:]
            output = master.output()
        assert prometheus.query("locust_process_cpu_seconds_total[5m]") and prometheus.series(
            'locust_process_cpu_seconds_total{node="worker-1"}'), "the late worker reported"
        assert_prometheus_is_exact(prometheus, csv_stats(workdir / "run"), start, output)
