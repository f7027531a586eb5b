"""Locust as a library through ``install()``, and ``/metrics`` on Locust's web UI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from support import LOCUSTFILES, Samples, child_env, free_port, http_get, locust, wait_for_http

LIBRARY_SCRIPT = r"""
import json, sys, urllib.request
import gevent
from locust import HttpUser, constant, task
from locust.env import Environment
import locust_metrics
from locust_metrics import OptionError, install
from prometheus_client import generate_latest

host, port = sys.argv[1], int(sys.argv[2])

class HealthUser(HttpUser):
    wait_time = constant(0.05)
    @task
    def health(self):
        self.client.get("/health")

env = Environment(user_classes=[HealthUser], host=host)
exporter = install(env, port=port, host="127.0.0.1", labels={"env": "lib"}, slow_thresholds={"/health": 0.001})
same = install(env, port=port)   # idempotent: same exporter, no second server, no second listener
errors = []
for bad in ({"max_names": 0}, {"buckets": "2,1"}, {"port": -1}, {"slow_threshold": "soon"}):
    try:
        install(Environment(user_classes=[HealthUser]), **bad)
    except OptionError as exc:
        errors.append(str(exc))
quiet = install(Environment(user_classes=[HealthUser]), port=0)  # no server of its own
runner = env.create_local_runner()
runner.start(3, spawn_rate=10)
gevent.sleep(2)
runner.quit()
scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
print(json.dumps({
    "same": same is exporter,
    "server_off": quiet.server is None,
    "errors": errors,
    "locust_requests": env.stats.total.num_requests,
    "registry_text": generate_latest(exporter.registry).decode(),
    "scraped": scraped,
}))
"""


def test_install_as_a_library_is_idempotent_validates_and_exposes_its_registry(demo_target: str, workdir: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-c", LIBRARY_SCRIPT, demo_target, str(port)],
        capture_output=True, text=True, timeout=60, env=child_env(), cwd=workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["same"] and data["server_off"]
    assert [e.split(":")[0] for e in data["errors"]] == [
        "invalid value for --metrics-max-names (LOCUST_METRICS_MAX_NAMES)",
        "invalid value for --metrics-buckets (LOCUST_METRICS_BUCKETS)",
        "invalid value for --metrics-port (LOCUST_METRICS_PORT)",
        "invalid value for --metrics-slow-threshold (LOCUST_METRICS_SLOW_THRESHOLD)",
    ]
    for text in (data["registry_text"], data["scraped"]):
        samples = Samples(text)
        assert samples.sum("locust_requests_total", env="lib") == data["locust_requests"] > 0
        assert samples.sum("locust_request_duration_seconds_count") == data["locust_requests"]
        assert samples.sum("locust_slow_request_threshold_seconds", name="/health") == 0.000001


def test_web_ui_serves_metrics_too(demo_target: str, workdir: Path) -> None:
    web_port, metrics_port = free_port(), free_port()
    args = ["-f", str(LOCUSTFILES / "double_import.py"), "-H", demo_target, "--web-host", "127.0.0.1",
            "--web-port", str(web_port), "--autostart", "-u", "2", "-r", "2", "-t", "4s", "--autoquit", "3",
            "--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1", "--metrics-final-scrape-timeout", "1"]
    with locust(args, workdir) as process:
        wait_for_http(f"http://127.0.0.1:{web_port}/", timeout=30)
        time.sleep(2)
        status, body = http_get(f"http://127.0.0.1:{web_port}/metrics")
        assert status == 200, body
        from_web_ui = Samples(body)
        status, own = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200
        assert from_web_ui.sum("locust_requests_total") > 0
        assert Samples(own).names() == from_web_ui.names()
        status, openmetrics = http_get(
            f"http://127.0.0.1:{web_port}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert status == 200 and openmetrics.rstrip().endswith("# EOF")
        assert process.wait(timeout=30) == 0, process.output()[-2000:]
        assert "for a final scrape" not in process.output(), "one-off scrapes: nobody to wait for"


def locust_has_option(flag: str) -> bool:
    """Whether this Locust's parser has ``flag`` (options come and go across the supported range)."""
    from locust.argument_parser import get_parser

    return any(flag in action.option_strings for action in get_parser()._actions)


@pytest.mark.skipif(not locust_has_option("--web-base-path"), reason="this Locust has no --web-base-path (Locust 2.32 had none)")
def test_web_ui_metrics_follow_the_web_base_path(demo_target: str, workdir: Path) -> None:
    web_port = free_port()
    args = ["-f", str(LOCUSTFILES / "double_import.py"), "-H", demo_target, "--web-host", "127.0.0.1",
            "--web-port", str(web_port), "--web-base-path", "/locust", "--autostart", "-u", "1", "-r", "1",
            "-t", "2s", "--autoquit", "1", "--metrics-port", "0", "--metrics-final-scrape-timeout", "1"]
    with locust(args, workdir) as process:
        wait_for_http(f"http://127.0.0.1:{web_port}/locust/", timeout=30)
        status, body = http_get(f"http://127.0.0.1:{web_port}/locust/metrics")
        assert status == 200 and "locust_runner_state" in body, (status, body[:300])
        process.wait(timeout=30)


def test_the_endpoint_is_logged_with_an_address_one_can_open_and_the_bind_address() -> None:
    from locust_metrics.scraping import MetricsServer, ScrapeTracker

    def server(host: str) -> MetricsServer:
        return MetricsServer(None, ScrapeTracker(), host, 9646, renderer=types.SimpleNamespace(wsgi_app=lambda tracker=None: None))

    assert (server("").url, server("").bind_address) == ("http://localhost:9646/metrics", "0.0.0.0:9646 (all interfaces)")
    assert server("0.0.0.0").url == server("::").url == "http://localhost:9646/metrics"
    assert (server("::").bind_address, server("::1").url) == ("[::]:9646 (all interfaces)", "http://[::1]:9646/metrics")
    assert (server("127.0.0.1").url, server("127.0.0.1").bind_address) == ("http://127.0.0.1:9646/metrics", "127.0.0.1:9646")
