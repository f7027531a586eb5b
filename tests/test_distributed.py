"""Distributed runs: one exact endpoint on the master for --master/--worker and --processes."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import msgpack
import pytest
from support import (
    REPO,
    Samples,
    assert_counters_never_decrease,
    assert_exact_per_endpoint,
    csv_stats,
    free_port,
    locust,
    promtool_check_metrics,
    scrape,
    scrape_until_exit,
)

EXAMPLE = str(REPO / "examples" / "locustfile.py")


def assert_master_is_exact(final: Samples, stats: dict) -> None:
    assert len(stats) >= 9, stats  # the example's endpoints and the Aggregated row
    assert_exact_per_endpoint(final, stats)
    counts = final.by("locust_request_duration_seconds_count", "method", "name")
    slow = final.by("locust_slow_requests_total", "method", "name")
    assert slow[("GET", "/reports/sales")] == counts[("GET", "/reports/sales")] > 0


def assert_nodes(final: Samples, nodes: set[str]) -> None:
    for metric in ("locust_process_cpu_seconds_total", "locust_process_cpu_usage_ratio",
                   "locust_process_resident_memory_bytes"):
        assert {labels["node"] for labels, _ in final.select(metric)} == nodes, metric
    assert all(value > 10_000_000 for _, value in final.select("locust_process_resident_memory_bytes"))


def test_master_with_two_workers_is_exact(demo_target: str, workdir: Path) -> None:
    port, master_port = free_port(), free_port()
    common = ["-f", EXAMPLE, "-H", demo_target]
    with locust([*common, "--worker", "--master-port", str(master_port)], workdir, name="worker1"), \
            locust([*common, "--worker", "--master-port", str(master_port)], workdir, name="worker2"), \
            locust([*common, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port),
                    "--expect-workers", "2", "--headless", "-u", "20", "-r", "20", "-t", "10s",
                    "--csv", str(workdir / "run"), "--metrics-port", str(port), "--metrics-host", "127.0.0.1"],
                   workdir, name="master") as master:
        scrapes = scrape_until_exit(master, port, run_time=10)
        assert master.wait(timeout=60) in (0, 1), master.output()[-3000:]
    live = [s for s in scrapes if s.sum("locust_users") == 20]
    assert live, "users by class come from the workers' reports"
    assert live[-1].by("locust_workers", "state") == {("ready",): 0, ("spawning",): 0, ("running",): 2, ("missing",): 0}
    final = scrapes[-1]
    assert_master_is_exact(final, csv_stats(workdir / "run"))
    assert_nodes(live[-1], {"master", "worker-0", "worker-1"})
    # the workers quit at the end; their last CPU and memory stay until the next test (a missing one's do not)
    assert_nodes(final, {"master", "worker-0", "worker-1"})
    assert all(final.sum("locust_process_cpu_seconds_total", node=node) >= live[-1].sum(
        "locust_process_cpu_seconds_total", node=node) > 0 for node in ("worker-0", "worker-1"))
    check = promtool_check_metrics(final.text)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check


def test_processes_mode_is_exact(demo_target: str, workdir: Path) -> None:
    port = free_port()
    args = ["-f", EXAMPLE, "-H", demo_target, "--processes", "2", "--headless", "-u", "20", "-r", "20", "-t", "10s",
            "--csv", str(workdir / "run"), "--metrics-port", str(port), "--metrics-host", "127.0.0.1"]
    with locust(args, workdir) as process:
        scrapes = scrape_until_exit(process, port, run_time=10)
        assert process.wait(timeout=60) in (0, 1), process.output()[-3000:]
    final = scrapes[-1]
    assert_master_is_exact(final, csv_stats(workdir / "run"))
    live = [s for s in scrapes if s.sum("locust_users") == 20]
    assert_nodes(live[-1], {"master", "worker-0", "worker-1"})
    assert_nodes(final, {"master", "worker-0", "worker-1"})  # the workers' final figures


def test_worker_nodes_keep_a_quit_worker_until_the_next_test_and_drop_a_missing_one() -> None:
    from types import SimpleNamespace

    from locust_metrics.distributed import WorkerNodes
    from locust_metrics.resources import NodeResources

    nodes, figures = WorkerNodes(), NodeResources(1.0, 0.5, 2e7, 0.0)
    nodes.reported("a", "worker-0", figures)
    nodes.reported("b", "worker-1", figures)
    running = SimpleNamespace(state="running")
    assert set(nodes.figures({"a": running, "b": running})) == {"worker-0", "worker-1"}
    assert set(nodes.figures({"b": SimpleNamespace(state="missing")})) == {"worker-0", "worker-1"}  # a quit
    assert set(nodes.figures({})) == {"worker-0"}, "b was missing, then dropped: gone; a quit: kept"
    nodes.forget_gone({})
    assert nodes.figures({}) == {}, "a new test: the workers that quit are forgotten"


def test_a_killed_worker_loses_nothing_already_received(demo_target: str, workdir: Path) -> None:
    port, master_port = free_port(), free_port()
    common = ["-f", EXAMPLE, "-H", demo_target]
    with locust([*common, "--worker", "--master-port", str(master_port)], workdir, name="worker1") as worker1, \
            locust([*common, "--worker", "--master-port", str(master_port)], workdir, name="worker2"), \
            locust([*common, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port),
                    "--expect-workers", "2", "--headless", "-u", "10", "-r", "10", "-t", "60s",
                    "--metrics-port", str(port), "--metrics-host", "127.0.0.1"], workdir, name="master") as master:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if scrape(port).sum("locust_requests_total") > 50:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        history = [scrape(port)]
        worker1.signal(signal.SIGKILL)
        missing = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and missing is None:
            time.sleep(0.5)
            samples = scrape(port)  # the master keeps serving
            history.append(samples)
            if samples.sum("locust_workers", state="missing") == 1:
                missing = samples
        assert missing is not None, master.output()[-3000:]
        for _ in range(4):  # the survivor's reports keep coming
            time.sleep(1)
            history.append(scrape(port))
        master.signal(signal.SIGTERM)
        master.wait(timeout=60)
    assert_counters_never_decrease(history, ("locust_requests_total", "locust_request_duration_seconds_count",
                                             "locust_request_failures_total", "locust_slow_requests_total"))
    assert history[-1].sum("locust_requests_total") > history[0].sum("locust_requests_total")
    assert {labels["node"] for labels, _ in missing.select("locust_process_cpu_seconds_total")} >= {"master"}


def test_a_late_worker_is_counted_from_its_first_report(demo_target: str, workdir: Path) -> None:
    port, master_port = free_port(), free_port()
    common = ["-f", EXAMPLE, "-H", demo_target]
    master_args = [*common, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port),
                   "--expect-workers", "1", "--enable-rebalancing", "--headless", "-u", "10", "-r", "10", "-t", "14s",
                   "--csv", str(workdir / "run"), "--metrics-port", str(port), "--metrics-host", "127.0.0.1"]
    with locust([*common, "--worker", "--master-port", str(master_port)], workdir, name="worker1"), \
            locust(master_args, workdir, name="master") as master:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if scrape(port).sum("locust_requests_total") > 0:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        with locust([*common, "--worker", "--master-port", str(master_port)], workdir, name="worker2"):
            scrapes = scrape_until_exit(master, port, run_time=14)
            assert master.wait(timeout=60) in (0, 1), master.output()[-3000:]
    assert any({"worker-0", "worker-1"} <= {labels["node"] for labels, _ in s.select("locust_process_cpu_seconds_total")}
               for s in scrapes), "the late worker's figures arrived with its reports"
    assert_master_is_exact(scrapes[-1], csv_stats(workdir / "run"))


def test_per_worker_endpoint_is_opt_in(demo_target: str, workdir: Path) -> None:
    port, master_port, base = free_port(), free_port(), free_port()
    common = ["-f", EXAMPLE, "-H", demo_target]
    with locust([*common, "--worker", "--master-port", str(master_port), "--metrics-worker-port", str(base)],
                workdir, name="worker1"), \
            locust([*common, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port),
                    "--expect-workers", "1", "--headless", "-u", "5", "-r", "5", "-t", "8s",
                    "--metrics-port", str(port), "--metrics-host", "127.0.0.1"], workdir, name="master") as master:
        deadline = time.monotonic() + 30
        worker = None
        while time.monotonic() < deadline:
            time.sleep(1)
            try:
                worker = scrape(base)  # worker index 0: base + 0
            except OSError:
                continue
            if worker.sum("locust_requests_total") > 0:
                break
        assert worker is not None and worker.sum("locust_requests_total") > 0
        assert {labels["node"] for labels, _ in worker.select("locust_process_cpu_seconds_total")} == {"worker-0"}
        later = scrape(base)
        assert later.sum("locust_requests_total") >= worker.sum("locust_requests_total"), "cumulative"
        master.wait(timeout=60)


# ---------------------------------------------------------------------------------------------- unit tests
def test_payload_round_trips_through_msgpack_and_merges_exactly() -> None:
    from locust_metrics.distributed import PAYLOAD_KEY, PayloadMerger, take_payload
    from locust_metrics.recorder import OVERFLOW, RequestRecorder

    class Response:
        status_code = 200

    worker = RequestRecorder((10.0, 100.0), 50.0, max_names=10)
    for i in range(30):
        worker.on_request("GET", f"/n{i % 5}", float(i * 5), 2, response=Response(), exception=ValueError() if i % 3 == 0 else None)
    payload = take_payload(worker, "worker-3", None)
    assert worker.endpoints == {} and worker.dropped == 0
    wire = msgpack.unpackb(msgpack.packb({PAYLOAD_KEY: [payload]}), raw=False)[PAYLOAD_KEY]

    master = RequestRecorder((10.0, 100.0), 50.0, max_names=3)
    merger = PayloadMerger(master)
    assert merger.merge(wire[0]) == 30
    assert merger.merge(wire[0]) == 30  # a second report adds again: counters only grow
    assert master.totals() == {"requests": 60, "failures": 20, "count": 60, "slow": 2 * 19}
    assert master.dropped == 2 * 12 and master.endpoints[("GET", OVERFLOW)].requests == 24

    coarse = RequestRecorder((100.0,), 50.0)  # bounds 50 (the threshold is a bound too) and 100
    PayloadMerger(coarse).merge(wire[0])  # other bounds than the worker's 10, 50, 100: re-binned, totals exact
    assert coarse.totals()["count"] == 30
    assert sum(e.folded().buckets[0] for e in coarse.endpoints.values()) == 11  # <= 50 ms: 0..50 step 5
    assert sum(e.folded().buckets[1] for e in coarse.endpoints.values()) == 10  # <= 100 ms: 55..100 step 5

    with pytest.raises(ValueError):
        PayloadMerger(master).merge({"v": 99})
