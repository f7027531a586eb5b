"""Hostile request data and cardinality: the recorder never raises and counts every request once, the
exposition stays valid for prometheus_client's parsers and promtool, Locust's exit code does not change,
the caps hold and memory stays bounded.

Property-based (hypothesis) on the recorder and on both renderers (prometheus_client's and our fast one),
then real Locust processes fed hostile data and 6,000+ distinct names and error messages.
"""

from __future__ import annotations

import gc
import math
import numbers
import time
import tracemalloc
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from locust.exception import CatchResponseError
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from support import (
    LOCUSTFILES,
    FakeEnvironment,
    NoStatus,
    Response,
    Samples,
    child_env,
    csv_stats,
    free_port,
    http_get,
    locust,
    make_recorder,
    promtool_check_metrics,
    scrape,
)
from support.hostile import (
    EXCEPTIONS,
    EXCEPTIONS_BEYOND_LOCUST,
    HUGE_ERRORS,
    NAMES,
    NON_STR_NAMES,
    RESPONSES,
    TIMES,
    TIMES_BEYOND_LOCUST,
    UNENCODABLE_NAMES,
    RaisingBool,
    RaisingMessage,
    RaisingStatus,
    RaisingStr,
)

from locust_metrics.encoders import OPENMETRICS, TEXT
from locust_metrics.exporter import MetricsExporter
from locust_metrics.options import Settings
from locust_metrics.recorder import (
    MAX_ERRORS_PER_ENDPOINT,
    MAX_NAME_LENGTH,
    MAX_OVERFLOW_METHODS,
    MAX_RESPONSE_TIME_MS,
    OVERFLOW,
    RequestRecorder,
    error_label,
    fold_records,
    label_text,
)

# ---------------------------------------------------------------------------------------------- hostile values
HOSTILE_NAMES = NAMES + UNENCODABLE_NAMES

any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=40)  # surrogates included
names = st.one_of(any_text, st.sampled_from(HOSTILE_NAMES), st.integers(), st.none(), st.just(("a", 1)),
                  st.just(["unhashable"]), st.builds(RaisingStr), st.integers(995, 1005).map(lambda n: "n" * n))
methods = st.one_of(st.sampled_from(["GET", "POST", "", None, 'M"\n\\', "ü" * 1500]), any_text)
times = st.one_of(st.none(), st.floats(), st.integers(-(10**30), 10**30), st.sampled_from(
    [-0.0, 1e-300, MAX_RESPONSE_TIME_MS, math.nextafter(MAX_RESPONSE_TIME_MS, math.inf), 1e308, True, "12", b"1",
     Decimal("1.5"), Fraction(1, 3), [1]]))
lengths = st.one_of(st.integers(-(10**20), 10**20), st.floats(), st.sampled_from([None, "abc", True, 2**80, Fraction(7, 2)]))
responses = st.one_of(
    st.none(), st.builds(NoStatus), st.builds(RaisingStatus),
    st.builds(Response, st.one_of(st.integers(-5, 2000), st.sampled_from(["200", "abc", "٣٠٤", "9" * 5000, None, 200.0, 404.5,
                                                                           True, [200], b"200"]))),
)
exceptions = st.one_of(
    st.none(), st.builds(Exception, any_text), st.builds(CatchResponseError, any_text),
    st.integers(100, 1500).map(lambda n: CatchResponseError("long message " * n)), any_text,
    st.builds(RaisingMessage), st.just(ConnectionRefusedError("[Errno 111] http://secret-host/a?token=x")),
    st.sampled_from(["", 0, [], "x" * 100_000]),
)
events = st.lists(st.tuples(methods, names, times, lengths, responses, exceptions), max_size=25)


def is_real(value) -> bool:
    return isinstance(value, numbers.Real)  # bool included: True is 1, as Python (and Locust) add it


def in_histogram(response_time) -> bool:
    """Expected by the documented rules: numbers that are not NaN or infinite (negatives count as 0)."""
    return is_real(response_time) and math.isfinite(float(response_time))


def fire_all(recorder: RequestRecorder, batch) -> None:
    for method, name, response_time, length, response, exception in batch:
        recorder.on_request(method, name, response_time, length, response=response, context={}, exception=exception)


def label_safe(text: str) -> bool:
    """A ``str`` of at most MAX_NAME_LENGTH characters that encodes as UTF-8."""
    if type(text) is not str or len(text) > MAX_NAME_LENGTH:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ---------------------------------------------------------------------------------------------- properties
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events, st.integers(1, 8))
@example([("GET", "x" * 3000, -5.0, -3, Response("abc"), CatchResponseError("m" * 10**6))] * 2, 1)
@example([(None, float("nan"), float("nan"), float("nan"), RaisingStatus(), RaisingMessage())], 1)
@example([("GET", "/a", 1.0, 1, Response(200), RaisingBool())], 1)
@example([("GET", "/a", 1.0, 1, Response(200), None), ("GET", "/a", True, True, Response(200), None)], 1)
@example([("GET", "", None, 0, None, None), ("GET", "", None, Fraction(7, 2), None, None)], 1)  # the fast path
def test_the_recorder_never_raises_and_counts_every_request_once(batch, max_names: int) -> None:
    recorder = make_recorder(max_names=max_names)
    fire_all(recorder, batch)
    totals = recorder.totals()
    assert "bug" not in recorder._warned, "no request hit an error of ours"
    assert totals["requests"] == len(batch)
    assert totals["count"] == sum(in_histogram(t) for _, _, t, _, _, _ in batch)
    # a failure is a truthy exception, as in Locust; one whose truthiness raises counts as a failure
    assert totals["failures"] == sum(1 for *_, e in batch if isinstance(e, RaisingBool) or e)
    assert len(recorder.endpoints) <= max_names + MAX_OVERFLOW_METHODS + 1
    assert recorder.named <= max_names
    for (method, name), endpoint in recorder.endpoints.items():
        assert label_safe(method) and label_safe(name) and (endpoint.method, endpoint.name) == (method, name)
        assert all(n >= 0 for n in endpoint.folded().buckets)
        assert math.isfinite(endpoint.folded().sum_ms) and endpoint.folded().sum_ms >= 0
        assert type(endpoint.folded().response_bytes) in (int, float) and endpoint.folded().response_bytes >= 0  # +Inf is allowed
        assert all(type(s) is int and (s == 0 or 100 <= s <= 999) for s in endpoint.folded().statuses), endpoint.folded().statuses
        assert len(endpoint.failures) <= MAX_ERRORS_PER_ENDPOINT + 1
        assert all(label_safe(e) and "\n" not in e and len(e) <= 120 or e == OVERFLOW for e in endpoint.failures)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["GET", None, 5]), names), min_size=1, max_size=30))
def test_names_of_the_careful_path_keep_their_totals_across_repeats(pairs) -> None:
    """A name the fast path cannot take (too long, not a str, not encodable) still counts once per request."""
    recorder = make_recorder(max_names=4)
    for _ in range(3):
        fire_all(recorder, [(m, n, 10.0, 1, Response(200), None) for m, n in pairs])
    assert recorder.totals()["requests"] == recorder.totals()["count"] == 3 * len(pairs)
    overflowed = sum(e.requests for e in recorder.endpoints.values() if e.name == OVERFLOW)
    assert recorder.dropped == overflowed - sum(3 for _, n in pairs if label_text(n) == OVERFLOW)


def test_clamping_rules_for_times_lengths_and_labels() -> None:
    recorder = make_recorder(buckets="0.1,1", slow_threshold=100)
    for t in (-1.0, -1e9, float("-inf"), float("nan"), float("inf"), 1e300, 5.0):
        recorder.on_request("GET", "/t", t, -7, response=Response(200), exception=None)
    endpoint = recorder.endpoints[("GET", "/t")]
    assert endpoint.requests == 7 and endpoint.count == 4  # -1, -1e9 as 0; 1e300 as the maximum; 5
    assert endpoint.folded().buckets == [3, 0, 1] and endpoint.folded().sum_ms == 5.0 + MAX_RESPONSE_TIME_MS and endpoint.folded().slow == 1
    assert endpoint.folded().response_bytes == 0
    assert label_text("x" * 3000) == "x" * (MAX_NAME_LENGTH - 1) + "…" and label_text(label_text("x" * 3000)) == label_text("x" * 3000)
    assert label_text("a\ud800b") == "a?b" and label_text(RaisingStr()) == "<RaisingStr>"
    assert error_label(0, CatchResponseError(" a \n  b ")) == "a b" and error_label(0, RaisingMessage()) == "RaisingMessage"


def render_all(recorder: RequestRecorder) -> list[tuple[str, str]]:
    """(format, text) of every exposition we serve: prometheus_client's encoders and the fast renderer's."""

    exporter = MetricsExporter(FakeEnvironment(host="http://\udcff-host"), Settings.from_kwargs(port=0, labels={"env": 'a "b"\n\\c ü'}))
    exporter.recorder = exporter.totals = recorder
    outputs = [("text", generate_latest(exporter.registry).decode()),
               ("openmetrics", generate_openmetrics(exporter.registry).decode())]
    snapshot, encoder = exporter.snapshot(), exporter.renderer.encoder
    outputs += [("text", encoder.render(snapshot, TEXT).decode()),
                ("openmetrics", encoder.render(snapshot, OPENMETRICS).decode())]
    return outputs


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events)
@example([('M"\n\\', "x" * 3000, 5.0, 1, Response(200), CatchResponseError('q"\\\n'))])
def test_every_renderer_writes_what_prometheus_parsers_read_back(batch) -> None:
    recorder = make_recorder(max_names=6)
    fire_all(recorder, batch)
    expected = {(e.method, e.name): e.requests for e in recorder.endpoints.values() if e.requests}
    for fmt, text in render_all(recorder):
        if fmt == "text":
            samples = Samples(text)
            requests = samples.by("locust_requests_total", "method", "name")
        else:
            families = list(parse_openmetrics(text))
            requests = {}
            for family in families:
                for sample in family.samples:
                    if sample.name == "locust_requests_total":
                        key = (sample.labels["method"], sample.labels["name"])
                        requests[key] = requests.get(key, 0) + sample.value
        assert requests == expected, fmt
        assert sum(requests.values()) == len(batch)


def test_promtool_accepts_the_exposition_of_every_hostile_input(tmp_path: Path) -> None:
    recorder = make_recorder(max_names=50)
    times = TIMES + TIMES_BEYOND_LOCUST
    exceptions = EXCEPTIONS + HUGE_ERRORS + EXCEPTIONS_BEYOND_LOCUST
    for i, name in enumerate(HOSTILE_NAMES + NON_STR_NAMES):
        for j, response in enumerate(RESPONSES):
            recorder.on_request(["GET", 'M"\n', "ü" * 2000][j % 3], name, times[(i + j) % len(times)], (i - j) * 1e300,
                                response=response, exception=exceptions[(i * j) % len(exceptions)])
    for fmt, text in render_all(recorder):
        if fmt == "text":
            check = promtool_check_metrics(text)
            assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check


# ---------------------------------------------------------------------------------------------- cardinality
def test_caps_hold_and_memory_stays_bounded_with_60000_names_and_error_messages() -> None:
    recorder = make_recorder()  # default caps: 500 names, 20 errors per name

    def feed(start: int, stop: int) -> None:
        for i in range(start, stop):
            recorder.on_request(f"M{i % 97}", f"/item/{i}", 10.0, 100, response=Response(500),
                                exception=CatchResponseError(f"error number {i}"))
            recorder.on_request("GET", f"/item/{i % 600}", 10.0, 100, response=Response(200),
                                exception=CatchResponseError(f"error number {i}"))

    gc.collect()
    tracemalloc.start()
    try:
        feed(0, 15_000)  # by now every kept name holds its 20 error values: the caps are reached
        gc.collect()
        at_caps = tracemalloc.get_traced_memory()[0]
        feed(15_000, 60_000)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    totals = recorder.totals()
    assert totals["requests"] == totals["failures"] == 120_000
    assert recorder.named == 500 and len(recorder.endpoints) <= 500 + MAX_OVERFLOW_METHODS + 1
    assert all(len(e.failures) <= MAX_ERRORS_PER_ENDPOINT + 1 for e in recorder.endpoints.values())
    overflowed = sum(e.requests for e in recorder.endpoints.values() if e.name == OVERFLOW)
    assert recorder.dropped == overflowed > 0
    print(f"recorder memory: {at_caps / 1e6:.2f} MB after 15,000 names, {after / 1e6:.2f} MB after 60,000")
    assert after - at_caps < 20_000, f"memory grew by {after - at_caps} bytes from 15,000 to 60,000 distinct names"


def test_a_real_run_with_8000_names_keeps_the_caps_and_exact_totals(workdir: Path) -> None:
    port = free_port()
    args = ["-f", str(LOCUSTFILES / "hostile.py"), "--headless", "-u", "10", "-r", "10", "-t", "6s",
            "--csv", str(workdir / "run"), "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
            "--metrics-final-scrape-timeout", "10"]
    with locust(args, workdir, env=child_env(HOSTILE_MODE="cardinality")) as process:
        scrapes = []
        while process.running():
            try:
                scrapes.append(scrape(port, timeout=5))
            except OSError:
                pass
            time.sleep(1.0 if len(scrapes) < 5 else 0.2)
        code = process.wait(timeout=30)
        output = process.output()
    assert code == 1, output[-3000:]  # the failures, as without us
    final = scrapes[-1]
    stats = csv_stats(workdir / "run")
    total = stats[("", "Aggregated")]
    assert total["requests"] == 8_000, "as many distinct names as the locustfile fires (CARDINALITY_REQUESTS)"
    assert final.sum("locust_requests_total") == total["requests"]
    assert final.sum("locust_request_failures_total") == total["failures"]
    names = {labels["name"] for labels, _ in final.select("locust_requests_total")}
    assert len(names) == 501 and OVERFLOW in names
    errors = final.by("locust_request_failures_total", "name", "error")
    per_name: dict[str, int] = {}
    for (name, _), _n in errors.items():
        per_name[name] = per_name.get(name, 0) + 1
    assert max(per_name.values()) <= MAX_ERRORS_PER_ENDPOINT + 1
    assert final.sum("locust_metrics_dropped_names_total") == final.sum("locust_requests_total", name=OVERFLOW)
    assert output.count("more than 500 distinct request names") == 1


# ---------------------------------------------------------------------------------------------- real process
def run_hostile(workdir: Path, plugin: bool) -> tuple[int, str, list[Samples], list[str]]:
    port = free_port()
    args = ["-f", str(LOCUSTFILES / "hostile.py"), "--headless", "-u", "5", "-r", "5", "-t", "5s"]
    if plugin:
        args += ["--metrics-port", str(port), "--metrics-host", "127.0.0.1", "--metrics-final-scrape-timeout", "10"]
    texts: list[str] = []
    scrapes: list[Samples] = []
    env = child_env(HOSTILE_PLUGIN="1" if plugin else "0")
    with locust(args, workdir, env=env, name="with" if plugin else "without") as process:
        while plugin and process.running():
            try:
                status, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=5)
                assert status == 200, body[:300]
                texts.append(body)
                scrapes.append(Samples(body))
            except OSError:
                pass
            time.sleep(0.5)
        code = process.wait(timeout=40)
        output = process.output()
    return code, output, scrapes, texts


def test_hostile_data_keeps_the_exposition_valid_the_test_running_and_the_exit_code(workdir: Path) -> None:
    baseline, baseline_output, _, _ = run_hostile(workdir, plugin=False)
    code, output, scrapes, texts = run_hostile(workdir, plugin=True)
    assert baseline == 1, baseline_output[-3000:]  # Locust's own verdict on this test: failures
    assert code == baseline, output[-3000:]
    assert "Shutting down (exit code 1)" in output and "Traceback" not in output and "Traceback" not in baseline_output
    assert "Uncaught exception in event handler" not in output, "our listener never raised"
    assert "locust_metrics/" not in output.split("Shutting down")[0], "no traceback of ours"
    requests = [s.sum("locust_requests_total") for s in scrapes]
    assert len(requests) >= 5 and requests == sorted(requests) and requests[-1] > requests[0], requests
    for text in (texts[len(texts) // 2], texts[-1]):
        check = promtool_check_metrics(text)
        assert check.returncode == 0 and not check.stdout.strip(), check
    final = scrapes[-1]
    names = {labels["name"] for labels, _ in final.select("locust_requests_total")}
    assert {'q"uote', "back\\slash", "new\nline", "", "x" * (MAX_NAME_LENGTH - 1) + "…"} <= names
    assert max(len(n) for n in names) == MAX_NAME_LENGTH
    assert {s for labels, _ in final.select("locust_requests_total") for s in [labels["status_code"]]} <= {"0", "200", "404"}
    assert final.sum("locust_request_duration_seconds_sum") < 1e13  # huge times count as the documented maximum
    errors = {labels["error"] for labels, _ in final.select("locust_request_failures_total")}
    assert all(len(e) <= 120 and "\n" not in e for e in errors) and "CatchResponseError" in errors
    warnings = [line for line in output.splitlines() if "locust_metrics" in line and "/WARNING/" in line]
    assert 0 < len(warnings) <= 8, warnings  # one per kind of bad input, not one per request
    assert all("(logged once)" in line for line in warnings), warnings


class Float64(float):
    """As numpy's ``float64``: a float subclass whose arithmetic keeps its own type, also as the right operand."""

    def __add__(self, other: object) -> Float64:
        return Float64(float(self) + float(other))  # type: ignore[arg-type]

    __radd__ = __add__


@pytest.mark.parametrize("native", [False, True])
def test_odd_number_types_on_the_fast_path_give_plain_totals(native: bool) -> None:
    """Lengths and times of other number types (a Fraction, a float subclass that keeps its type in sums, as
    numpy's does) take the fast path once the entry exists; the totals a fold gives, and a snapshot's, are
    plain ints and floats with the exact values (the exposition, the worker payload and the JSON reports need
    plain numbers)."""
    recorder = make_recorder(native_histograms=native)
    events = [(1.0, 1), (Float64(2.5), Fraction(7, 2)), (None, Fraction(1, 2)), (3.0, Float64(1.5)), (Float64(0.5), 2)]
    for ms, length in events:
        recorder.record("GET", "/a", ms, length, Response(200), None)
    endpoint = recorder.endpoints[("GET", "/a")]
    unfolded = endpoint.copy_unfolded()
    added = fold_records(unfolded.hot, unfolded.totals.buckets, dict(unfolded.totals.statuses), endpoint.slow_index)
    totals = endpoint.folded()
    for sums in (added, totals):
        assert type(sums.sum_ms) is float and type(sums.response_bytes) in (int, float)
    assert totals.sum_ms == 7.0 and totals.response_bytes == 8.5 and totals.statuses == {200: 5}
    assert sum(totals.buckets) == 4
