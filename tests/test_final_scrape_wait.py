"""The final-scrape wait fits how people scrape: only a periodic scraper that can still reach us is waited for,
and no longer than its next scrape can take (issue: a one-off curl made the process wait 30 s at exit)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from support import LOCUSTFILES, Samples, free_port, http_get, locust, wait_for_http

FAST = str(LOCUSTFILES / "fast_events.py")


def test_a_one_off_scrape_does_not_make_the_process_wait(workdir: Path) -> None:
    port = free_port()
    args = ["-f", FAST, "--headless", "-u", "2", "-r", "2", "-t", "3s", "--metrics-port", str(port),
            "--metrics-host", "127.0.0.1"]  # the default wait of 30 s
    with locust(args, workdir) as process:
        wait_for_http(f"http://127.0.0.1:{port}/metrics")  # a curl while the test runs (perhaps twice quickly)
        started = time.monotonic()
        assert process.wait(timeout=30) == 0, process.output()[-2000:]
        output = process.output()
    assert time.monotonic() - started < 10, "exits right after the 3 s test, not 30 s later"
    assert "for a final scrape" not in output
    assert f"serving Prometheus metrics on http://127.0.0.1:{port}/metrics (listening on 127.0.0.1:{port})" in output


def scrape_every(url: str, interval: float, stop: threading.Event, bodies: list[str]) -> threading.Thread:
    """Scrape ``url`` every ``interval`` s in a thread until ``stop`` is set (errors: the server is gone)."""

    def run() -> None:
        while not stop.is_set():
            try:
                status, body = http_get(url, timeout=2)
                if status == 200:
                    bodies.append(body)
            except OSError:
                pass
            stop.wait(interval)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def run_web_ui(workdir: Path, autoquit: int) -> tuple[float, str, list[str]]:
    """A web UI run (--autostart, 6 s) whose /metrics is scraped every 0.5 s; returns (seconds from the
    test's end, its start plus 6 s, to the process's exit; output; scraped bodies)."""
    web_port = free_port()
    url = f"http://127.0.0.1:{web_port}/metrics"
    args = ["-f", FAST, "--web-host", "127.0.0.1", "--web-port", str(web_port), "--autostart", "-u", "2", "-r", "2",
            "-t", "6s", "--autoquit", str(autoquit), "--metrics-port", "0"]  # the web UI's /metrics only
    bodies: list[str] = []
    stop = threading.Event()
    with locust(args, workdir) as process:
        wait_for_http(f"http://127.0.0.1:{web_port}/", timeout=30)
        thread = scrape_every(url, 0.5, stop, bodies)
        try:
            assert process.wait(timeout=60) == 0, process.output()[-2000:]
            exited = time.time()
        finally:
            stop.set()
            thread.join(timeout=5)
        output = process.output()
    during = [body for body in bodies if "locust_test_stop_time_seconds" not in body]
    assert len(during) >= 2, "scraped periodically while the test ran (the case under test)"
    started = max(Samples(body).sum("locust_test_start_time_seconds") for body in bodies)
    assert started > 0, "scraped while the test ran"
    return exited - (started + 6), output, bodies


def test_web_ui_scraped_then_stopped_by_autoquit_is_not_waited_for(workdir: Path) -> None:
    after_stop, output, _ = run_web_ui(workdir, autoquit=0)
    assert "Locust has stopped its web UI: no final scrape" in output
    assert "waiting up to" not in output, "the web UI is gone: there is nothing to wait for"
    assert after_stop < 8, f"exited {after_stop:.1f}s after the test stopped, not after the 30 s timeout"


def test_web_ui_scraped_during_autoquit_has_the_final_numbers_and_no_wait(workdir: Path) -> None:
    after_stop, output, bodies = run_web_ui(workdir, autoquit=2)
    assert "waiting up to" not in output, "the scrapes during --autoquit came after the test stopped"
    assert after_stop < 8, after_stop
    final = [Samples(body) for body in bodies if "locust_test_stop_time_seconds" in body]
    assert len(final) >= 2 and final[-1].sum("locust_requests_total") == final[0].sum("locust_requests_total") > 0
