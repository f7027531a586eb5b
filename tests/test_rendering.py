"""The outputs as functions of a snapshot: the fast encoder (``locust_metrics/encoders.py``) writes the same bytes
as prometheus_client does for the collector's families (``locust_metrics/collector.py``), sliced.

Byte-for-byte, one snapshot through both functions, against ``generate_latest`` (text 0.0.4) and the OpenMetrics
encoder (and the exporter's registry gives the same), for typical, hostile and random data; promtool and prometheus_client's parsers read it; the
body is the snapshot's even when requests are recorded while it renders; content negotiation, gzip and
the WSGI semantics (OPTIONS, 405, favicon, ``name[]``) as prometheus_client's app; fallbacks.
"""

from __future__ import annotations

import dataclasses
import gzip
import http.client
import logging
import math
import types

import pytest
from gevent.pywsgi import WSGIServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from locust import User, task
from locust.env import Environment
from prometheus_client import generate_latest, make_wsgi_app
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from support import Response, Samples, free_port, make_recorder, promtool_check_metrics

from locust_metrics import encoders, scraping
from locust_metrics.collector import FamilyList, families
from locust_metrics.distributed import PayloadMerger, take_payload
from locust_metrics.encoders import OPENMETRICS, TEXT, FastPathUnavailable, compress, negotiate
from locust_metrics.exporter import MetricsExporter
from locust_metrics.options import Settings
from locust_metrics.recorder import OVERFLOW, EndpointStats
from locust_metrics.resources import NodeResources
from locust_metrics.scraping import MetricsServer, ScrapeTracker, add_web_ui_route
from locust_metrics.snapshot import Snapshot

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)

TEXT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"
"""Text format 0.0.4 (prometheus_client >= 0.22 names it CONTENT_TYPE_PLAIN_0_0_4; 0.20 has no name for it)."""


class _User(User):
    @task
    def nothing(self) -> None:  # pragma: no cover - never runs
        pass


class _FixedResources:
    """CPU and memory that do not change between two renders (so outputs compare byte for byte)."""

    def sample(self) -> NodeResources:
        return NodeResources(12.5, 0.375, 123_456_789, 1_700_000_000.0)

    def on_usage_monitor(self, **_kwargs) -> None:
        pass


def make_exporter(**options) -> MetricsExporter:
    """An exporter (not started) with deterministic resources and a test lifecycle."""
    exporter = MetricsExporter(Environment(user_classes=[_User]), Settings.from_kwargs(port=0, **options))
    exporter.resources = _FixedResources()
    lifecycle = exporter.lifecycle
    lifecycle.run_id, lifecycle.host, lifecycle.locustfile = "abc123", 'http://h"o\\st\n', "locustfile.py"
    lifecycle.start_time, lifecycle.stop_time = 1_700_000_000.25, 1_700_000_100.5
    return exporter


def fill(exporter: MetricsExporter, names: int = 30, per_name: int = 12) -> None:
    """Typical traffic: a few statuses and failures per endpoint, latencies over all buckets."""
    statuses = [(Response(200), None), (Response(404), "HTTP 404"), (Response(503), "HTTP 503"),
                (None, ConnectionResetError("reset")), (Response(200), "check failed: 'total' missing")]
    for i in range(names):
        for j in range(per_name):
            response, error = statuses[(i + j) % len(statuses)]
            exporter.recorder.on_request(
                request_type="POST" if i % 3 == 0 else "GET", name=f"/api/items/{i}", response_time=(i * 37 + j * 211) % 9000 + 0.5,
                response_length=100 + j, response=response, exception=error,
            )


def library(exporter: MetricsExporter, fmt: str) -> bytes:
    return generate_latest(exporter.registry) if fmt == TEXT else generate_openmetrics(exporter.registry)


def collected(snapshot: Snapshot, fmt: str) -> bytes:
    """prometheus_client's bytes for the collector's families of ``snapshot``."""
    encode = generate_latest if fmt == TEXT else generate_openmetrics
    return encode(FamilyList(families(snapshot)))


def fast(exporter: MetricsExporter, fmt: str, pause=None, snapshot: Snapshot | None = None) -> bytes:
    """The fast encoder's bytes of ``snapshot`` (default: a new one), with the exporter's encoder (its caches)."""
    return exporter.renderer.encoder.render(snapshot or exporter.snapshot(), fmt, pause)


def assert_same(exporter: MetricsExporter) -> None:
    for fmt in (TEXT, OPENMETRICS):
        # one snapshot through both functions; it copies hot records that nobody has folded yet
        snapshot = exporter.snapshot()
        actual, expected = fast(exporter, fmt, snapshot=snapshot), collected(snapshot, fmt)
        assert library(exporter, fmt) == expected, "the registry serves the collector's families of a snapshot"
        if actual != expected:  # show the first differing line
            for want, got in zip(expected.splitlines(), actual.splitlines()):
                assert got == want, fmt
        assert actual == expected, fmt


# ---------------------------------------------------------------------------------------------- same bytes
def test_empty_and_typical_scrapes_are_byte_for_byte_prometheus_client() -> None:
    exporter = make_exporter()
    assert_same(exporter)  # no endpoint yet: HELP/TYPE only, dropped = 0
    fill(exporter)
    assert_same(exporter)
    assert b"locust_request_duration_seconds_bucket" in fast(exporter, TEXT)
    assert fast(exporter, OPENMETRICS).endswith(b"# EOF\n")


@pytest.mark.parametrize(
    "labels",
    [{}, {"env": "staging"}, {"aaa": 'q"uote', "zone": "back\\slash\nnew line", "Env": "ünïcødé ✓", "lf": "x"},
     {"error_budget": "1", "methodology": "m", "named": "n", "le_x": "y", "status": "s"}],
    ids=["none", "one", "hostile-values", "names-around-ours"],
)
def test_constant_labels_sort_and_escape_as_prometheus_client(labels: dict[str, str]) -> None:
    exporter = make_exporter(labels=labels)
    fill(exporter, names=8)
    assert_same(exporter)


def test_hostile_names_odd_statuses_big_numbers_and_thresholds() -> None:
    exporter = make_exporter(
        buckets=[0.0001, 0.001, 0.5, 1, 123456.789, 1e7], slow_threshold=250,
        slow_thresholds={"/slow": 0.3, "re:/regex.*": 7_654_321}, max_names=6,
    )
    recorder = exporter.recorder
    for name in ['q"uote', "back\\slash", "new\nline", "ünïcødé 🚀", "", "/slow", "/regex/1", "/x", "/y"]:
        recorder.on_request(request_type='M"\n\\', name=name, response_time=3.0, response_length=1,
                            response=Response(200), exception=None)
    endpoint = recorder.endpoints[('M"\n\\', 'q"uote')]
    endpoint.statuses = {0: 1, 50: 2, 200: 3, 999: 4, 100: 1_000_000, 404: 10**17}  # 0 and 50 share "0"
    endpoint.failures = {'say "hi"\\\n': 3, "ü": 2_500_000, OVERFLOW: 1}
    endpoint.buckets = [999_999, 1, 0, 5, 0, 0, 2, 7, 0]  # cumulative crosses 1e6: Go's exponent form
    endpoint.sum_ms = 1234567.891
    endpoint.response_bytes = 2.5  # a float from an odd response_length
    endpoint.slow = 10**20
    other = recorder.endpoints[('M"\n\\', "back\\slash")]
    other.buckets = [0, 0, 0, 0, 0, 0, 0, 0, 1.5]  # a float count (only a malformed payload does that)
    other.sum_ms = math.inf
    assert recorder.dropped > 0 and (('M"\n\\', OVERFLOW) in recorder.endpoints)
    assert_same(exporter)


def test_worker_totals_and_master_views_render_the_same() -> None:
    exporter = make_exporter(labels={"env": "x"})
    exporter.totals = exporter._new_recorder()  # a worker with its own endpoint exports its cumulative copy
    fill(exporter, names=3)
    assert exporter.snapshot().endpoints == ()
    fill(types.SimpleNamespace(recorder=exporter.totals), names=5)
    assert len(exporter.snapshot().endpoints) == 5
    assert_same(exporter)


def test_hidden_threshold_bounds_render_as_prometheus_client() -> None:
    """A ``<`` threshold records a bound just below its time that no ``le`` shows (hidden bounds)."""
    exporter = make_exporter(thresholds=["p95<100ms", "/api/items/1:p99<2.5s", "p50<=0.3s"])
    assert exporter.settings.hidden_bounds_ms() and set(exporter.settings.hidden_bounds_ms()) <= set(
        exporter.recorder.bounds_ms)
    fill(exporter, names=8)
    assert_same(exporter)
    assert b'le="0.09999' not in fast(exporter, TEXT) and b'le="0.1"' in fast(exporter, TEXT)


def test_one_renderer_stays_byte_for_byte_as_names_bounds_and_thresholds_change() -> None:
    """The renderer keeps each endpoint's label strings between scrapes (its only state): every scrape is still
    prometheus_client's, whatever changed since the previous one."""
    from locust_metrics.distributed import PayloadMerger, take_payload
    from locust_metrics.options import SlowThreshold

    exporter = make_exporter(labels={"env": "x"})
    recorder = exporter.recorder
    fill(exporter, names=10)
    assert_same(exporter)
    recorder.clear()  # a new test: fewer names
    fill(exporter, names=3, per_name=5)
    assert_same(exporter)
    recorder.clear()  # a worker adopting the master's buckets and thresholds, one on a name rendered before
    recorder.configure((20.0, 200.0, 2000.0), 500.0, [SlowThreshold("/api/items/1", 50.0)], 500)
    fill(exporter, names=4)
    assert_same(exporter)
    worker = make_recorder(buckets=".2,2", slow_threshold=500)  # a report with other bounds, merged
    fill(types.SimpleNamespace(recorder=worker), names=6)
    PayloadMerger(recorder).merge(take_payload(worker, "worker-0", None))
    assert_same(exporter)
    fill(exporter, names=150, per_name=1)  # more names than the cache kept for the previous scrape's 6
    assert_same(exporter)
    assert len(exporter.snapshot().endpoints) == 150


_label_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_counts = st.one_of(st.integers(0, 2_000), st.integers(0, 10**18))
_endpoint = st.tuples(
    st.sampled_from(["GET", "POST", 'M"x']), _label_text,
    st.lists(st.integers(0, 3_000_000), min_size=4, max_size=4),  # the test's 3 bounds + +Inf
    st.one_of(st.floats(0, 1e12), st.integers(0, 10**9)),
    _counts, st.sampled_from([0.0, 1.5, 250.0, 1e9]), st.one_of(_counts, st.floats(0, 1e15)),
    st.dictionaries(st.integers(0, 1200), _counts, max_size=4),
    st.dictionaries(_label_text, _counts, max_size=3),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_endpoint, max_size=6), st.dictionaries(st.sampled_from(["a", "env", "zz", "Lab"]), _label_text, max_size=2))
def test_random_accumulators_render_byte_for_byte(endpoints, labels) -> None:
    exporter = make_exporter(buckets="0.01,0.5,2.5", labels=labels)
    recorder = exporter.recorder
    for method, name, buckets, sum_ms, slow, slow_ms, size, statuses, failures in endpoints:
        entry = EndpointStats(method, name, 4, slow_ms)
        entry.buckets, entry.sum_ms, entry.slow, entry.response_bytes = buckets, sum_ms, slow, size
        entry.statuses, entry.failures = statuses, failures
        recorder.endpoints[(method, name)] = entry
    assert_same(exporter)


# ---------------------------------------------------------------------------------------------- readers
def test_promtool_and_parsers_accept_the_fast_output() -> None:
    exporter = make_exporter(labels={"env": 'a "b"\n\\c ü'})
    fill(exporter, names=40)
    text = fast(exporter, TEXT).decode()
    result = promtool_check_metrics(text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert Samples(text).sum("locust_requests_total") == 40 * 12
    families = {family.name: family for family in parse_openmetrics(fast(exporter, OPENMETRICS).decode())}
    assert sum(s.value for s in families["locust_requests"].samples) == 40 * 12
    assert families["locust_request_duration_seconds"].type == "histogram"


# ---------------------------------------------------------------------------------------------- snapshot
def test_the_body_is_the_snapshot_even_when_requests_arrive_while_rendering(monkeypatch) -> None:
    exporter = make_exporter()
    fill(exporter, names=60)
    expected = {fmt: library(exporter, fmt) for fmt in (TEXT, OPENMETRICS)}
    ticks = iter(range(10**9))
    monkeypatch.setattr(encoders.time, "perf_counter", lambda: next(ticks) * 0.0004)  # a slice every few endpoints
    pauses = []

    def pause() -> None:  # what request greenlets would do between two slices
        pauses.append(1)
        fill(exporter, names=70, per_name=1)
        exporter.recorder.endpoints[("GET", "/api/items/1")].statuses[200] += 5

    renderer = exporter.renderer
    for fmt in (TEXT, OPENMETRICS):
        snapshot = exporter.snapshot()
        assert renderer.encoder.render(snapshot, fmt, pause) == expected[fmt]
        exporter.recorder.clear()
        fill(exporter, names=60)
    assert len(pauses) > 20
    headers, body = renderer.respond(PROMETHEUS_ACCEPT, "gzip", pause=pause)
    assert dict(headers)["Content-Encoding"] == "gzip"
    assert b"locust_requests_total" in gzip.decompress(b"".join(body))


def test_a_snapshot_is_an_immutable_copy_with_named_records() -> None:
    exporter = make_exporter()
    fill(exporter, names=3)
    snapshot = exporter.snapshot()
    endpoint = snapshot.endpoints[0]
    assert (endpoint.method, endpoint.name, endpoint.slow_ms) == ("POST", "/api/items/0", exporter.settings.slow_threshold_ms)
    assert sum(endpoint.folded().buckets) == sum(n for _, n in endpoint.folded().statuses) == 12
    before = collected(snapshot, TEXT)
    fill(exporter, names=3)  # requests after the snapshot change nothing in it
    assert collected(snapshot, TEXT) == before != collected(exporter.snapshot(), TEXT)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.dropped = 1  # type: ignore[misc]


def test_a_malformed_worker_native_delta_is_left_out_and_counted_once_as_a_recorder_fault() -> None:
    """A master's native histograms: a worker delta whose pairs are not ours is left out when a fold adds it, and
    counted once in ``locust_metrics_errors_total{source="recorder"}`` (scrapes before that add it to copies only)."""
    exporter = make_exporter(native_histograms=True)
    worker = make_recorder(native_histograms=True)
    worker.record("GET", "/x", 3.0, 5, Response(200), None)
    payload = take_payload(worker, "w0", None)
    for flat in ([1, -5], [1.5, 1], [10**12, 1]):
        PayloadMerger(exporter.recorder).merge(dict(payload, native=[[6, 0, flat]]))
    assert dict(exporter.snapshot().health.errors)["recorder"] == dict(exporter.snapshot().health.errors)["recorder"] == 0
    for endpoint in exporter.recorder.endpoints.values():
        endpoint.fold()
    snapshot = exporter.snapshot()
    assert dict(snapshot.health.errors)["recorder"] == 3
    text = collected(snapshot, TEXT)
    assert b'locust_metrics_errors_total{source="recorder"} 3.0' in text and fast(exporter, TEXT, snapshot=snapshot) == text


def test_a_part_that_fails_is_left_out_of_the_snapshot_counted_and_the_rest_served(caplog) -> None:
    exporter = make_exporter()
    fill(exporter, names=2)

    def denied() -> NodeResources:
        raise PermissionError("psutil access denied")

    exporter.resources.sample = denied
    with caplog.at_level(logging.ERROR, logger="locust_metrics.snapshot"):
        snapshot, again = exporter.snapshot(), exporter.snapshot()
    assert snapshot.nodes is None and snapshot.runner is not None and snapshot.test is not None
    assert dict(again.health.errors)["nodes"] == 2
    assert sum("could not export the nodes metrics" in r.getMessage() for r in caplog.records) == 1  # logged once
    text = collected(snapshot, TEXT)
    assert b"locust_process_cpu_seconds" not in text and b'locust_metrics_errors_total{source="nodes"} 1.0' in text
    assert fast(exporter, TEXT, snapshot=snapshot) == text


def test_compress_is_gzip_of_the_joined_pieces_and_pauses(monkeypatch) -> None:
    pieces = [bytes(range(256)) * 1000, b"", b"# EOF\n" * 50_000]  # 256,000 and 300,000 bytes: 4 + 5 steps of 64 KiB
    ticks = iter(range(10**9))
    monkeypatch.setattr(encoders.time, "perf_counter", lambda: next(ticks))  # every step takes longer than a slice
    calls = []
    out = compress(pieces, pause=lambda: calls.append(1))
    assert gzip.decompress(out) == b"".join(pieces)
    assert len(calls) == 9, "a pause after every step that ends a slice"
    assert gzip.decompress(compress(b"abc")) == b"abc"


# ---------------------------------------------------------------------------------------------- negotiation
@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        (None, TEXT), ("", TEXT), ("*/*", TEXT), ("text/plain;version=0.0.4", TEXT), (PROMETHEUS_ACCEPT, OPENMETRICS),
        ("application/openmetrics-text", OPENMETRICS), ("application/openmetrics-text; version=1.0.0", OPENMETRICS),
        ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8", OPENMETRICS),
        ("text/plain;version=1.0.0;escaping=underscores", TEXT),
        ("text/plain;version=1.0.0;escaping=dots", None),  # only prometheus_client rewrites names that way
    ],
)
def test_negotiation_follows_prometheus_client(accept, fmt) -> None:
    chosen, encoder, content_type = negotiate(accept)
    expected_encoder, expected_content_type = choose_encoder(accept or "")
    assert content_type == expected_content_type
    assert getattr(encoder, "func", encoder) is getattr(expected_encoder, "func", expected_encoder)
    if fmt is None and not (getattr(expected_encoder, "keywords", None) or {}).get("escaping"):
        fmt = TEXT  # prometheus_client < 0.22 knows no name escaping: it serves plain text 0.0.4, and so do we
    assert chosen == fmt


def _get(port: int, path: str = "/metrics", method: str = "GET", headers: dict[str, str] | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_metrics_server_fast_path_serves_what_prometheus_client_serves() -> None:
    exporter = make_exporter(labels={"env": "http"})
    fill(exporter, names=25)
    tracker = ScrapeTracker()
    ours = MetricsServer(exporter.registry, tracker, "127.0.0.1", free_port(), exporter.renderer)
    # the reference: prometheus_client's own WSGI app over the same registry, served as ours is (gevent)
    theirs = WSGIServer(("127.0.0.1", 0), make_wsgi_app(exporter.registry), log=None)
    ours.start()
    theirs.start()
    their_port = theirs.server_port
    try:
        for headers in ({}, {"Accept": PROMETHEUS_ACCEPT}, {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"},
                        {"Accept-Encoding": "gzip, deflate"}):
            status, got_headers, body = _get(ours.port, headers=headers)
            want_status, want_headers, want = _get(their_port, headers=headers)
            assert status == want_status == 200
            assert got_headers["Content-Type"] == want_headers["Content-Type"]
            assert got_headers.get("Content-Encoding") == want_headers.get("Content-Encoding")
            assert int(got_headers["Content-Length"]) == len(body)
            if got_headers.get("Content-Encoding") == "gzip":
                body, want = gzip.decompress(body), gzip.decompress(want)
            assert body == want
        assert _get(ours.port, headers={"Accept": PROMETHEUS_ACCEPT})[1]["Content-Type"] == choose_encoder(PROMETHEUS_ACCEPT)[1]
        assert _get(ours.port)[1]["Content-Type"] == TEXT_0_0_4
        assert exporter.renderer.fast_scrapes >= 6 and tracker.count >= 6

        # name[] filters, OPTIONS, other methods and the favicon: as prometheus_client's app (>= 0.21: before,
        # it served the metrics to every method; ours answers OPTIONS and other methods as current ones do)
        for path, method in (("/metrics?name[]=locust_slow_requests_total&name[]=locust_users", "GET"),
                             ("/metrics", "OPTIONS"), ("/metrics", "POST"), ("/favicon.ico", "GET")):
            status, got_headers, body = _get(ours.port, path, method)
            want_status, want_headers, want = _get(their_port, path, method)
            if method != "GET" and "Allow" not in want_headers:  # an old prometheus_client
                want_status, want_headers = (200, {"Allow": "OPTIONS,GET"}) if method == "OPTIONS" else (405, {
                    "Allow": "OPTIONS,GET"})
                want = b"" if method == "OPTIONS" else b"# HTTP 405 Method Not Allowed: POST; use OPTIONS or GET\n"
            assert (status, body, got_headers.get("Allow")) == (want_status, want, want_headers.get("Allow")), path
            if "name[]" in path:  # the filter keeps exactly the names asked for (not nothing, as both once did)
                assert Samples(body.decode()).names() == {"locust_slow_requests_total", "locust_users"}, body[:300]
        count = tracker.count
        _get(ours.port, "/favicon.ico")
        assert tracker.count == count  # a browser's favicon request is no scrape
    finally:
        ours.stop()
        theirs.stop()


def test_web_ui_route_uses_the_fast_path_with_gzip() -> None:
    flask = pytest.importorskip("flask")
    exporter = make_exporter()
    fill(exporter, names=5)
    web_ui = types.SimpleNamespace(app=flask.Flask("test"))
    tracker = ScrapeTracker()
    assert add_web_ui_route(web_ui, exporter.registry, tracker, exporter.renderer)
    client = web_ui.app.test_client()
    response = client.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
    assert response.status_code == 200 and response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Content-Type"] == choose_encoder(PROMETHEUS_ACCEPT)[1]
    assert gzip.decompress(response.data) == generate_openmetrics(exporter.registry)
    plain = client.get("/metrics")
    assert plain.data == generate_latest(exporter.registry) and plain.headers["Content-Type"] == TEXT_0_0_4
    assert tracker.count == 2 and exporter.renderer.fast_scrapes == 2


# ---------------------------------------------------------------------------------------------- fallbacks
def test_unknown_per_endpoint_family_falls_back_to_prometheus_client(monkeypatch, caplog) -> None:
    exporter = make_exporter()
    fill(exporter, names=4)
    known = dict(encoders._ENDPOINT_FAMILIES)
    del known["locust_slow_requests"]
    monkeypatch.setattr(encoders, "_ENDPOINT_FAMILIES", known)
    renderer = exporter.renderer
    with pytest.raises(FastPathUnavailable):
        renderer.encoder.render(exporter.snapshot(), TEXT)
    with caplog.at_level(logging.WARNING, logger="locust_metrics.scraping"):
        headers, body = renderer.respond(None, None, pause=None)
        assert b"".join(body) == generate_latest(exporter.registry)  # before the next scrape counts a fallback
        renderer.respond(OPENMETRICS_CONTENT_TYPE, None, pause=None)
    assert renderer.library_scrapes == 2 and renderer.fast_scrapes == 0 and renderer.fallbacks == 2
    assert b'locust_metrics_fallbacks_total{path="render"} 1.0' in b"".join(body)
    assert sum("rendered by prometheus_client" in r.getMessage() for r in caplog.records) == 1  # logged once


def test_a_bug_in_the_fast_path_never_fails_a_scrape(monkeypatch, caplog) -> None:
    exporter = make_exporter()
    fill(exporter, names=4)
    renderer = exporter.renderer
    monkeypatch.setattr(renderer.encoder, "_render_endpoints", lambda *_args: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="locust_metrics.scraping"):
        headers, body = renderer.respond(PROMETHEUS_ACCEPT, None, pause=None)
    assert b"".join(body) == generate_openmetrics(exporter.registry)
    assert any("fast rendering failed" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError):
        renderer.encoder.render(exporter.snapshot(), "json")


def test_the_default_pause_lets_timers_and_io_run_between_slices(monkeypatch) -> None:
    """gevent.sleep(0) would resume the render before the loop polls (for up to 5 ms): a timer must fire."""
    import gevent

    exporter = make_exporter()
    fill(exporter, names=40, per_name=2)
    ticks = iter(range(10**9))
    monkeypatch.setattr(encoders.time, "perf_counter", lambda: next(ticks) * 0.01)  # pause after every endpoint
    fired: list[int] = []
    pauses: list[int] = []
    timer = gevent.spawn_later(0.0002, lambda: fired.append(len(pauses)))
    original = scraping.gevent_pause

    def counting_pause() -> None:
        pauses.append(1)
        original()

    exporter.renderer.respond(None, None, pause=counting_pause)
    timer.join(timeout=5)
    assert len(pauses) >= 40
    assert fired and fired[0] <= 3, (fired, len(pauses))  # the timer ran right after a slice, not at the end


def _records(snapshot: Snapshot) -> list[tuple]:
    return [(e.method, e.name, e.failures, e.folded()) for e in snapshot.endpoints]


def _fresh(exporter: MetricsExporter, natives: bool = False) -> Snapshot:
    """A snapshot that reuses nothing (every entry's kept records dropped first)."""
    for endpoint in exporter.totals.endpoints.values():
        endpoint.snapshot = endpoint.native_snapshot = None
    return exporter.snapshot(natives)


def _native_records(snapshot: Snapshot) -> list[tuple]:
    """:func:`_records` with each entry's native histogram as the snapshot shows it (all added)."""
    return [(*record, e.native.total()) for record, e in zip(_records(snapshot), snapshot.endpoints)]


def test_a_snapshot_reuses_the_records_of_unchanged_entries_only() -> None:
    """After each kind of change (requests on the fast path, folded or not; a new status on the careful path; a
    failure; a worker's report merged on the master), the snapshot equals one that copies every entry, and the
    entries that did not change keep the very record of the snapshot before."""
    exporter = make_exporter()
    fill(exporter, names=4)
    exporter.renderer.fold()
    first = exporter.snapshot()
    assert _records(first) == _records(_fresh(exporter))
    record = exporter.recorder.on_request
    changes = [
        lambda: record("GET", "/api/items/1", 12.0, 5, response=Response(200), exception=None),  # hot record
        lambda: exporter.renderer.fold(),  # ... folded into the totals
        lambda: record("GET", "/api/items/2", 3.0, 5, response=Response(418), exception=None),  # careful path
        lambda: record("GET", "/api/items/2", 3.0, 5, response=Response(200), exception=ValueError("x")),  # failure
        lambda: exporter.totals.endpoints[("GET", "/api/items/1")].add_failure("HTTP 500", 2),  # a merged failure
        lambda: exporter.totals.endpoints[("POST", "/api/items/3")].add_totals(
            [1] * len(exporter.totals.bounds_ms) + [0], 7.0, 0, 3, [(200, len(exporter.totals.bounds_ms))]),  # merge
    ]
    for change in changes:
        exporter.snapshot()
        before = {(e.method, e.name): e for e in exporter.snapshot().endpoints}
        change()
        snapshot = exporter.snapshot()
        unchanged = [e for e in snapshot.endpoints if e.name == "/api/items/0"]
        assert unchanged and all(e is before[(e.method, e.name)] for e in unchanged), "an unchanged entry is not copied"
        assert _records(snapshot) == _records(_fresh(exporter))
    assert _records(exporter.snapshot()) != _records(first)


def test_a_protobuf_snapshot_reuses_the_records_of_unchanged_entries_only() -> None:
    """The same with native histograms (a protobuf scrape's snapshot, which holds each entry's native histogram):
    after each kind of change, also those that change the native histogram alone (a worker's native delta merged
    on the master, then added by a scrape's fold; an observation added to it, one that reduces its schema), the
    snapshot equals one that copies every entry, and unchanged entries keep their record. Text snapshots taken
    in between keep records of their own (without the native histogram), and a change of the native histogram
    alone does not drop those."""
    exporter = make_exporter(native_histograms=True, native_max_buckets=30)
    fill(exporter, names=4)
    exporter.renderer.fold()
    first = exporter.snapshot(natives=True)
    assert all(e.native is not None for e in first.endpoints)
    assert _native_records(first) == _native_records(_fresh(exporter, natives=True))
    record = exporter.recorder.on_request
    entries = exporter.totals.endpoints
    schema = entries[("GET", "/api/items/1")].native.schema

    def reduce_schema() -> None:  # more populated buckets than --metrics-native-max-buckets: a coarser schema
        for k in range(40):
            entries[("GET", "/api/items/1")].add_native(1.0 * 1.05 ** k)
        assert entries[("GET", "/api/items/1")].native.schema < schema

    bounds = len(exporter.totals.bounds_ms)
    native_only = [  # changes of the native histogram alone: a text snapshot's record stays
        lambda: entries[("GET", "/api/items/1")].add_native_wire((6, 1, [10, 2, 400, 1])),  # a merged native delta
        lambda: exporter.renderer.fold(),  # ... added by a scrape's fold
        lambda: entries[("GET", "/api/items/2")].add_native(33.0),  # an observation
        reduce_schema,
    ]
    changes = [
        lambda: record("GET", "/api/items/1", 12.0, 5, response=Response(200), exception=None),  # hot record
        lambda: exporter.renderer.fold(),  # ... folded into the totals
        lambda: (record("GET", "/api/items/1", None, 5, response=Response(200), exception=None),  # no time: no native
                 exporter.renderer.fold()),  # ... folded before any snapshot: a change of the totals alone
        lambda: record("GET", "/api/items/2", 3.0, 5, response=Response(418), exception=None),  # careful path
        lambda: record("GET", "/api/items/2", None, 5, response=Response(419), exception=None),  # ... without a time
        lambda: record("GET", "/api/items/2", 3.0, 5, response=Response(200), exception=ValueError("x")),  # failure
        lambda: entries[("GET", "/api/items/1")].add_failure("HTTP 500", 2),  # a merged failure
        lambda: entries[("POST", "/api/items/3")].add_totals([1] * bounds + [0], 7.0, 0, 3, [(200, bounds)]),  # merge
        *native_only,
    ]
    for change in changes:
        exporter.snapshot(natives=True)
        before = {(e.method, e.name): e for e in exporter.snapshot(natives=True).endpoints}
        text_before = {(e.method, e.name): e for e in exporter.snapshot().endpoints}
        change()
        text = exporter.snapshot()
        snapshot = exporter.snapshot(natives=True)
        unchanged = [e for e in snapshot.endpoints if e.name == "/api/items/0"]
        assert unchanged and all(e is before[(e.method, e.name)] for e in unchanged), "an unchanged entry is not copied"
        assert all(e.native is None for e in text.endpoints)  # a text snapshot neither reads nor shares them
        assert _native_records(snapshot) == _native_records(_fresh(exporter, natives=True))
        if change in native_only:
            kept = [e for e in text.endpoints if not text_before[(e.method, e.name)].hot]  # (records with hot ones are not)
            assert kept and all(e is text_before[(e.method, e.name)] for e in kept), "a text record dropped"
    assert _native_records(exporter.snapshot(natives=True)) != _native_records(first)
