"""Helpers for tests that run real processes: Locust, the demo target, promtool. All on 127.0.0.1.

Everything here is bounded in time: every process has a timeout and is killed when a test ends.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
LOCUSTFILES = Path(__file__).resolve().parent / "locustfiles"


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_binary(name: str) -> str:
    """Path of a binary the test needs; skips locally when missing, fails under CI (CI must install it)."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} not installed (Debian package: prometheus); .ci/run installs it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def child_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: this checkout first on PYTHONPATH, no stray LOCUST_ variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def http_get(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """GET ``url``; returns (status, body text). Raises ``OSError`` when nothing answers."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for_http(url: str, timeout: float = 20.0) -> None:
    """Wait until ``url`` answers anything; raises ``TimeoutError``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            http_get(url, timeout=1.0)
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class Samples:
    """Parsed Prometheus text exposition: a list of (name, labels, value) with small query helpers."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = []
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples.append((sample.name, dict(sample.labels), float(sample.value)))

    def select(self, metric: str, /, **labels: str) -> list[tuple[dict[str, str], float]]:
        """Samples of ``metric`` whose labels include ``labels``."""
        return [
            (sample_labels, value)
            for sample_name, sample_labels, value in self.samples
            if sample_name == metric and all(sample_labels.get(k) == v for k, v in labels.items())
        ]

    def sum(self, metric: str, /, **labels: str) -> float:
        """Sum of the matching samples' values (0 when none)."""
        return sum(value for _, value in self.select(metric, **labels))

    def by(self, metric: str, /, *keys: str, **labels: str) -> dict[tuple[str, ...], float]:
        """``{(label values of keys): summed value}`` for ``metric``."""
        result: dict[tuple[str, ...], float] = defaultdict(float)
        for sample_labels, value in self.select(metric, **labels):
            result[tuple(sample_labels.get(k, "") for k in keys)] += value
        return dict(result)

    def names(self) -> set[str]:
        return {name for name, _, _ in self.samples}


def scrape(port: int, path: str = "/metrics", timeout: float = 5.0) -> Samples:
    """Scrape ``http://127.0.0.1:{port}{path}`` and parse it; raises ``OSError`` when nothing answers."""
    status, body = http_get(f"http://127.0.0.1:{port}{path}", timeout=timeout)
    assert status == 200, f"scrape answered {status}: {body[:300]}"
    return Samples(body)


def csv_stats(prefix: Path) -> dict[tuple[str, str], dict[str, int]]:
    """Locust's ``--csv`` statistics: ``{(method, name): {"requests": n, "failures": n}}``.

    The "Aggregated" row is keyed ``("", "Aggregated")``.
    """
    result = {}
    with open(f"{prefix}_stats.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            result[(row["Type"], row["Name"])] = {
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
            }
    return result


def csv_failures(prefix: Path) -> dict[tuple[str, str], int]:
    """Locust's ``--csv`` failures, as our ``error`` label names them: ``{(name, error): occurrences}``.

    Locust writes the exception's repr: ``HTTPError('404 Client Error: ...')`` for a status >= 400 (our
    ``"HTTP 404"``), ``CatchResponseError('message')`` for ``response.failure("message")`` (our message),
    else ``SomeError(...)`` (our exception class name).
    """
    result: dict[tuple[str, str], int] = defaultdict(int)
    with open(f"{prefix}_failures.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            error = row["Error"]
            status = re.match(r"HTTPError\('(\d{3}) ", error)
            message = re.fullmatch(r"CatchResponseError\('(.*)'\)", error)
            label = f"HTTP {status[1]}" if status else message[1] if message else error.split("(", 1)[0]
            result[(row["Name"], label)] += int(row["Occurrences"])
    return dict(result)


def assert_exact_per_endpoint(final: Samples, stats: dict[tuple[str, str], dict[str, int]]) -> None:
    """The exported counts equal Locust's statistics exactly, per (method, name) and in total.

    Per entry: histogram ``_count`` and ``locust_requests_total`` summed over status codes equal Locust's
    "Request Count" (every request of these runs has a response time), failures summed over error
    labels equal its "Failure Count"; no entries beyond Locust's; totals equal the "Aggregated" row.
    """
    entries = {key: value for key, value in stats.items() if key != ("", "Aggregated")}
    counts = final.by("locust_request_duration_seconds_count", "method", "name")
    requests = final.by("locust_requests_total", "method", "name")
    failures = final.by("locust_request_failures_total", "method", "name")
    for key, expected in entries.items():
        assert counts.get(key) == expected["requests"], (key, counts.get(key), expected)
        assert requests.get(key) == expected["requests"], (key, requests.get(key), expected)
        assert failures.get(key, 0) == expected["failures"], (key, failures.get(key), expected)
    assert set(requests) == set(entries), "no entries beyond Locust's"
    total = stats[("", "Aggregated")]
    assert final.sum("locust_requests_total") == total["requests"]
    assert final.sum("locust_request_failures_total") == total["failures"]


def interrupted_in_locust_statistics(output: str) -> int:
    """How many ``KeyboardInterrupt`` tracebacks in a Locust process's ``output`` were raised inside Locust's
    own statistics (a frame in ``locust/stats.py``).

    Ctrl-C raises ``KeyboardInterrupt`` in whichever greenlet runs at that moment. In a user's greenlet in
    the middle of Locust's statistics listener, Locust has logged that request in part (its total, perhaps
    its entry) and every listener after Locust's, ours among them, never sees it: each such traceback is
    one request that Locust's ``--csv`` may count and we cannot.
    """
    frames = re.findall(r"^Traceback \(most recent call last\):\n((?:[ \t].*\n)*)KeyboardInterrupt$", output, re.MULTILINE)
    return sum(1 for block in frames if re.search(r'File "[^"]*locust[/\\]stats\.py"', block))


def assert_counters_never_decrease(scrapes: list[Samples], metrics: tuple[str, ...]) -> None:
    """Between consecutive scrapes, no series of ``metrics`` goes down."""
    for before, after in zip(scrapes, scrapes[1:]):
        for metric in metrics:
            b = before.by(metric, "method", "name", "status_code", "error")
            a = after.by(metric, "method", "name", "status_code", "error")
            assert all(a.get(key, 0) >= value for key, value in b.items()), metric


class LocustProcess:
    """A real ``locust`` process (``python -m locust``) with its output collected to a file."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None, name: str = "locust") -> None:
        self.log_path = Path(cwd) / f"{name}.log"
        self._log = open(self.log_path, "w")
        self.args = [sys.executable, "-m", "locust", *args]
        self.proc = subprocess.Popen(
            self.args, cwd=cwd, env=env or child_env(), stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for the exit code; kills the process group and fails the test after ``timeout`` seconds."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"locust did not exit within {timeout}s:\n{self.output()[-3000:]}")

    def signal(self, sig: int) -> None:
        if self.running():
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.running():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 60) -> None:
        """Wait until ``text`` appears in the output (not a fixed sleep: start-up time varies with load)."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if not self.running() or time.monotonic() > deadline:
                pytest.fail(f"locust never printed {text!r}:\n{self.output()[-3000:]}")
            time.sleep(0.1)

    def close(self) -> None:
        self.kill()
        self._log.close()


@contextmanager
def locust(args: list[str], cwd: Path, env: dict[str, str] | None = None, name: str = "locust") -> Iterator[LocustProcess]:
    """Run a Locust process for the duration of a ``with`` block; it is always killed at the end."""
    process = LocustProcess(args, cwd, env, name)
    try:
        yield process
    finally:
        process.close()


def run_locust(args: list[str], cwd: Path, timeout: float = 60, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run Locust to completion; returns (exit code, combined output)."""
    with locust(args, cwd, env) as process:
        code = process.wait(timeout)
        return code, process.output()


def scrape_until_exit(
    process: LocustProcess, port: int, run_time: float, interval: float = 1.0, timeout: float = 120
) -> list[Samples]:
    """Scrape ``port`` every ``interval`` s while ``process`` runs, as Prometheus would; returns the scrapes.

    Around the end of the test (``run_time`` seconds after its start, from ``locust_test_start_time_seconds``)
    the scraper skips the scrapes due from 0.5 s before to 1 s after it, so the exporter's final-scrape wait
    is exercised deterministically: at exit nobody has scraped since the test stopped, so the process keeps
    serving until the next scrape, which comes within the wait the exporter allows a scraper of this
    ``interval`` (twice the interval plus 1 s after the last scrape).
    """
    scrapes: list[Samples] = []
    deadline = time.monotonic() + timeout
    end: float | None = None
    while process.running() and time.monotonic() < deadline:
        if end is not None and end - 0.5 < time.time() < end + 1.0:
            time.sleep(0.1)
            continue
        try:
            samples = scrape(port, timeout=2)
        except OSError:
            time.sleep(0.2)
            continue
        scrapes.append(samples)
        start = samples.sum("locust_test_start_time_seconds")
        if end is None and start:
            end = start + run_time
        time.sleep(interval)
    return scrapes


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess:
    """Run ``promtool check metrics`` on exposition ``text``."""
    promtool = require_binary("promtool")
    return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)


def start_demo_target(port: int, log_path: Path) -> subprocess.Popen:
    """Start ``examples/demo_target.py`` on 127.0.0.1:``port`` and wait until ``/health`` answers."""
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "examples" / "demo_target.py"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env(), start_new_session=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout=20)
    except TimeoutError:
        proc.kill()
        raise
    return proc
