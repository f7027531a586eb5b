"""A real Prometheus scrapes a real run; after Locust exited, Prometheus holds the final numbers."""

from __future__ import annotations

import re
from pathlib import Path

from support import REPO, PrometheusServer, csv_stats, free_port, locust, prometheus_config


def test_prometheus_gets_the_final_numbers_before_locust_exits(demo_target: str, workdir: Path) -> None:
    port = free_port()
    config = prometheus_config([f"127.0.0.1:{port}"], scrape_interval="1s")
    with PrometheusServer(workdir / "prometheus", config) as prometheus:
        args = ["-f", str(REPO / "examples" / "locustfile.py"), "--headless", "-u", "20", "-r", "20", "-t", "8s",
                "-H", demo_target, "--csv", str(workdir / "run"),
                "--metrics-port", str(port), "--metrics-host", "127.0.0.1", "--metrics-final-scrape-timeout", "10"]
        with locust(args, workdir) as process:
            code = process.wait(timeout=60)  # exits by itself: test over, final scrape answered
            output = process.output()
        assert code in (0, 1), output[-3000:]
        # Prometheus scrapes on its own schedule: when a scrape lands between the test's stop and Locust's quit
        # it already has the final numbers, and the exporter rightly waits for nothing (no line); else it waits
        # for the next scrape, at most 2 intervals + 1 s (the queries below show the final numbers either way)
        waited = re.search(r"waiting up to ([\d.]+)s for a final scrape of .* \(scraped every ([\d.]+)s\)", output)
        assert waited or "for a final scrape" not in output, output[-3000:]
        assert not waited or float(waited[1]) <= 2 * float(waited[2]) + 1 <= 4, "Prometheus scrapes every second"

        total = csv_stats(workdir / "run")[("", "Aggregated")]["requests"]
        # counters only grow, so the highest value Prometheus holds is the last one it scraped
        in_prometheus = prometheus.query_value("sum(max_over_time(locust_request_duration_seconds_count[5m]))")
        assert in_prometheus is not None and float(in_prometheus) == total > 0
        # the demo target fails about 2% of requests at random: a short run may have none, and then no failure
        # series exists (nothing to query), as Locust's --csv has 0
        failures = prometheus.query_value("sum(max_over_time(locust_request_failures_total[5m]))")
        assert float(failures or 0) == csv_stats(workdir / "run")[("", "Aggregated")]["failures"]
        stopped = prometheus.query_value("max(max_over_time(locust_test_stop_time_seconds[5m]))")
        assert stopped is not None, "the scrape after the test stopped reached Prometheus"
