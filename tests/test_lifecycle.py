"""Lifecycle: repeated runs in one web UI session, SIGTERM / Ctrl-C in the middle of a headless run, and our
own errors. Counters never go backwards, run_id changes per run, runner state and users follow, the final
scrape and the final push happen on a signal, our errors are logged once and never change the exit code."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
from support import (
    LOCUSTFILES,
    PushgatewayServer,
    Samples,
    assert_counters_never_decrease,
    csv_stats,
    free_port,
    http_get,
    http_request,
    interrupted_in_locust_statistics,
    locust,
    scrape,
    wait_for,
    wait_for_http,
)

FAST = str(LOCUSTFILES / "fast_events.py")
COUNTERS = ("locust_requests_total", "locust_request_duration_seconds_count", "locust_request_duration_seconds_sum",
            "locust_request_failures_total", "locust_slow_requests_total", "locust_response_size_bytes_total")


class Scraper(threading.Thread):
    """Scrapes ``port`` every ``interval`` s in the background, as Prometheus would, until stopped."""

    def __init__(self, port: int, interval: float = 0.3) -> None:
        super().__init__(daemon=True)
        self.port, self.interval = port, interval
        self.scrapes: list[Samples] = []
        self.paused = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        due = 0.0  # scrapes start every ``interval`` s; one that fell due while paused starts on resume
        while not self.done.is_set():
            if not self.paused.is_set() and time.monotonic() >= due:
                due = time.monotonic() + self.interval
                try:
                    self.scrapes.append(scrape(self.port, timeout=5))
                except (OSError, AssertionError):
                    pass
            time.sleep(0.02)

    def latest(self) -> Samples:
        return self.scrapes[-1]

    def wait_for(self, predicate, timeout: float = 20, what: str = "a scrape") -> Samples:
        """The first scrape taken from now on that is the latest when ``predicate`` holds for it."""
        seen = len(self.scrapes)

        def new_scrape_showing() -> Samples | None:
            latest = self.latest() if len(self.scrapes) > seen else None
            return latest if latest is not None and predicate(latest) else None

        return wait_for(new_scrape_showing, timeout, 0.1, what=f"a scrape showing {what}", retry_on=())


def state(samples: Samples) -> str:
    return next(labels["state"] for labels, value in samples.select("locust_runner_state") if value == 1)


def run_id(samples: Samples) -> str | None:
    info = samples.select("locust_test_info")
    return info[0][0]["run_id"] if info else None


def post(url: str, data: dict | None = None) -> int:
    """POST ``data`` as a form; the answer's status."""
    return http_request(url, method="POST", form=data or {}, timeout=10).status


def web_ui_action(url: str, data: dict | None = None) -> int:
    """A web UI action without a form (``/stats/reset``, ``/stop``): POST on current Locust, GET on 2.32 (which
    answers POST with 405)."""
    status = post(url, data)
    return http_get(url)[0] if status == 405 else status


def test_repeated_runs_in_one_web_ui_session(workdir: Path) -> None:
    web_port, port = free_port(), free_port()
    web = f"http://127.0.0.1:{web_port}"
    args = ["-f", FAST, "--web-host", "127.0.0.1", "--web-port", str(web_port), "--metrics-port", str(port),
            "--metrics-host", "127.0.0.1", "--metrics-final-scrape-timeout", "5"]
    with locust(args, workdir) as process:
        wait_for_http(f"{web}/", timeout=30)
        scraper = Scraper(port)
        scraper.start()
        try:
            ready = scraper.wait_for(lambda s: state(s) == "ready", what="state ready")
            assert run_id(ready) is None and ready.sum("locust_requests_total") == 0

            assert post(f"{web}/swarm", {"user_count": 2, "spawn_rate": 20}) == 200
            first = scraper.wait_for(lambda s: state(s) == "running" and s.sum("locust_users") == 2
                                     and s.sum("locust_requests_total") > 0, what="2 users running")
            first_run = run_id(first)
            assert first_run and first.sum("locust_users_target") == 2

            assert post(f"{web}/swarm", {"user_count": 5, "spawn_rate": 50}) == 200  # change users mid-run
            more = scraper.wait_for(lambda s: s.sum("locust_users") == 5, what="5 users")
            assert run_id(more) == first_run, "changing the user count is the same run"

            before_reset = scraper.wait_for(lambda s: True).sum("locust_requests_total")
            assert web_ui_action(f"{web}/stats/reset") == 200
            _, stats_json = http_get(f"{web}/stats/requests")
            locust_total = __import__("json").loads(stats_json)["stats"][-1]["num_requests"]
            after_reset = scraper.wait_for(lambda s: s.sum("locust_requests_total") > before_reset, what="growth")
            assert locust_total < before_reset < after_reset.sum("locust_requests_total"), "ours never go back"

            assert web_ui_action(f"{web}/stop") == 200
            stopped = scraper.wait_for(lambda s: state(s) == "stopped", what="state stopped")
            assert stopped.sum("locust_users") == 0 and stopped.select("locust_test_stop_time_seconds")
            assert run_id(stopped) == first_run

            assert post(f"{web}/swarm", {"user_count": 3, "spawn_rate": 30}) == 200  # a second run
            second = scraper.wait_for(lambda s: state(s) == "running" and s.sum("locust_users") == 3, what="run 2")
            assert run_id(second) not in (None, first_run), "a new run has a new run_id"
            assert second.sum("locust_test_start_time_seconds") > first.sum("locust_test_start_time_seconds")
            assert not second.select("locust_test_stop_time_seconds") or (
                second.sum("locust_test_stop_time_seconds") < second.sum("locust_test_start_time_seconds"))
            time.sleep(1)
        finally:
            scraper.done.set()
            scraper.join(timeout=10)
        process.signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        output = process.output()
    assert code == 0, output[-3000:]
    assert len(scraper.scrapes) >= 8
    assert_counters_never_decrease(scraper.scrapes, COUNTERS)
    runs = [run_id(s) for s in scraper.scrapes if run_id(s)]
    assert len(set(runs)) == 2 and runs == sorted(runs, key=runs.index), "run_id changes once, never back"


def test_sigterm_in_push_only_mode_still_gets_the_final_push(workdir: Path) -> None:
    """Nobody scrapes (port 0): nothing to wait for but the final push, which SIGTERM must not cut short."""
    with PushgatewayServer(workdir / "pgw") as gateway:
        args = ["-f", FAST, "--headless", "-u", "4", "-r", "4", "-t", "60s", "--csv", str(workdir / "run"),
                "--metrics-port", "0", "--metrics-pushgateway", gateway.url, "--metrics-push-interval", "300"]
        with locust(args, workdir) as process:
            process.wait_for_output("pushing to the Pushgateway")  # the test started
            time.sleep(1)
            process.signal(signal.SIGTERM)
            code = process.wait(timeout=30)
            output = process.output()
        assert code == 0, output[-3000:]
        total = csv_stats(workdir / "run")[("", "Aggregated")]["requests"]
        assert gateway.samples().sum("locust_requests_total", job="locust") == total > 0
        assert output.count("final push to the Pushgateway") == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_mid_run_still_gets_the_final_scrape_and_the_final_push(sig: int, workdir: Path) -> None:
    port = free_port()
    with PushgatewayServer(workdir / "pgw") as gateway:
        # a push interval longer than the run: only the pushes at test stop and at quit can deliver the numbers
        args = ["-f", FAST, "--headless", "-u", "4", "-r", "4", "-t", "60s", "--csv", str(workdir / "run"),
                "--metrics-port", str(port), "--metrics-host", "127.0.0.1", "--metrics-final-scrape-timeout", "20",
                "--metrics-pushgateway", gateway.url, "--metrics-push-interval", "300"]
        with locust(args, workdir) as process:
            scraper = Scraper(port, interval=1.0)
            scraper.start()
            try:
                # traffic, and a periodic scraper (the exporter waits only for one that scraped twice or more)
                scraper.wait_for(lambda s: s.sum("locust_requests_total") > 1000 and len(scraper.scrapes) >= 3,
                                 what="traffic, 3 scrapes")
                scraper.paused.set()  # Prometheus' next scrape is "later": the process must wait for it
                time.sleep(0.6)
                signalled = time.time()
                process.signal(sig)
                # the exporter waits until 2 intervals + 1 s after the last scrape (>= 2 s away), and says so
                process.wait_for_output("for a final scrape of http://127.0.0.1", timeout=20)
                assert process.running(), "still serving: waiting for the final scrape"
                scraper.paused.clear()
                code = process.wait(timeout=30)
            finally:
                scraper.done.set()
                scraper.join(timeout=10)
            output = process.output()
        assert code == 0, output[-3000:]
        assert "for a final scrape of http://127.0.0.1" in output
        final = scraper.latest()
        stats = csv_stats(workdir / "run")
        total = stats[("", "Aggregated")]["requests"]
        assert final.sum("locust_test_stop_time_seconds") >= signalled
        ours = final.sum("locust_requests_total")
        assert ours == final.sum("locust_request_duration_seconds_count") > 0
        # exact, except for a request that Ctrl-C interrupted inside Locust's own statistics listener (Locust's
        # traceback shows it): Locust logged it in part, no listener after Locust's saw it (seen 1 run in 12)
        assert 0 <= total - ours <= interrupted_in_locust_statistics(output), (total, ours, output[-3000:])
        run = run_id(final)
        pushed = gateway.samples()
        assert pushed.sum("locust_requests_total", job="locust", run=run) == ours, "the final push has it all"
        assert pushed.select("locust_test_stop_time_seconds", run=run)


def test_our_own_errors_are_logged_once_and_change_nothing_else(workdir: Path) -> None:
    port = free_port()
    args = ["-f", str(LOCUSTFILES / "faulty.py"), "--headless", "-u", "4", "-r", "4", "-t", "4s",
            "--csv", str(workdir / "run"), "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
            "--metrics-final-scrape-timeout", "20"]
    with locust(args, workdir) as process:
        scrapes = []
        while process.running():
            try:
                scrapes.append(scrape(port, timeout=5))
            except OSError:
                pass
            time.sleep(0.3)
        code = process.wait(timeout=30)
        output = process.output()
    assert code == 0, output[-3000:]  # as without the injected bugs
    assert output.count("locust-metrics: error in _on_test_start") == 1
    assert output.count("could not export the nodes metrics") == 1
    assert "injected bug in uuid4" in output and "injected: psutil access denied" in output  # with context
    assert "Uncaught exception in event handler" not in output
    final = scrapes[-1]
    assert not final.select("locust_process_resident_memory_bytes"), "the broken part is left out"
    assert final.select("locust_runner_state") and final.select("locust_metrics_info"), "the rest is served"
    # and Prometheus is told: our faults are counted by source (logged once, counted every time)
    assert final.sum("locust_metrics_errors_total", source="listener") == 1, "the test started once"
    assert final.sum("locust_metrics_errors_total", source="nodes") >= 2, "every scrape that left the nodes out"
    assert final.sum("locust_metrics_errors_total", source="recorder") == 0
    assert final.sum("locust_metrics_fallbacks_total", path="render") == 0 and final.sum("locust_metrics_fast_dispatch") == 1
    assert final.sum("locust_requests_total") == csv_stats(workdir / "run")[("", "Aggregated")]["requests"] > 0
