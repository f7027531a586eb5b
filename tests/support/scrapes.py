"""Reading what an exporter serves and what Locust wrote: parsed scrapes, Locust's ``--csv`` files, and the
checks that compare them (exact per endpoint, counters never decrease)."""

from __future__ import annotations

import csv
import functools
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from .net import http_get

if TYPE_CHECKING:
    from .processes import LocustProcess


class Samples:
    """Parsed Prometheus text exposition: a list of (name, labels, value) with small query helpers.

    The text is parsed on first use, not when a scrape arrives, so a scraper that keeps many scrapes (the soak
    test: one a second while Locust runs at full speed) keeps its cadence on a busy machine.
    """

    def __init__(self, text: str) -> None:
        self.text = text

    @functools.cached_property
    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        """``(sample name, labels, value)`` of every sample."""
        return [(sample.name, dict(sample.labels), float(sample.value))
                for family in text_string_to_metric_families(self.text) for sample in family.samples]

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
    assert entries, "Locust's statistics have no entry: nothing to compare"
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
    """Between consecutive scrapes, no series of ``metrics`` goes down (at least two scrapes, and at least one of
    ``metrics`` with series in the last: else there is nothing to compare)."""
    assert len(scrapes) >= 2, f"{len(scrapes)} scrape(s): nothing to compare"
    assert any(scrapes[-1].select(metric) for metric in metrics), f"no series of {metrics} in the last scrape"
    for before, after in zip(scrapes, scrapes[1:]):
        for metric in metrics:
            b = before.by(metric, "method", "name", "status_code", "error")
            a = after.by(metric, "method", "name", "status_code", "error")
            assert all(a.get(key, 0) >= value for key, value in b.items()), metric


def scrape_until_exit(
    process: LocustProcess, port: int, run_time: float, interval: float = 1.0, timeout: float = 120
) -> list[Samples]:
    """Scrape ``port`` every ``interval`` s while ``process`` runs, as Prometheus would; returns the scrapes.

    From 0.5 s before the end of the test (``run_time`` seconds after its start, from
    ``locust_test_start_time_seconds``) the scraper holds its scrapes until the exporter says it waits for a
    final scrape (or until 2 s after the end, if it has not said so by then), and then scrapes at once: the
    exporter's final-scrape wait is exercised, and the last scrape has the final numbers however slowly the
    machine runs (a fixed pause could end before Locust quit, or after the wait the exporter allows a scraper
    of this ``interval``: twice the interval plus 1 s after the last scrape).
    """
    scrapes: list[Samples] = []
    deadline = time.monotonic() + timeout
    end: float | None = None
    held = True  # until the exporter waits for the final scrape
    due = time.monotonic()
    while process.running() and time.monotonic() < deadline:
        # one scrape per interval, on a fixed schedule as Prometheus keeps it: the time a scrape takes (the
        # event loop of a process at full speed answers in its own time) does not push the next one back
        time.sleep(max(0.0, due - time.monotonic()))
        due = max(due + interval, time.monotonic())
        if held and end is not None and time.time() > end - 0.5:
            held = time.time() < end + 2.0 and "for a final scrape of" not in process.output()
            if held:
                due = time.monotonic() + 0.05
                continue
        try:
            samples = scrape(port, timeout=2)
        except OSError:
            due = time.monotonic() + 0.2
            continue
        scrapes.append(samples)
        start = samples.sum("locust_test_start_time_seconds")
        if end is None and start:
            end = start + run_time
    return scrapes
