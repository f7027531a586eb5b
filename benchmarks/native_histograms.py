"""Costs of the native-histogram core (``locust_metrics/native.py``, ``locust_metrics/protobuf.py``), side by side.

Run from the repository root (about a minute)::

    python benchmarks/native_histograms.py

Prints, as medians (and minima) of interleaved repeats on this machine:

* nanoseconds per response time of the bucket index: the classic table lookup of the hot path
  (``table[ceil(ms)]``), the native lookup of :class:`~locust_metrics.native.NativeIndexer` inlined as its
  docstring shows, the same plus the hot dict's ``d[k] += 1``, and the exact :func:`native_index`;
  response times drawn as ``benchmarks/bench.py`` draws them (lognormal, median 33 ms) and as on a
  local network (median 1 ms);
* milliseconds to encode a protobuf scrape of 500 endpoints (each a histogram with 21 classic buckets and
  about 40 populated native ones, three counters and a gauge) with the ``protobuf`` library, against
  ``prometheus_client.generate_latest`` of the same families in the text format (classic buckets only).

Absolute times move with the VM's load (other work shares its two cores); the ratios within one run are
what to read. ``python benchmarks/instructions.py`` style instruction counts are in docs/native-histograms.md.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from math import ceil
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily  # noqa: E402

from locust_metrics import protobuf as pb  # noqa: E402
from locust_metrics.native import FINER, NativeHistogram, NativeIndexer, native_index  # noqa: E402

BOUNDS_S = (.005, .01, .025, .05, .075, .1, .15, .2, .3, .5, .75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 30, 60)


def _index_variants(schema: int):
    ix = NativeIndexer(schema)
    classic = list(range(70_000))
    fine_limit_ms, coarse_index, coarse_above = ix.fine_limit_ms, ix.coarse_index, ix.coarse_above
    fine_scale, fine_index, fine_above = ix.fine_scale, ix.fine_index, ix.fine_above

    def empty(values, d):
        for _rt in values:
            pass

    def classic_only(values, d):
        for rt in values:
            c = ceil(rt)
            i = classic[c]  # noqa: F841

    def classic_native(values, d):
        for rt in values:
            c = ceil(rt)
            i = classic[c]  # noqa: F841
            if rt > fine_limit_ms:
                k = coarse_index[c]
                if rt > coarse_above[c]:
                    k += 1
            else:
                c = ceil(rt * fine_scale)
                k = fine_index[c]
                if rt > fine_above[c]:
                    k += 1
                elif k is FINER:
                    k = native_index(rt, schema)

    def classic_native_dict(values, d):
        for rt in values:
            c = ceil(rt)
            i = classic[c]  # noqa: F841
            if rt > fine_limit_ms:
                k = coarse_index[c]
                if rt > coarse_above[c]:
                    k += 1
            else:
                c = ceil(rt * fine_scale)
                k = fine_index[c]
                if rt > fine_above[c]:
                    k += 1
                elif k is FINER:
                    k = native_index(rt, schema)
            d[k] += 1

    def exact(values, d):
        for rt in values:
            native_index(rt, schema)

    return ix, {"empty": empty, "classic lookup": classic_only, "classic + native lookup": classic_native,
                "classic + native + dict +=": classic_native_dict, "exact native_index": exact}


def index_costs(schema: int, repeats: int = 15) -> None:
    rng = random.Random(1)
    for label, values in (
        ("bench.py's (median 33 ms)", [rng.lognormvariate(3.5, 0.8) % 1500 for _ in range(4000)]),
        ("local (median 1 ms)", [rng.lognormvariate(0, 0.5) for _ in range(4000)]),
    ):
        ix, variants = _index_variants(schema)
        d = dict.fromkeys({ix.index(v) for v in values}, 0)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(repeats):
            for name, run in variants.items():
                start = time.perf_counter()
                run(values, d)
                times[name].append((time.perf_counter() - start) / len(values))
        base = statistics.median(times["empty"])
        print(f"bucket index, schema {schema}, response times {label}: ns per value added to an empty loop")
        for name, ts in times.items():
            if name != "empty":
                print(f"  {name:32s} median {1e9 * (statistics.median(ts) - base):7.1f}  min {1e9 * (min(ts) - min(times['empty'])):7.1f}")


def _endpoint_data(n: int, schema: int):
    rng = random.Random(2)
    data = []
    for i in range(n):
        hist = NativeHistogram(schema, 0)
        classic = [0] * (len(BOUNDS_S) + 1)
        total = 0.0
        for _ in range(200):
            ms = rng.lognormvariate(3.5, 0.35)
            hist.observe(ms)
            classic[sum(1 for b in BOUNDS_S if ms > b * 1000)] += 1
            total += ms / 1000
        cumulative = []
        running = 0
        for c in classic:
            running += c
            cumulative.append(running)
        data.append((("method", "GET"), ("name", f"/api/item/{i}"), hist, cumulative, total))
    return data


def encode_protobuf(data) -> bytes:
    histograms, requests, slow, size, threshold = [], [], [], [], []
    for method, name, hist, cumulative, total in data:
        labels = (method, name)
        histograms.append(pb.histogram_metric(labels, cumulative[-1], total, BOUNDS_S, cumulative[:-1], hist))
        requests.append(pb.counter_metric((method, name, ("status_code", "200")), cumulative[-1]))
        slow.append(pb.counter_metric(labels, 3))
        size.append(pb.counter_metric(labels, 1024.0 * cumulative[-1]))
        threshold.append(pb.gauge_metric(labels, 1.0))
    return b"".join([
        pb.family("locust_request_duration_seconds", "Response time", pb.HISTOGRAM, histograms),
        pb.family("locust_requests_total", "Completed requests", pb.COUNTER, requests),
        pb.family("locust_slow_requests_total", "Slow requests", pb.COUNTER, slow),
        pb.family("locust_response_size_bytes_total", "Response bytes", pb.COUNTER, size),
        pb.family("locust_slow_request_threshold_seconds", "Slow threshold", pb.GAUGE, threshold),
    ])


class _Collector:
    def __init__(self, data) -> None:
        self.data = data

    def collect(self):
        h = HistogramMetricFamily("locust_request_duration_seconds", "Response time", labels=["method", "name"])
        r = CounterMetricFamily("locust_requests", "Completed requests", labels=["method", "name", "status_code"])
        s = CounterMetricFamily("locust_slow_requests", "Slow requests", labels=["method", "name"])
        z = CounterMetricFamily("locust_response_size_bytes", "Response bytes", labels=["method", "name"])
        t = GaugeMetricFamily("locust_slow_request_threshold_seconds", "Slow threshold", labels=["method", "name"])
        for method, name, _hist, cumulative, total in self.data:
            values = [method[1], name[1]]
            buckets = [(str(b), c) for b, c in zip(BOUNDS_S, cumulative)] + [("+Inf", cumulative[-1])]
            h.add_metric(values, buckets, total)
            r.add_metric([*values, "200"], cumulative[-1])
            s.add_metric(values, 3)
            z.add_metric(values, 1024.0 * cumulative[-1])
            t.add_metric(values, 1.0)
        return [h, r, s, z, t]


def encode_costs(endpoints: int = 500, schema: int = 6, repeats: int = 9) -> None:
    data = _endpoint_data(endpoints, schema)
    registry = CollectorRegistry()
    registry.register(_Collector(data))
    populated = statistics.mean(len(d[2].buckets) for d in data)
    proto_times, text_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        body = encode_protobuf(data)
        proto_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        text = generate_latest(registry)
        text_times.append(time.perf_counter() - start)
    p, t = statistics.median(proto_times), statistics.median(text_times)
    print(f"scrape encoding, {endpoints} endpoints, schema {schema}, {populated:.0f} native buckets each on average:")
    print(f"  protobuf (library, classic + native): {1e3 * p:6.1f} ms (min {1e3 * min(proto_times):.1f}), {len(body):,} bytes")
    print(f"  generate_latest text (classic only):  {1e3 * t:6.1f} ms (min {1e3 * min(text_times):.1f}), {len(text):,} bytes")
    print(f"  ratio protobuf / text: {p / t:.0%}")


if __name__ == "__main__":
    print(f"protobuf {pb.__name__}: {__import__('google.protobuf').protobuf.__version__}, "
          f"implementation {__import__('google.protobuf.internal.api_implementation', fromlist=['Type']).Type()}")
    index_costs(6)
    encode_costs()
