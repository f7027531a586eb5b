"""Distributed runs: one exact endpoint on the master for --master/--worker and --processes."""

from __future__ import annotations

import logging
import signal
import time
from bisect import bisect_left
from pathlib import Path

import msgpack
import pytest
from locust.exception import CatchResponseError
from support import (
    REPO,
    NoStatus,
    Response,
    Samples,
    assert_counters_never_decrease,
    assert_exact_per_endpoint,
    csv_stats,
    free_port,
    locust,
    make_recorder,
    processes_args,
    promtool_check_metrics,
    scrape,
    scrape_until_exit,
    wait_for,
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
    args = ["-f", EXAMPLE, "-H", demo_target, *processes_args(2), "--headless", "-u", "20", "-r", "20", "-t", "10s",
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
        wait_for(lambda: scrape(port).sum("locust_requests_total") > 50, 30, 0.5, what="50 requests",
                 explain=lambda: master.output()[-3000:])
        history = [scrape(port)]
        worker1.signal(signal.SIGKILL)

        def marked_missing() -> Samples | None:
            samples = scrape(port)  # the master keeps serving: no error is retried
            history.append(samples)
            return samples if samples.sum("locust_workers", state="missing") == 1 else None

        missing = wait_for(marked_missing, 20, 0.5, what="the killed worker marked missing", retry_on=(),
                           explain=lambda: master.output()[-3000:])
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
        wait_for(lambda: scrape(port).sum("locust_requests_total") > 0, 30, 0.5, what="the first requests",
                 explain=lambda: master.output()[-3000:])
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
        # worker index 0 serves on base + 0; wait_for fails the test unless it shows requests within 30 s
        worker = wait_for(lambda: (s := scrape(base)).sum("locust_requests_total") > 0 and s, 30, 1.0,
                          what="requests on the worker's own endpoint")
        assert {labels["node"] for labels, _ in worker.select("locust_process_cpu_seconds_total")} == {"worker-0"}
        later = scrape(base)
        assert later.sum("locust_requests_total") >= worker.sum("locust_requests_total"), "cumulative"
        master.wait(timeout=60)


# ---------------------------------------------------------------------------------------------- unit tests
def test_payload_round_trips_through_msgpack_and_merges_exactly() -> None:
    from locust_metrics.distributed import PAYLOAD_KEY, PayloadMerger, take_payload
    from locust_metrics.recorder import OVERFLOW, RequestRecorder

    worker = RequestRecorder((10.0, 100.0), 50.0, max_names=10)
    for i in range(30):
        worker.on_request("GET", f"/n{i % 5}", float(i * 5), 2, response=Response(200), exception=ValueError() if i % 3 == 0 else None)
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


# requests of every kind: names, methods, times on and around bounds, none, statuses, failures of each sort
MERGE_EVENTS = [
    dict(request_type=method, name=name, response_time=t, response_length=i % 7,
         response=[Response(200), Response(404), Response(503), None, NoStatus()][i % 5],
         exception=[None, None, CatchResponseError(f"bad {i % 3}"), ConnectionResetError("reset"), "a string"][i % 5])
    for i, (method, name, t) in enumerate(
        (method, name, t) for method in ("GET", "POST") for name in ("/a", "/b", 'q"uote\n')
        for t in (0.0, 4.9, 5.0, 10.0, 10.5, 49.0, 50.0, 75.0, 99.0, 100.0, 101.0, 300.0, 999.5, 1000.0, 1000.5,
                  2500.0, 70_000.0, None))
]


def merge_state(recorder) -> dict:
    """Everything a recorder exports, per endpoint."""
    return {key: (e.folded(), dict(e.failures)) for key, e in recorder.endpoints.items()}


def test_merged_reports_equal_recording_on_the_master_itself() -> None:
    """Same bounds: each report (take_payload, then msgpack as Locust ships it) adds exactly what it holds, so the
    master ends up with what it would hold had it recorded every request itself; the worker starts over."""
    from locust_metrics.distributed import PayloadMerger, take_payload

    worker, direct, master = (make_recorder(slow_threshold=250) for _ in range(3))
    merger = PayloadMerger(master)
    half = len(MERGE_EVENTS) // 2
    for events in (MERGE_EVENTS[:half], MERGE_EVENTS[half:]):  # two reports
        for event in events:
            worker.on_request(**event)
            direct.on_request(**event)
        wire = msgpack.unpackb(msgpack.packb(take_payload(worker, "worker-0", None)), raw=False)
        assert worker.endpoints == {}
        assert merger.merge(wire) == len(events)
    assert merge_state(master) == merge_state(direct)
    assert master.totals()["requests"] == len(MERGE_EVENTS)


@pytest.mark.parametrize("worker_buckets,master_buckets", [(".01,.1,1", ".05,.5"), (".05,.5", ".01,.1,1"),
                                                           (".075,.3", ".1"), (".1", ".005,.05,.5,5")])
def test_a_report_with_other_bounds_is_rebinned_to_the_next_master_bound(worker_buckets, master_buckets,
                                                                           caplog) -> None:
    """Other bounds on a worker (a misconfiguration): each of its buckets lands in the master's smallest bound
    that is >= its own (so no request counts as faster than it was: at every ``le`` the master counts at most
    what it would have recorded itself); everything else stays exact; one warning."""
    from locust_metrics.distributed import PayloadMerger, take_payload

    worker = make_recorder(buckets=worker_buckets, slow_threshold=250)
    direct, master = (make_recorder(buckets=master_buckets, slow_threshold=250) for _ in range(2))
    assert worker.bounds_ms != master.bounds_ms
    merger = PayloadMerger(master)
    with caplog.at_level(logging.WARNING, logger="locust_metrics"):
        for _ in range(2):  # two reports
            for event in MERGE_EVENTS:
                worker.on_request(**event)
                direct.on_request(**event)
            merger.merge(take_payload(worker, "worker-0", None))
    assert sum("other histogram buckets" in r.getMessage() for r in caplog.records) == 1
    for key, endpoint in direct.endpoints.items():
        got, want = master.endpoints[key].folded(), endpoint.folded()
        assert got._replace(buckets=None) == want._replace(buckets=None), key  # count, sum, slow, sizes, statuses
        assert master.endpoints[key].failures == endpoint.failures
        expected = [0] * (len(master.bounds_ms) + 1)
        for event in MERGE_EVENTS:
            t = event["response_time"]
            if (event["request_type"], event["name"]) == key and t is not None:
                worker_bound = next((b for b in worker.bounds_ms if t <= b), float("inf"))
                expected[bisect_left(master.bounds_ms, worker_bound)] += 2
        assert got.buckets == expected, key
