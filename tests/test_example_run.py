"""A real headless run of the bundled example against the demo target: the exported counts equal Locust's."""

from __future__ import annotations

import re
from pathlib import Path

from support import (
    REPO,
    assert_counters_never_decrease,
    assert_exact_per_endpoint,
    csv_failures,
    csv_stats,
    free_port,
    locust,
    promtool_check_metrics,
    scrape_until_exit,
)


def test_example_run_is_exact_per_endpoint_and_checks_clean(demo_target: str, workdir: Path) -> None:
    port = free_port()
    args = [
        "-f", str(REPO / "examples" / "locustfile.py"),
        "--headless", "-u", "20", "-r", "20", "-t", "12s",
        "-H", demo_target,
        "--csv", str(workdir / "run"),  # not with --json-file: it zeroes Locust's entries as it writes
        "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
        "--metrics-final-scrape-timeout", "20",
    ]
    with locust(args, workdir) as process:
        scrapes = scrape_until_exit(process, port, run_time=12)
        code = process.wait(timeout=40)
        output = process.output()
    assert code in (0, 1), output[-3000:]  # 1: the demo target's failures are failures
    waited = re.search(r"waiting up to ([\d.]+)s for a final scrape of http://127\.0\.0\.1:\d+/metrics "
                       r"\(scraped every ([\d.]+)s\)", output)
    assert waited, output[-3000:]
    assert float(waited[1]) <= 2 * float(waited[2]) + 1 <= 4, "no longer than the scraper's next scrape can take"
    assert len(scrapes) >= 5, "the endpoint was scraped during the run"

    # live during the run: traffic is visible before the test ends, and counters never go backwards
    during = [s for s in scrapes if not s.select("locust_test_stop_time_seconds")]
    assert during and during[-1].sum("locust_requests_total") > 0
    assert_counters_never_decrease(scrapes, ("locust_requests_total", "locust_request_failures_total"))

    final = scrapes[-1]
    stats = csv_stats(workdir / "run")
    assert len(stats) >= 9, stats  # the example's endpoints and the Aggregated row
    assert_exact_per_endpoint(final, stats)
    counts = final.by("locust_request_duration_seconds_count", "method", "name")

    # failure classes (the demo's 404s on /products/[id], 500s at checkout, ...): exactly Locust's failures, as
    # "HTTP <status>", the failure message or the exception class, never a URL
    errors = final.by("locust_request_failures_total", "name", "error")
    assert errors == csv_failures(workdir / "run"), (errors, csv_failures(workdir / "run"))
    assert not any("http://" in error or "127.0.0.1" in error for _, error in errors)
    # the slow endpoint is always slow, and users/runner/resources are there
    slow = final.by("locust_slow_requests_total", "name")
    assert slow[("/reports/sales",)] == counts[("GET", "/reports/sales")] > 0
    users = during[-1].by("locust_users", "user_class")
    assert sum(users.values()) == 20, users
    assert final.sum("locust_users_target") == 20
    assert final.by("locust_runner_state", "state")[("stopped",)] == 1
    assert final.sum("locust_process_resident_memory_bytes", node="local") > 10_000_000
    assert final.sum("locust_process_cpu_seconds_total", node="local") > 0
    (info,) = final.select("locust_test_info")
    assert info[0]["host"] == demo_target and info[0]["locustfile"] == "locustfile.py" and len(info[0]["run_id"]) == 12
    assert final.sum("locust_test_stop_time_seconds") >= final.sum("locust_test_start_time_seconds") > 0

    check = promtool_check_metrics(final.text)
    assert check.returncode == 0 and check.stdout.strip() == "" and check.stderr.strip() == "", check
