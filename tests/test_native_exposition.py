"""Protobuf scrapes with native histograms (no processes): negotiation as client_golang does it, the protobuf
body equal to the text body series by series, the native buckets read back by a wire reader independent of the
protobuf library, slices, and the fallback encoder."""

from __future__ import annotations

import math
import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families
from support import REPO, Response, child_env
from test_native_histograms import PROMETHEUS_2_42_ACCEPT, PROMETHEUS_2_42_NATIVE_ACCEPT, WireReader, unzigzag
from test_rendering import make_exporter

from locust_metrics import protobuf as pb
from locust_metrics import protobuf_scrape
from locust_metrics.exporter import MetricsExporter

TIMES_MS = [0.0, -3.0, 0.0004, 0.05, 0.5, 2.0, 7.5, 33.3, 99.0, 250.0, 1000.0, 1500.5, 60_000.0, 70_000.0, 2e12,
            math.nan, math.inf, None]


def exporter_with_traffic(**options: object) -> MetricsExporter:
    """test_rendering's exporter (fixed resources and test lifecycle), with constant labels and traffic."""
    exporter = make_exporter(labels={"env": "t\"e\\st"}, **options)
    record = exporter.recorder.record
    for i in range(12):
        for j, ms in enumerate(TIMES_MS):
            status, error = [(200, None), (404, "HTTP 404"), (200, "check failed")][(i + j) % 3]
            record("GET" if i % 2 else "POST", f"/api/{i % 5}", ms, 100 + j, Response(status), error)
    return exporter


def text_samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if not s.name.endswith("_created"):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def protobuf_samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The series a text scrape would show, from a protobuf body (decoded by the protobuf library)."""
    out = {}
    for message in WireReader.delimited(body):
        family = pb.MetricFamily.FromString(message)
        for metric in family.metric:
            labels = tuple(sorted((p.name, p.value) for p in metric.label))
            if family.type == pb.HISTOGRAM:
                h = metric.histogram
                for b in h.bucket:
                    le = repr(b.upper_bound) if b.upper_bound != int(b.upper_bound) else f"{b.upper_bound:.1f}"
                    out[(family.name + "_bucket", tuple(sorted((*labels, ("le", le)))))] = b.cumulative_count
                out[(family.name + "_bucket", tuple(sorted((*labels, ("le", "+Inf")))))] = h.sample_count
                out[(family.name + "_count", labels)] = h.sample_count
                out[(family.name + "_sum", labels)] = h.sample_sum
            elif family.type == pb.COUNTER:
                out[(family.name, labels)] = metric.counter.value
            else:
                out[(family.name, labels)] = metric.gauge.value
    return out


def native_buckets(histogram: dict[int, list]) -> tuple[int, dict[int, int], int]:
    """(schema, {index: count}, zero count) of a ``Histogram`` message read by the independent wire reader."""
    decoded: dict[int, int] = {}
    index = running = position = 0
    deltas = [unzigzag(x) for x in histogram.get(13, [])]
    for span in (WireReader.fields(s) for s in histogram.get(12, [])):
        index += unzigzag(span.get(1, [0])[0])
        for _ in range(span.get(2, [0])[0]):
            running += deltas[position]
            position += 1
            if running:
                decoded[index] = running
            index += 1
    assert position == len(deltas)
    return unzigzag(histogram[5][0]), decoded, histogram.get(7, [0])[0]


def test_prometheus_with_native_histograms_gets_protobuf_with_classic_and_native_buckets() -> None:
    exporter = exporter_with_traffic(native_histograms=True)
    headers, body = exporter.renderer.respond(PROMETHEUS_2_42_NATIVE_ACCEPT, None, pause=None)
    body = b"".join(body)
    assert dict(headers)["Content-Type"] == pb.CONTENT_TYPE
    _, text = exporter.renderer.respond(None, None, pause=None)
    # the same series and values as the text scrape (classic buckets, counters, gauges, the small families)
    assert protobuf_samples(body) == text_samples(b"".join(text))

    histograms = 0
    for message in WireReader.delimited(body):
        family = WireReader.fields(message)
        if family[1] != [b"locust_request_duration_seconds"]:
            continue
        for metric in map(WireReader.fields, family[4]):
            labels = {WireReader.fields(p)[1][0].decode(): WireReader.fields(p)[2][0].decode() for p in metric[1]}
            endpoint = exporter.recorder.endpoints[(labels["method"], labels["name"])]
            histogram = WireReader.fields(metric[7][0])
            schema, buckets, zero_count = native_buckets(histogram)
            assert (schema, buckets, zero_count) == (endpoint.native.schema, endpoint.native.buckets,
                                                    endpoint.native.zero_count)
            assert zero_count + sum(buckets.values()) == histogram[1][0] == endpoint.count
            histograms += 1
    assert histograms == len(exporter.recorder.endpoints) == 10


def test_hostile_times_are_in_the_native_buckets_as_in_the_classic_ones() -> None:
    exporter = exporter_with_traffic(native_histograms=True)
    for endpoint in exporter.recorder.endpoints.values():
        endpoint.fold()
        native = endpoint.native
        # per round of TIMES_MS that reached the endpoint: 0, -3 (as 0) and 0.0004 ms (4e-7 s > 2^-128 s: not)
        rounds = endpoint.requests // len(TIMES_MS)
        assert native.zero_count == 2 * rounds
        assert native.count == endpoint.count == (len(TIMES_MS) - 3) * rounds  # NaN, inf, None: not observed


def test_text_scrapers_get_what_they_got_before() -> None:
    on, off = exporter_with_traffic(native_histograms=True), exporter_with_traffic()
    for accept in (None, "*/*", "text/plain;version=0.0.4", PROMETHEUS_2_42_ACCEPT):
        headers_on, body_on = on.renderer.respond(accept, None, pause=None)
        headers_off, body_off = off.renderer.respond(accept, None, pause=None)
        assert dict(headers_on)["Content-Type"] == dict(headers_off)["Content-Type"]
        assert not dict(headers_on)["Content-Type"].startswith(pb.PROTO_TYPE)
        assert b"".join(body_on) == b"".join(body_off)
    # native histograms off: a Prometheus that asks for protobuf first gets OpenMetrics, as before
    headers, _ = off.renderer.respond(PROMETHEUS_2_42_NATIVE_ACCEPT, None, pause=None)
    assert dict(headers)["Content-Type"].startswith("application/openmetrics-text")


def test_protobuf_scrape_in_slices_is_the_same_and_gzip_works() -> None:
    import gzip

    exporter = exporter_with_traffic(native_histograms=True)
    pauses = []
    _, whole = exporter.renderer.respond(PROMETHEUS_2_42_NATIVE_ACCEPT, None, pause=None)
    exporter.renderer.pacer.budget_s = 0.0  # every check is past the deadline: a pause after every endpoint
    _, sliced = exporter.renderer.respond(PROMETHEUS_2_42_NATIVE_ACCEPT, None, pause=lambda: pauses.append(1))
    assert b"".join(sliced) == b"".join(whole) and len(pauses) >= 10
    headers, zipped = exporter.renderer.respond(PROMETHEUS_2_42_NATIVE_ACCEPT, "gzip", pause=None)
    assert dict(headers)["Content-Encoding"] == "gzip" and gzip.decompress(b"".join(zipped)) == b"".join(whole)


def test_the_fallback_encoder_serves_the_registry_classic_only() -> None:
    """prometheus_client's path (``name[]`` filters, or when the fast path fails): the registry's families in
    protobuf, the same series as its text exposition, no native buckets."""
    from prometheus_client import generate_latest

    exporter = exporter_with_traffic(native_histograms=True)
    body = protobuf_scrape.encode_registry(exporter.registry)
    assert protobuf_samples(body) == text_samples(generate_latest(exporter.registry))
    families = [pb.MetricFamily.FromString(m) for m in WireReader.delimited(body)]
    histogram = next(f for f in families if f.type == pb.HISTOGRAM).metric[0].histogram
    assert not histogram.positive_span and len(histogram.bucket) > 5
    response = exporter.renderer.serve(PROMETHEUS_2_42_NATIVE_ACCEPT, None, pause=None, names=["locust_users"])
    assert dict(response.headers)["Content-Type"] == pb.CONTENT_TYPE
    filtered = [pb.MetricFamily.FromString(m) for m in WireReader.delimited(b"".join(response.body))]
    assert [f.name for f in filtered] == ["locust_users"] and filtered[0].metric


def test_encode_families_sends_counters_under_their_total_name() -> None:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    counter = CounterMetricFamily("x_things", "Things.", labels=["b", "a"], created=12.0)
    counter.add_metric(["2", "1"], 5.0, created=12.0)
    gauge = GaugeMetricFamily("x_level", "Level.", value=0.5)
    families = [pb.MetricFamily.FromString(m)
                for m in WireReader.delimited(protobuf_scrape.encode_families([counter, gauge]))]
    assert [(f.name, f.type) for f in families] == [("x_things_total", pb.COUNTER), ("x_level", pb.GAUGE)]
    assert [(p.name, p.value) for p in families[0].metric[0].label] == [("a", "1"), ("b", "2")]
    assert families[0].metric[0].counter.value == 5.0 and families[1].metric[0].gauge.value == 0.5


def test_framed_families_are_the_library_framing() -> None:
    from locust_metrics.protobuf_scrape import _frame, _framed_family

    metrics = [pb.counter_metric((("a", "x" * n),), float(n)) for n in (0, 1, 200, 20_000)]
    pieces = _framed_family("f_total", "F.", pb.COUNTER, [b"".join(_frame(m) for m in metrics[:2]),
                                                          b"".join(_frame(m) for m in metrics[2:])])
    assert all(type(piece) is bytes for piece in pieces)
    assert b"".join(pieces) == pb.family("f_total", "F.", pb.COUNTER, metrics)


def test_only_a_protobuf_scrape_snapshot_holds_the_native_histograms() -> None:
    """The snapshot model: text and OpenMetrics snapshots leave ``EndpointSnapshot.native`` None and do not share
    the entries' native histograms (no copy on write afterwards); a protobuf one holds each entry's, as it was."""
    from locust_metrics.snapshot import take_snapshot

    exporter = exporter_with_traffic(native_histograms=True)
    text = take_snapshot(exporter)
    assert not text.natives and all(e.native is None for e in text.endpoints)
    assert not any(e.native_shared for e in exporter.totals.endpoints.values())
    full = exporter.snapshot(natives=True)
    assert full.natives and len(full.endpoints) == len(exporter.totals.endpoints) == 10
    for endpoint in full.endpoints:
        entry = exporter.totals.endpoints[(endpoint.method, endpoint.name)]
        assert endpoint.native is not None
        entry.fold()
        total = endpoint.native.total()
        assert (total.schema, total.buckets, total.zero_count) == (entry.native.schema, entry.native.buckets,
                                                                   entry.native.zero_count)
    off = exporter_with_traffic()
    assert all(e.native is None for e in off.snapshot(natives=True).endpoints)  # native histograms off: None


def test_a_protobuf_render_does_not_reuse_a_text_snapshot() -> None:
    """Renders that start together share a snapshot, except that a protobuf render needs one with the native
    histograms: a fresh text snapshot lying there is not used (the scrape would lose its native buckets)."""
    import time

    exporter = exporter_with_traffic(native_histograms=True)
    renderer = exporter.renderer
    renderer._snapshot = (time.time() + 60, exporter.snapshot())  # a text render's, taken "after" this scrape
    response = renderer.serve(PROMETHEUS_2_42_NATIVE_ACCEPT, None, pause=None)
    natives = 0
    for message in WireReader.delimited(b"".join(response.body)):
        family = WireReader.fields(message)
        if family[1] == [b"locust_request_duration_seconds"]:
            natives += sum(1 for metric in map(WireReader.fields, family[4])
                           if WireReader.fields(metric[7][0]).get(12))  # field 12: the native positive spans
    assert natives == 10


def test_with_native_histograms_off_the_protobuf_library_is_never_imported() -> None:
    """google.protobuf costs some MB of memory in every Locust process: only native histograms import it, even
    when a Prometheus asks for protobuf."""
    program = (
        "import sys, locust_metrics\n"
        "from locust.env import Environment\n"
        "exporter = locust_metrics.install(Environment(), port=0)\n"
        f"exporter.renderer.respond({PROMETHEUS_2_42_NATIVE_ACCEPT!r}, None, None)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('google.protobuf', 'locust_metrics.protobuf'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                            env=child_env(), cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", result.stdout
