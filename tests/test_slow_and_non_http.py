"""Slow counts on deterministic endpoints, per-endpoint thresholds, and a non-HTTP User."""

from __future__ import annotations

from pathlib import Path

from support import LOCUSTFILES, csv_stats, free_port, locust, scrape_until_exit


def run_and_scrape(locustfile: str, extra: list[str], host: str, workdir: Path, seconds: int = 6):
    port = free_port()
    args = [
        "-f", str(LOCUSTFILES / locustfile), "--headless", "-u", "4", "-r", "4", "-t", f"{seconds}s",
        "-H", host, "--csv", str(workdir / "run"), "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
        *extra,
    ]
    with locust(args, workdir) as process:
        scrapes = scrape_until_exit(process, port, run_time=seconds)
        code = process.wait(timeout=40)
        output = process.output()
    assert scrapes, output[-3000:]
    return code, output, scrapes[-1], csv_stats(workdir / "run")


def test_slow_counts_are_exact_with_default_and_per_endpoint_thresholds(demo_target: str, workdir: Path) -> None:
    code, output, final, stats = run_and_scrape(
        "slow_fast.py",
        ["--metrics-slow-threshold-for", "per-endpoint=250", "--metrics-slow-threshold-for", "re:regex-.*=5000"],
        demo_target,
        workdir,
    )
    assert code == 0, output[-3000:]
    counts = final.by("locust_request_duration_seconds_count", "name")
    slow = final.by("locust_slow_requests_total", "name")
    for name in ("always-fast", "always-slow", "per-endpoint", "regex-lenient"):
        assert counts[(name,)] == stats[("GET", name)]["requests"] > 0, name
    assert slow[("always-fast",)] == 0
    assert slow[("always-slow",)] == counts[("always-slow",)]
    assert slow[("per-endpoint",)] == counts[("per-endpoint",)]
    assert slow[("regex-lenient",)] == 0
    thresholds = final.by("locust_slow_request_threshold_seconds", "name")
    assert thresholds == {("always-fast",): 1.0, ("always-slow",): 1.0, ("per-endpoint",): 0.25, ("regex-lenient",): 5.0}
    # every threshold is a bucket bound, so le="<threshold>" is exact: count - slow
    for name, le in (("always-slow", "1.0"), ("per-endpoint", "0.25"), ("regex-lenient", "5.0")):
        bucket = final.sum("locust_request_duration_seconds_bucket", name=name, le=le)
        assert bucket == counts[(name,)] - slow[(name,)], (name, le)


def test_non_http_user_counts_status_zero_and_exception_class(demo_target: str, workdir: Path) -> None:
    code, output, final, stats = run_and_scrape("non_http.py", [], demo_target, workdir, seconds=4)
    assert code == 1, output[-3000:]  # the timeouts are failures
    requests = final.by("locust_requests_total", "method", "name", "status_code")
    assert {status for _, _, status in requests} == {"0"}
    for name in ("publish", "publish-timeout", "fire-and-forget"):
        assert requests[("queue", name, "0")] == stats[("queue", name)]["requests"] > 0
    failures = final.by("locust_request_failures_total", "name", "error")
    assert failures == {("publish-timeout", "TimeoutError"): stats[("queue", "publish-timeout")]["failures"]}
    counts = final.by("locust_request_duration_seconds_count", "name")
    assert counts[("publish",)] == stats[("queue", "publish")]["requests"]
    assert counts[("fire-and-forget",)] == 0, "no response time: not in the histogram"
    assert final.sum("locust_response_size_bytes_total", name="publish") == 7 * counts[("publish",)]


def test_a_second_import_and_a_reload_count_nothing_twice(demo_target: str, workdir: Path) -> None:
    code, output, final, stats = run_and_scrape("double_import.py", [], demo_target, workdir, seconds=3)
    assert code == 0, output[-3000:]
    assert final.sum("locust_requests_total") == stats[("", "Aggregated")]["requests"] > 0
    assert final.sum("locust_request_duration_seconds_count") == stats[("GET", "/health")]["requests"]
