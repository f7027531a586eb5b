"""Unit tests of the data model and the renderer (no processes)."""

from __future__ import annotations

import math
from bisect import bisect_left

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from locust.exception import CatchResponseError
from prometheus_client import CollectorRegistry, generate_latest
from support import (
    CountingRecorder,
    FakeEnvironment,
    NoStatus,
    Response,
    Samples,
    make_recorder,
    promtool_check_metrics,
)
from support.hostile import RaisingMessage, RaisingStr

from locust_metrics.options import Settings, SlowThreshold
from locust_metrics.recorder import (
    BUCKET_TABLE_MAX_MS,
    BUCKET_TABLE_MIN_MS,
    MAX_ERRORS_PER_ENDPOINT,
    MAX_FAILURE_MESSAGE,
    MAX_HOT_STATUSES,
    MAX_NAME_LENGTH,
    OVERFLOW,
    RequestRecorder,
    bucket_table,
    error_label,
    label_text,
)


def test_bucket_and_slow_boundaries_follow_le_and_greater_than() -> None:
    rec = make_recorder(buckets="0.1,1", slow_threshold=100)
    for ms in (0.0, 100.0, 100.0001, 1000.0, 1000.5, 99999.0):
        rec.on_request("GET", "/x", ms, 0, response=Response(200), exception=None)
    endpoint = rec.endpoints[("GET", "/x")]
    assert rec.bounds_ms == (100.0, 1000.0)
    assert endpoint.folded().buckets == [2, 2, 2]  # le=0.1: 0 and 100 exactly; le=1: 100.0001, 1000; +Inf: 2
    assert endpoint.folded().slow == 4  # greater than 100 ms, not equal
    assert endpoint.count == 6 and endpoint.requests == 6
    assert math.isclose(endpoint.folded().sum_ms, 0 + 100 + 100.0001 + 1000 + 1000.5 + 99999)


bounds_strategy = st.lists(
    st.one_of(st.integers(1, 200_000).map(float), st.floats(0.001, 200_000.0), st.sampled_from([0.5, 2.5, 1e-3, 131_072.0])),
    min_size=1, max_size=25, unique=True,
).map(sorted)


@settings(max_examples=200, deadline=None)
@given(bounds_strategy, st.data())
@example([5.0, 2.5 * 4, 1000.0], None)
def test_the_fast_path_puts_every_time_in_the_bucket_bisect_gives(bounds, data) -> None:
    """The bucket table, the bisect fallback and the careful path agree with ``bisect_left`` and ``t > threshold``."""
    threshold = bounds[len(bounds) // 2]
    rec = CountingRecorder(bounds, threshold)
    candidates = [0.0, -0.0, threshold, math.nextafter(threshold, math.inf), math.nextafter(threshold, 0)]
    for b in bounds:
        candidates += [b, math.nextafter(b, math.inf), math.nextafter(b, 0), math.floor(b), math.ceil(b), int(b) + 0.5]
    if data is not None:
        candidates += data.draw(st.lists(st.floats(0, 300_000.0) | st.integers(0, 300_000), max_size=50))
    rec.on_request("GET", "/t", 1.0, 0, response=Response(200), exception=None)  # first sightings
    expected = [0] * (len(bounds) + 1)
    expected[bisect_left(bounds, 1.0)] += 1
    for t in candidates:
        rec.on_request("GET", "/t", t, 1, response=Response(200), exception=None)
        expected[bisect_left(bounds, t)] += 1
    endpoint = rec.endpoints[("GET", "/t")]
    assert endpoint.folded().buckets == expected
    assert endpoint.folded().slow == sum(1 for t in [1.0] + candidates if t > threshold)
    assert endpoint.requests == len(candidates) + 1 and endpoint.folded().response_bytes == len(candidates)
    # only first sightings and times beyond the table take the careful path
    top = min(max(math.ceil(bounds[-1]), BUCKET_TABLE_MIN_MS), BUCKET_TABLE_MAX_MS)
    assert rec.careful_calls == 1 + sum(1 for t in candidates if math.ceil(t) > top)


def test_the_bucket_table_marks_milliseconds_that_hold_a_bound() -> None:
    table = bucket_table((2.5, 5.0, 1000.0))
    assert len(table) == BUCKET_TABLE_MIN_MS + 1
    assert table[:7] == [0, 0, 0, None, 1, 1, 2]  # (2, 3] holds 2.5: bisect; 5 exactly is le=5
    assert table[1000] == 2 and table[1001] == 3 and table[-1] == 3
    assert len(bucket_table((5.0, 10 * BUCKET_TABLE_MAX_MS))) == BUCKET_TABLE_MAX_MS + 1


def test_thresholds_become_bounds_so_slow_is_a_bucket_above_the_threshold() -> None:
    rec = RequestRecorder((100.0,), 250.0, [SlowThreshold("/x", 7.5)])
    assert rec.bounds_ms == (7.5, 100.0, 250.0)
    for t in (7.5, 7.6, 250.0, 250.1):
        rec.on_request("GET", "/x", t, 0, response=Response(200), exception=None)
        rec.on_request("GET", "/y", t, 0, response=Response(200), exception=None)
    assert rec.endpoints[("GET", "/x")].folded().slow == 3 and rec.endpoints[("GET", "/y")].folded().slow == 1


def test_status_codes_beyond_the_hot_records_stay_exact() -> None:
    rec = CountingRecorder((100.0,), 100.0)
    statuses = [200 + i for i in range(MAX_HOT_STATUSES + 4)]
    for _ in range(3):
        for status in statuses:
            rec.on_request("GET", "/s", 150.0, 2, response=Response(status), exception=None)
        rec.on_request("GET", "/s", None, 2, response=None, exception=ConnectionError())
    endpoint = rec.endpoints[("GET", "/s")]
    assert len(endpoint.hot) == MAX_HOT_STATUSES
    assert endpoint.folded().statuses == {**{status: 3 for status in statuses}, 0: 3}
    assert endpoint.folded().buckets == [0, 3 * len(statuses)] and endpoint.folded().slow == 3 * len(statuses)
    assert endpoint.folded().response_bytes == 2 * 3 * (len(statuses) + 1) and endpoint.folded().sum_ms == 150.0 * 3 * len(statuses)
    # the first request of each status (with 0), then every request of those without a hot record
    without_record = len(statuses) + 1 - MAX_HOT_STATUSES
    assert rec.careful_calls == (len(statuses) + 1) + 2 * without_record
    assert not any(any(record) for record in endpoint.hot.values())  # folded by the reads above


@pytest.mark.parametrize("native", [None, (6, 160)], ids=["native off", "native on"])
def test_a_names_other_methods_and_statuses_take_their_own_records_exactly(native) -> None:
    """The hot path's first lookup (``_first``) holds the hot record of a name's first method and status; its
    requests with another method or status take the two-level lookup, and land in their own records. Exact per
    (method, name, status) and per bucket, careful path only at first sightings, and the same after ``clear()``
    (a worker, after a report), which must drop the first lookups with the entries."""
    events = [("GET", "/a", 200, 3.0), ("GET", "/a", 500, 7.0), ("POST", "/a", 200, 30.0), ("GET", "/a", 200, 300.0),
              ("POST", "/a", 404, 3000.0), ("GET", "/b", 404, 3.0), ("GET", "/b", 200, 0.0)]
    order = [events[(3 * i) % len(events)] for i in range(len(events))] * 40  # interleaved, each 40 times
    rec = CountingRecorder((5.0, 50.0, 500.0), 1000.0, (), 500, native)
    for _round in range(2):
        rec.careful_calls = 0
        for method, name, status, ms in order:
            rec.record(method, name, ms, 10, Response(status), None)
        assert rec.careful_calls == len({e[:3] for e in events})  # first sightings of (method, name, status) only
        firsts: dict[str, tuple[str, int]] = {}
        for method, name, status, _ in order:
            firsts.setdefault(name, (method, status))
        assert {name: first[:2] for name, first in rec._first.items()} == firsts
        for (method, name), entry in rec.endpoints.items():
            mine = [(s, ms) for m, n, s, ms in events if (m, n) == (method, name)]
            totals = entry.folded()
            assert totals.statuses == {s: 40 * sum(1 for t, _ in mine if t == s) for s, _ in mine}, (method, name)
            expected = [0] * (len(rec.bounds_ms) + 1)
            for _, ms in mine:
                expected[bisect_left(rec.bounds_ms, ms)] += 40
            assert totals.buckets == expected and totals.response_bytes == 10 * 40 * len(mine), (method, name)
        rec.clear()
        assert rec._first == {} and rec.endpoints == {}


def test_status_codes_and_error_labels() -> None:
    rec = make_recorder()
    rec.on_request("GET", "/a", 5.0, 10, response=Response(200), exception=None)
    rec.on_request("GET", "/a", 5.0, 10, response=Response(404), exception=Exception("404 Client Error for url: http://x/a"))
    rec.on_request("GET", "/a", 5.0, 10, response=Response(200), exception=CatchResponseError("bad   body\nhere"))
    rec.on_request("GET", "/a", 5.0, 10, response=Response(500), exception=CatchResponseError("ignored: status wins"))
    rec.on_request("GET", "/a", None, 0, response=None, exception=ConnectionRefusedError("[Errno 111] http://x"))
    rec.on_request("GET", "/a", 5.0, 0, response=NoStatus(), exception=None)
    rec.on_request("GET", "/a", 5.0, 0, response=Response("abc"), exception=None)
    rec.on_request("GET", "/a", 5.0, 0, response=Response(None), exception="a string failure")
    endpoint = rec.endpoints[("GET", "/a")]
    assert endpoint.folded().statuses == {200: 2, 404: 1, 500: 1, 0: 4}
    assert endpoint.failures == {
        "HTTP 404": 1, "bad body here": 1, "HTTP 500": 1, "ConnectionRefusedError": 1, "a string failure": 1
    }
    assert endpoint.count == 7 and endpoint.requests == 8 and endpoint.folded().response_bytes == 40
    assert error_label(200, CatchResponseError("x" * 500)) == "x" * 120


class Name(str):
    """A str subclass, as a client library might pass."""


@pytest.mark.parametrize("value,label", [
    ("/api/items", "/api/items"),
    ('q"uote \\ new\nline\t{}', 'q"uote \\ new\nline\t{}'),  # nothing to clean: the renderer escapes
    ("ünïcødé ✓ 🚀", "ünïcødé ✓ 🚀"),
    (42, "42"), (None, "None"), (("a", 1), "('a', 1)"), (Name("/n"), "/n"),
    ("x" * MAX_NAME_LENGTH, "x" * MAX_NAME_LENGTH),  # at the limit: kept
    ("x" * (MAX_NAME_LENGTH + 1), "x" * (MAX_NAME_LENGTH - 1) + "…"),
    ("a\ud800b\udcff", "a?b?"),  # lone surrogates are no UTF-8
    (RaisingStr(), "<RaisingStr>"),
], ids=["plain", "specials", "unicode", "int", "none", "tuple", "str-subclass", "at-limit", "too-long", "surrogates",
        "str-raises"])
def test_label_text_makes_a_bounded_utf8_str_and_is_idempotent(value, label: str) -> None:
    text = label_text(value)
    assert text == label and type(text) is str  # not a str subclass either
    assert label_text(text) == text


@pytest.mark.parametrize("status,exception,label", [
    (404, Exception("404 Client Error for url: http://secret/a?token=x"), "HTTP 404"),  # the status, no URL
    (503, CatchResponseError("ignored"), "HTTP 503"),  # the status wins over a message
    (399, CatchResponseError("moved"), "moved"),  # below 400: no HTTP error
    (200, CatchResponseError("  bad \n\t body  "), "bad body"),  # one line, blanks collapsed
    (200, CatchResponseError("m" * 500), "m" * MAX_FAILURE_MESSAGE),
    (200, "a string failure", "a string failure"),  # custom clients fire strings
    (0, ConnectionRefusedError("[Errno 111] http://secret:1"), "ConnectionRefusedError"),  # class, never text
    (0, CatchResponseError(""), "CatchResponseError"),  # an empty message: the class
    (0, CatchResponseError("\n" * 5000 + "late"), "CatchResponseError"),  # only a huge message's start counts
    (0, RaisingMessage(), "RaisingMessage"),
    (0, CatchResponseError("a\ud800b"), "a?b"),
], ids=["status", "status-wins", "399", "one-line", "trimmed", "string", "class-name", "empty", "huge-blank-start",
        "message-raises", "surrogate"])
def test_error_label_rules(status, exception, label: str) -> None:
    assert error_label(status, exception) == label


def test_errors_per_endpoint_are_capped_with_an_overflow_value() -> None:
    rec = make_recorder()
    for i in range(MAX_ERRORS_PER_ENDPOINT + 30):
        rec.on_request("GET", "/a", 1.0, 0, response=None, exception=CatchResponseError(f"error {i}"))
    failures = rec.endpoints[("GET", "/a")].failures
    assert len(failures) == MAX_ERRORS_PER_ENDPOINT + 1 and failures[OVERFLOW] == 30
    assert sum(failures.values()) == MAX_ERRORS_PER_ENDPOINT + 30


def test_names_beyond_the_cap_fold_into_overflow_and_totals_stay_exact() -> None:
    rec = make_recorder(max_names=3)
    for i in range(10):
        for _ in range(2):
            rec.on_request("GET", f"/n{i}", 1.0, 1, response=Response(200), exception=None)
    assert sorted(name for _, name in rec.endpoints) == ["/n0", "/n1", "/n2", OVERFLOW]
    assert rec.endpoints[("GET", OVERFLOW)].requests == 14 and rec.dropped == 14
    assert rec.totals()["requests"] == 20


def test_bad_input_never_raises_and_is_counted_sanely() -> None:
    rec = make_recorder()
    rec.on_request("GET", "/a", float("nan"), 1, response=Response(200), exception=None)
    rec.on_request("GET", "/a", float("inf"), 1, response=Response(200), exception=None)
    rec.on_request("GET", "/a", "12", None, response=Response([1]), exception=None)
    rec.on_request(None, ["unhashable"], 3.0, 1, response=Response(200), exception=None)
    endpoint = rec.endpoints[("GET", "/a")]
    assert endpoint.requests == 3 and endpoint.count == 0 and endpoint.folded().sum_ms == 0
    assert rec.endpoints[("None", "['unhashable']")].count == 1


def test_per_endpoint_thresholds_exact_wins_over_regex() -> None:
    rec = RequestRecorder((1.0,), 1000.0, [SlowThreshold("/api/.*", 50.0, regex=True), SlowThreshold("/api/x", 7.0)])
    assert rec.slow_threshold_for("/api/x") == 7.0
    assert rec.slow_threshold_for("/api/y") == 50.0
    assert rec.slow_threshold_for("/web/api/y") == 1000.0  # whole-name match


def test_rendered_output_is_valid_for_prometheus_and_promtool() -> None:
    from locust_metrics.collector import LocustCollector
    from locust_metrics.exporter import MetricsExporter

    exporter = MetricsExporter(FakeEnvironment(), Settings.from_kwargs(port=0, labels={"env": "unit"}))
    for i in range(5):
        exporter.recorder.on_request("POST", f'/q"uote\\{i}\n', 12.5, 3, response=Response(201), exception=CatchResponseError("x"))
    registry = CollectorRegistry()
    registry.register(LocustCollector(exporter.snapshot))
    text = generate_latest(registry).decode()
    samples = Samples(text)
    assert samples.sum("locust_requests_total", env="unit", status_code="201") == 5
    assert samples.sum("locust_process_resident_memory_bytes", node="local") > 0
    check = promtool_check_metrics(text)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check
