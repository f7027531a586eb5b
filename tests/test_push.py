"""Push mode against a real Prometheus Pushgateway (Debian's prometheus-pushgateway), and its faults.

A gateway that is up gets periodic pushes and, at exit, the final numbers, exactly; one that is down gives
one warning, is retried with backoff and gets the final numbers once it is back; one that hangs never
blocks the test. The same exporter-toolkit web config (TLS + basic auth) works for the gateway and for us.
"""

from __future__ import annotations

import csv
import socket
import time
from pathlib import Path

import gevent
import pytest
from prometheus_client import CollectorRegistry, Counter
from support import (
    LOCUSTFILES,
    PrometheusServer,
    PushgatewayServer,
    child_env,
    csv_stats,
    free_port,
    locust,
    make_pki,
    native_totals,
    prometheus_config,
    write_web_config,
)

from locust_metrics.options import OptionError, Settings
from locust_metrics.push import MAX_BACKOFF_S, PUSH_TIMEOUT_S, Pusher, backoff_delay, split_credentials

FAST = str(LOCUSTFILES / "fast_events.py")


def push_args(url: str, workdir: Path, seconds: int, *extra: str) -> list[str]:
    return ["-f", FAST, "--headless", "-u", "4", "-r", "4", "-t", f"{seconds}s", "--csv", str(workdir / "run"),
            "--metrics-port", "0", "--metrics-pushgateway", url, "--metrics-push-interval", "1", *extra]


def warnings_about_push(output: str) -> list[str]:
    return [line for line in output.splitlines() if "/WARNING/" in line and "Pushgateway" in line]


def assert_gateway_has_the_final_numbers(gateway: PushgatewayServer, workdir: Path, **group: str) -> None:
    stats = csv_stats(workdir / "run")
    pushed = gateway.samples()
    total = stats[("", "Aggregated")]
    assert pushed.sum("locust_requests_total", **group) == total["requests"] > 0
    assert pushed.sum("locust_request_duration_seconds_count", **group) == total["requests"]
    assert pushed.sum("locust_request_failures_total", **group) == total["failures"]
    per_name = pushed.by("locust_requests_total", "method", "name", **group)
    for (method, name), counts in stats.items():
        if name != "Aggregated":
            assert per_name[(method, name)] == counts["requests"], (method, name)
    assert pushed.select("locust_test_stop_time_seconds", **group), "the final push came after the test stopped"


# ---------------------------------------------------------------------------------------------- unit
def test_backoff_doubles_from_the_interval_up_to_a_cap() -> None:
    assert [backoff_delay(1, n) for n in range(9)] == [1, 1, 2, 4, 8, 16, 32, 64, MAX_BACKOFF_S]
    assert backoff_delay(300, 3) == 300  # an interval longer than the cap is never shortened


def test_pushgateway_urls_are_validated_and_credentials_kept_out_of_logs() -> None:
    def parse_pushgateway(value: str) -> str:  # as install(pushgateway=...) and --metrics-pushgateway do
        return Settings.from_kwargs(pushgateway=value).pushgateway

    assert parse_pushgateway("127.0.0.1:9091") == "http://127.0.0.1:9091"
    assert parse_pushgateway("https://gw.example:9091/") == "https://gw.example:9091"
    assert parse_pushgateway("") == ""
    for bad in ("ftp://gw:9091", "http://", "http://gw:99999", "http://gw:9091/?x=1"):
        with pytest.raises(OptionError, match="--metrics-pushgateway"):
            parse_pushgateway(bad)
    with pytest.raises(OptionError) as error:
        parse_pushgateway("ftp://ci:t0psecret@gw:9091")
    assert "t0psecret" not in str(error.value) and "ci:***@gw:9091" in str(error.value)
    assert split_credentials("https://ci:p%40ss@gw:9091/base") == ("https://gw:9091/base", "ci", "p@ss")
    assert split_credentials("http://gw:9091") == ("http://gw:9091", None, None)
    with pytest.raises(OptionError, match="grouping label"):
        Settings.from_kwargs(pushgateway="gw:9091", labels={"run": "x"})
    assert Settings.from_kwargs(labels={"run": "x"}).labels == {"run": "x"}  # no push: run is an ordinary label


def test_a_failing_gateway_is_retried_with_backoff_then_the_interval_resumes(caplog: pytest.LogCaptureFixture) -> None:
    attempts: list[float] = []
    gateway_up = [False]

    def push(url, **kwargs):
        attempts.append(time.monotonic())
        if not gateway_up[0]:
            raise ConnectionRefusedError("[Errno 111] Connection refused")

    registry = CollectorRegistry()
    Counter("x", "x", registry=registry).inc()
    pusher = Pusher(registry, "http://127.0.0.1:1", "locust", interval_s=0.05, push_function=push)
    with caplog.at_level("INFO", logger="locust_metrics"):
        pusher.start(run="r1")
        gevent.sleep(1.0)  # down: attempts after 0.05, +0.05, +0.1, +0.2, +0.4 s (backoff), not every 0.05 s
        down = len(attempts)
        gateway_up[0] = True
        gevent.sleep(1.6)  # the next retry (+0.8 s) succeeds; then every 0.05 s again
        assert pusher.close(final_push=True)
    assert 4 <= down <= 6, down
    assert len(attempts) - down > 5
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "cannot push" in warnings[0].getMessage()
    assert any("works again" in r.getMessage() for r in caplog.records)
    assert pusher.close() is False  # idempotent


# ---------------------------------------------------------------------------------------------- real gateway
def test_periodic_and_final_pushes_reach_a_real_pushgateway_exactly(workdir: Path) -> None:
    with PushgatewayServer(workdir / "pgw") as gateway:
        args = push_args(gateway.url, workdir, 5, "--metrics-push-job", "ci-load", "--metrics-push-run", "pipeline-42")
        seen: list[float] = []
        with locust(args, workdir) as process:
            while process.running():  # periodic pushes: the gateway's numbers grow during the run
                seen.append(gateway.samples().sum("locust_requests_total", job="ci-load", run="pipeline-42"))
                time.sleep(0.5)
            code = process.wait(timeout=30)
            output = process.output()
        assert code == 0, output[-3000:]
        assert len([v for v in seen if v > 0]) >= 3 and seen == sorted(seen), seen
        assert_gateway_has_the_final_numbers(gateway, workdir, job="ci-load", run="pipeline-42")
        assert "final push to the Pushgateway" in output and not warnings_about_push(output)


def test_with_native_histograms_the_push_carries_them_to_prometheus_exactly(workdir: Path) -> None:
    """Pushed as delimited protobuf (classic and native buckets in one histogram): the Pushgateway keeps the native
    buckets, a Prometheus 2.42 with native histograms on gets them from it, and the native buckets of every endpoint
    (their counts summed) and its ``histogram_count`` equal Locust's ``--csv``; a text scrape of the gateway still
    shows the classic histogram, exactly."""
    with PushgatewayServer(workdir / "pgw") as gateway:
        args = push_args(gateway.url, workdir, 4, "--metrics-push-run", "native", "--metrics-native-histograms", "true")
        with locust(args, workdir) as process:
            code = process.wait(timeout=30)
            output = process.output()
        assert code == 0, output[-3000:]
        assert "final push to the Pushgateway" in output and not warnings_about_push(output)
        assert_gateway_has_the_final_numbers(gateway, workdir, job="locust", run="native")  # classic, by text
        stats = {key: value["requests"] for key, value in csv_stats(workdir / "run").items() if key[1] != "Aggregated"}
        config = prometheus_config([gateway.address], job="pushgateway")
        config["scrape_configs"][0]["honor_labels"] = True
        with PrometheusServer(workdir / "prometheus", config, extra_args=["--enable-feature=native-histograms"]) as prom:
            query = 'locust_request_duration_seconds{job="locust", run="native"}'
            result = prom.wait_for(lambda: prom.query(query), timeout=30, what="the pushed native histograms")
            # the native buckets' counts summed, and histogram_count (the served sample_count: the classic count)
            counts = {(s["metric"]["method"], s["metric"]["name"]): native_totals(s["histogram"][1]) for s in result}
            assert counts == {key: (n, n) for key, n in stats.items()} and len(stats) >= 2


def test_a_gateway_that_is_down_gives_one_warning_and_gets_the_final_numbers_once_back(workdir: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # 12 s: the gateway comes up only after the warning, however late a loaded machine starts Locust (CI once
    # started the gateway before the first push, after a fixed 3 s), with time left for a retry to reach it
    with locust(push_args(url, workdir, 12), workdir) as process:
        process.wait_for_output("cannot push to the Pushgateway", timeout=30)  # refused: one warning, backoff
        with PushgatewayServer(workdir / "pgw", port=port) as gateway:
            assert process.running(), "the run ended before the gateway was up: " + process.output()[-3000:]
            code = process.wait(timeout=30)
            output = process.output()
            assert code == 0, output[-3000:]
            info = gateway.samples().select("locust_test_info")
            assert len(info) == 1
            run = info[0][0]["run_id"]
            assert info[0][0]["run"] == run, "the group's run is the test's run_id by default"
            assert_gateway_has_the_final_numbers(gateway, workdir, job="locust", run=run)
    warnings = warnings_about_push(output)
    assert len(warnings) == 1 and "cannot push" in warnings[0] and "the test goes on" in warnings[0], warnings
    assert "Traceback" not in output


def test_a_gateway_that_hangs_never_blocks_the_test(workdir: Path) -> None:
    # a TCP listener that never answers: every push waits for its timeout (5 s)
    with socket.socket() as hanging:
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(64)
        url = f"http://127.0.0.1:{hanging.getsockname()[1]}"
        # 10 s: Locust's history has a row about every 1-2 s, and on a loaded machine its start-up eats into
        # the run; 10 s gives rows enough to see a 5 s gap
        with locust([*push_args(url, workdir, 10), "--csv-full-history"], workdir) as process:
            process.wait_for_output("--run-time limit reached", timeout=45)  # (Locust's start-up is not ours)
            stopping = time.monotonic()
            code = process.wait(timeout=45)
            output = process.output()
        elapsed = time.monotonic() - stopping
    assert code == 0, output[-3000:]
    assert elapsed < PUSH_TIMEOUT_S + 3, elapsed  # from the run's end: at most one push timeout, for the final push
    assert len(warnings_about_push(output)) == 1
    # Locust's own history (one row a second): requests kept flowing while pushes hung
    with open(workdir / "run_stats_history.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["Name"] == "Aggregated" and row["User Count"] == "4"]
    totals = [int(row["Total Request Count"]) for row in rows]
    times = [int(row["Timestamp"]) for row in rows]
    assert len(totals) >= 4, rows
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) <= 2, gaps  # the loop was never blocked for the 5 s of a push timeout
    growth = [b - a for a, b in zip(totals, totals[1:])]
    assert all(g > 0 for g in growth), totals  # and requests kept flowing every second


def test_the_same_web_config_secures_the_gateway_and_our_push_to_it(workdir: Path) -> None:
    """exporter-toolkit (in the Pushgateway) and we read one web config: TLS + basic auth; we push through it."""
    pki = make_pki(workdir / "pki")
    config = write_web_config(workdir / "pki" / "web.yml", pki, users={"ci": "push-s3cret"})
    gateway = PushgatewayServer(workdir / "pgw", web_config=config, ca_file=pki.ca_cert, auth=("ci", "push-s3cret"))
    with gateway:
        assert gateway.status("/metrics", auth=None) == 401 and gateway.status("/metrics", auth=("ci", "wrong")) == 401
        url = f"https://ci:push-s3cret@127.0.0.1:{gateway.port}"
        env = child_env(SSL_CERT_FILE=str(pki.ca_cert))  # trust the test CA (OpenSSL's default verify paths)
        port = free_port()
        args = [*push_args(url, workdir, 4), "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
                "--metrics-web-config", str(config), "--metrics-final-scrape-timeout", "0"]
        with locust(args, workdir, env=env) as process:
            code = process.wait(timeout=30)
            output = process.output()
        assert code == 0, output[-3000:]
        assert "push-s3cret" not in output, "credentials never reach the log"
        assert not warnings_about_push(output)
        run = gateway.samples().select("locust_test_info")[0][0]["run_id"]
        assert_gateway_has_the_final_numbers(gateway, workdir, job="locust", run=run)


def test_locust_as_a_library_pushes_the_final_numbers_on_stop(workdir: Path) -> None:
    """No ``quit`` event in library use: ``exporter.stop()`` makes the final push."""
    from locust import User, constant, task
    from locust.env import Environment

    import locust_metrics

    class Quick(User):
        wait_time = constant(0.01)

        @task
        def fire(self):
            self.environment.events.request.fire(request_type="GET", name="/lib", response_time=1.0,
                                                 response_length=1, response=None, context={}, exception=None)

    with PushgatewayServer(workdir / "pgw") as gateway:
        env = Environment(user_classes=[Quick])
        exporter = locust_metrics.install(env, port=0, pushgateway=gateway.url, push_interval=60, push_run="lib")
        runner = env.create_local_runner()
        runner.start(2, spawn_rate=10)
        gevent.sleep(1.5)
        runner.quit()
        exporter.stop()
        pushed = gateway.samples()
    assert pushed.sum("locust_requests_total", job="locust", run="lib") == env.stats.total.num_requests > 0
