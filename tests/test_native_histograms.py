"""Native histograms: the bucket math against slow references, the accumulator's exactness, the protobuf
wire format read back by independent decoders, content negotiation, and a real Prometheus 2.42
(``--enable-feature=native-histograms``) ingesting what we serve.

The pure parts run in milliseconds; the Prometheus part starts two Prometheus servers (with and without
the feature flag) scraping a small HTTP server on 127.0.0.1 every second, for about 10 s in all.
"""

from __future__ import annotations

import itertools
import math
import struct
import threading
from decimal import Decimal, getcontext
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from support import Response

from locust_metrics import native
from locust_metrics import protobuf as pb
from locust_metrics.bucketing import BatchBucketer
from locust_metrics.native import (
    FRACTIONS,
    SCHEMA_MAX,
    SCHEMA_MIN,
    ZERO_THRESHOLD,
    NativeHistogram,
    index_of,
    native_index,
    pick_schema,
    reduce_index,
    upper_bound,
)
from locust_metrics.recorder import MAX_RESPONSE_TIME_MS, RequestRecorder

SCHEMAS = list(range(SCHEMA_MIN, SCHEMA_MAX + 1))

PROMETHEUS_2_42_NATIVE_ACCEPT = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,"
    "application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
"""The ``Accept`` header of Prometheus 2.42 with ``--enable-feature=native-histograms`` (captured below)."""

PROMETHEUS_2_42_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
"""... and without the flag (captured below)."""

_PB = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
PROMETHEUS_3_ACCEPTS = {
    # 3.0-3.x, scrape_protocols' proto-first default (the flag on 3.0-3.8, scrape_native_histograms: true on 3.8+),
    # names escaping as a parameter of every format (3.0's UTF-8 names)
    "3.0, native histograms": (
        f"{_PB};escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
        "application/openmetrics-text;version=0.0.1;escaping=allow-utf-8;q=0.4,"
        "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;escaping=allow-utf-8;q=0.2,"
        "*/*;q=0.1", pb.PROTOBUF),
    # later 3.x: the escaping parameter on the 1.0.0 text formats only
    "3.x, native histograms": (
        f"{_PB};q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
        "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
        "text/plain;version=0.0.4;q=0.2,*/*;q=0.1", pb.PROTOBUF),
    "3.x, classic only": (
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
        "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
        "text/plain;version=0.0.4;q=0.3,*/*;q=0.2", pb.OPENMETRICS),
}
"""``Accept`` headers of Prometheus 3.x (not run here: Debian has 2.42), as its ``acceptHeader`` builds them from
``scrape_protocols`` (weights from 0.6 down; ``escaping=`` for UTF-8 metric names), and what each must get."""


# ----------------------------------------------------------------------------------------------- references
def reference_index(seconds: float, schema: int) -> int | None:
    """The smallest bucket whose upper bound (as Prometheus computes it, :func:`upper_bound`) is >= the value.

    Independent of :func:`index_of`'s frexp-and-search: a logarithm's estimate, then steps to the exact answer
    by comparing with the bounds themselves.
    """
    if seconds <= ZERO_THRESHOLD:
        return None
    k = math.floor(math.log2(seconds) * 2.0**schema)
    while upper_bound(k, schema) < seconds:
        k += 1
    while upper_bound(k - 1, schema) >= seconds:
        k -= 1
    return k


def golang_reduce(index: int) -> int:
    """client_golang's doubleBucketWidth for one key: ``if key > 0 { key++ }; key /= 2`` (Go truncates)."""
    if index > 0:
        index += 1
    return -(-index // 2) if index < 0 else index // 2  # Go's division truncates toward zero


def golang_make_buckets(buckets: dict[int, int]) -> tuple[list[tuple[int, int]], list[int]]:
    """client_golang's makeBuckets, transcribed as plainly as possible (the reference for spans and deltas)."""
    spans: list[list[int]] = []
    deltas: list[int] = []
    previous, next_index = 0, 0
    for n, index in enumerate(sorted(buckets)):
        count = buckets[index]
        gap = index - next_index
        if n == 0 or gap > 2:
            spans.append([gap, 0])
        else:
            for _ in range(gap):
                spans[-1][1] += 1
                deltas.append(0 - previous)
                previous = 0
        spans[-1][1] += 1
        deltas.append(count - previous)
        previous = count
        next_index = index + 1
    return [(offset, length) for offset, length in spans], deltas


positive_seconds = st.floats(min_value=5e-324, max_value=1e300, allow_nan=False, allow_infinity=False)
response_ms = st.one_of(
    st.floats(min_value=0.0, max_value=65_536.0, allow_nan=False),
    st.floats(min_value=0.0, max_value=2.0, allow_nan=False),
    st.floats(min_value=60.0, max_value=400.0, allow_nan=False),
    st.integers(min_value=0, max_value=65_536).map(float),
)


# ----------------------------------------------------------------------------------------------- bounds table
def test_the_bounds_table_is_nested_and_within_four_ulps_of_the_exact_powers() -> None:
    """Prometheus's bounds are not all the doubles nearest to the powers (hence a table read from it)."""
    getcontext().prec = 50
    assert FRACTIONS[0] == (0.5,)
    for schema in range(1, SCHEMA_MAX + 1):
        table = FRACTIONS[schema]
        assert len(table) == 2**schema
        assert list(table) == sorted(table) and all(0.5 <= f < 1 for f in table)
        assert table[::2] == FRACTIONS[schema - 1]  # a coarser schema's bounds are every other bound
        for j, fraction in enumerate(table):
            exact = Decimal(2) ** (Decimal(j) / Decimal(2**schema)) / 2
            assert abs(Decimal(fraction) - exact) <= 4 * Decimal(math.ulp(fraction)), (schema, j)


# ----------------------------------------------------------------------------------------------- bucket index
@pytest.mark.parametrize("schema", SCHEMAS)
def test_every_bound_is_in_its_own_bucket_and_its_neighbours_in_the_next(schema: int) -> None:
    for k in range(-3 * 2**max(schema, 0), 3 * 2**max(schema, 0) + 1):
        bound = upper_bound(k, schema)
        assert index_of(bound, schema) == k  # upper bounds are inclusive
        assert index_of(math.nextafter(bound, math.inf), schema) == k + 1
        assert index_of(math.nextafter(bound, 0.0), schema) == k
        assert reference_index(bound, schema) == k


@pytest.mark.parametrize("schema", SCHEMAS)
def test_exact_powers_of_two_land_in_the_lower_bucket(schema: int) -> None:
    for exponent in range(-20, 31):
        value = 2.0**exponent
        expected = exponent * 2**schema if schema >= 0 else -((-exponent) >> -schema)
        assert index_of(value, schema) == expected, (schema, exponent)


@settings(max_examples=500, deadline=None)
@given(seconds=positive_seconds, schema=st.sampled_from(SCHEMAS))
@example(seconds=ZERO_THRESHOLD, schema=0)
@example(seconds=math.nextafter(ZERO_THRESHOLD, 1.0), schema=8)
@example(seconds=1.0, schema=8)
def test_index_of_matches_the_bounds_reference(seconds: float, schema: int) -> None:
    assert index_of(seconds, schema) == reference_index(seconds, schema)


@settings(max_examples=300, deadline=None)
@given(seconds=positive_seconds, schema=st.sampled_from(SCHEMAS))
def test_index_of_is_the_exact_real_number_bucket_unless_within_an_ulp_of_a_bound(seconds: float, schema: int) -> None:
    """Away from the (rounded) bounds, the bucket is the mathematical one: base**(k-1) < v <= base**k."""
    assume(seconds > ZERO_THRESHOLD)
    k = index_of(seconds, schema)
    x = Fraction(seconds)
    # base**(k-1) < x <= base**k  <=>  2**((k-1) * 2**-schema) < x <= 2**(k * 2**-schema); compare logs with
    # a margin of a few ulps where the float bound and the real one may disagree
    lower, upper = upper_bound(k - 1, schema), upper_bound(k, schema)
    if math.nextafter(lower, math.inf) < seconds < math.nextafter(upper, 0.0) or schema <= 0:
        assert Fraction(lower) < x <= Fraction(upper)
        log = math.log2(seconds) * 2.0**schema
        assert k - 1 - 1e-6 <= log <= k + 1e-6


def test_native_index_takes_milliseconds_and_hostile_values_as_the_classic_histogram_does() -> None:
    assert native_index(1000.0, 6) == index_of(1.0, 6) == 0
    assert native_index(2000.0, 6) == 64
    assert native_index(0.0, 6) is None
    assert native_index(-0.0, 6) is None
    assert native_index(-5.0, 6) is None  # the recorder counts a negative time as 0: the zero bucket
    assert native_index(1e-40, 6) is None  # 1e-43 s is below the zero threshold
    assert native_index(1e-30, 6) is not None
    assert native_index(MAX_RESPONSE_TIME_MS, 6) == index_of(MAX_RESPONSE_TIME_MS / 1000.0, 6)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError):
            native_index(bad, 6)
    histogram = NativeHistogram(6)
    assert not histogram.observe(math.nan) and not histogram.observe(math.inf) and not histogram.observe(-math.inf)
    assert histogram.observe(-3.0) and histogram.observe(0.0)
    assert histogram.zero_count == 2 and histogram.buckets == {} and histogram.count == 2


@settings(max_examples=150, deadline=None)
@given(ms=st.floats(min_value=0.0, max_value=1e12, allow_nan=False), schema=st.sampled_from(SCHEMAS))
def test_native_index_is_index_of_the_value_in_seconds(ms: float, schema: int) -> None:
    assert native_index(ms, schema) == index_of(ms / 1000.0, schema)


# ----------------------------------------------------------------------------------------------- batches
_BUCKETERS: dict[int, BatchBucketer] = {}


def bucketer(schema: int) -> BatchBucketer:
    if schema not in _BUCKETERS:
        _BUCKETERS[schema] = BatchBucketer((1.0, 2.5, 100.0, 1000.0), schema)
    return _BUCKETERS[schema]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_threshold_ms_is_where_a_bucket_ends_in_milliseconds(schema: int) -> None:
    for k in range(native_index(0.001, schema), native_index(2.0**20, schema) + 1, 5):
        t = native.threshold_ms(k, schema)
        assert native_index(t, schema) == k and native_index(math.nextafter(t, math.inf), schema) == k + 1


@settings(max_examples=300, deadline=None)
@given(times=st.lists(response_ms.filter(lambda ms: 0.0 <= ms <= MAX_RESPONSE_TIME_MS), max_size=60),
       schema=st.sampled_from(SCHEMAS))
def test_a_batch_lands_where_native_index_puts_each_time(times: list[float], schema: int) -> None:
    histogram = NativeHistogram(schema, 0)
    bucketer(schema).count([t + 0.0 for t in times], histogram)
    reference = NativeHistogram(schema, 0)
    for t in times:
        reference.observe(t)
    assert histogram == reference


# ----------------------------------------------------------------------------------------------- accumulator
@settings(max_examples=200, deadline=None)
@given(index=st.integers(min_value=-10**6, max_value=10**6), by=st.integers(min_value=0, max_value=12))
def test_reduce_index_is_client_golangs_halving_repeated(index: int, by: int) -> None:
    expected = index
    for _ in range(by):
        expected = golang_reduce(expected)
    assert reduce_index(index, by) == expected


@settings(max_examples=300, deadline=None)
@given(seconds=positive_seconds, schema=st.sampled_from(SCHEMAS[1:]))
def test_a_reduced_index_is_the_index_at_the_coarser_schema(seconds: float, schema: int) -> None:
    assume(seconds > ZERO_THRESHOLD)
    assert reduce_index(index_of(seconds, schema), 1) == index_of(seconds, schema - 1)
    assert reduce_index(index_of(seconds, SCHEMA_MAX), SCHEMA_MAX - schema) == index_of(seconds, schema)


observations = st.lists(
    st.one_of(st.floats(min_value=-10.0, max_value=1e7), st.floats(min_value=0.5, max_value=5.0),
              st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-300, 1e12])),
    max_size=300,
)


@settings(max_examples=60, deadline=None)
@given(values=observations, schema=st.sampled_from(SCHEMAS), max_buckets=st.integers(min_value=0, max_value=40))
def test_limiting_the_buckets_keeps_totals_and_equals_recording_at_the_final_schema(
    values: list[float], schema: int, max_buckets: int
) -> None:
    limited = NativeHistogram(schema, max_buckets)
    recorded = [v for v in values if limited.observe(v)]
    assert len(recorded) == sum(1 for v in values if math.isfinite(v))
    assert limited.count == len(recorded)
    assert limited.zero_count == sum(1 for v in recorded if v / 1000.0 <= ZERO_THRESHOLD)
    assert len(limited.buckets) == limited.populated
    assert limited.width <= max_buckets or limited.schema == SCHEMA_MIN or max_buckets == 0
    direct = NativeHistogram(limited.schema, 0)
    for v in recorded:
        direct.observe(v)
    assert direct.buckets == limited.buckets and direct.zero_count == limited.zero_count
    if limited.schema < schema:  # one step less would not have fitted
        finer = NativeHistogram(limited.schema + 1, 0)
        for v in recorded:
            finer.observe(v)
        assert finer.width > max_buckets


@settings(max_examples=60, deadline=None)
@given(a=observations, b=observations, schema_a=st.sampled_from(SCHEMAS), schema_b=st.sampled_from(SCHEMAS))
def test_merging_histograms_of_different_schemas_is_exact(
    a: list[float], b: list[float], schema_a: int, schema_b: int
) -> None:
    first, second = NativeHistogram(schema_a, 0), NativeHistogram(schema_b, 0)
    for v in a:
        first.observe(v)
    for v in b:
        second.observe(v)
    merged = first.copy()
    merged.merge(second)
    coarse = min(schema_a, schema_b)
    assert merged.schema == coarse
    direct = NativeHistogram(coarse, 0)
    for v in a + b:
        direct.observe(v)
    assert merged == direct
    assert merged.count == first.count + second.count
    assert first.schema == schema_a  # the copy was merged, not the original


def test_add_counts_reduces_finer_counts_and_counts_the_zero_bucket() -> None:
    histogram = NativeHistogram(4, 0)
    assert histogram.add_counts({None: 2, 63: 1, 64: 3, 65: 0, -1: 4}, 6) == 10
    assert histogram.zero_count == 2
    assert histogram.buckets == {16: 4, 0: 4}  # 63 and 64 -> 16, -1 -> 0; 65 had no count
    histogram.add_counts([(3, 1)], 2)  # coarser: ours goes down to schema 2 first
    assert histogram.schema == 2 and histogram.buckets == {4: 4, 0: 4, 3: 1}


def test_the_dense_store_keeps_at_most_twice_the_bound_and_a_far_outlier_allocates_no_more() -> None:
    import tracemalloc

    # three populated buckets 70 powers of two apart at schema 8 would be 18,000 buckets wide: the store lowers
    # the schema before it widens, so the array never holds more than 160 counts
    histogram = NativeHistogram(8, 160)
    histogram.observe(5.0)
    tracemalloc.start()
    histogram.observe(1e-15)  # 1e-18 s: far below, not the zero bucket
    histogram.observe(MAX_RESPONSE_TIME_MS)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * 160 + 2048, peak
    assert histogram.populated == 3 and histogram.width <= 160 and histogram.count == 3
    direct = NativeHistogram(histogram.schema, 0)
    for ms in (5.0, 1e-15, MAX_RESPONSE_TIME_MS):
        direct.observe(ms)
    assert direct == histogram  # exact: as if recorded at the lower schema
    finer = NativeHistogram(histogram.schema + 1, 0)
    for ms in (5.0, 1e-15, MAX_RESPONSE_TIME_MS):
        finer.observe(ms)
    assert finer.width > 160  # one step finer would not have fitted


def test_the_bound_counts_the_buckets_kept_empty_ones_between_included() -> None:
    # 3 populated buckets spread over 9 (bound 8): the span decides, not the populated count
    histogram = NativeHistogram(6, 8)
    for index in (0, 4, 8):
        histogram.observe(native.threshold_ms(index, 6))
    assert histogram.schema == 5 and histogram.buckets == {0: 1, 2: 1, 4: 1} and histogram.width == 5
    # within the bound: kept as it is, gaps stored as zeros but never reported
    kept = NativeHistogram(6, 8)
    for index in (-3, 0, 4):
        kept.observe(native.threshold_ms(index, 6))
    assert kept.schema == 6 and kept.width == 8 and kept.populated == 3 and kept.buckets == {-3: 1, 0: 1, 4: 1}
    assert kept.spans_and_deltas() == ([(-3, 4), (3, 1)], [1, -1, 0, 1, 0])  # a gap of 2 filled, of 3 not
    assert kept.to_wire() == [6, 0, [-3, 1, 0, 1, 4, 1]]
    assert NativeHistogram.from_wire(kept.to_wire(), 8) == kept


@settings(max_examples=150, deadline=None)
@given(indices=st.lists(st.one_of(st.none(), st.integers(min_value=-400, max_value=400)), max_size=150),
       max_buckets=st.integers(min_value=0, max_value=60), before=st.lists(st.integers(-50, 50), max_size=5))
def test_a_batch_of_indices_small_or_large_is_counted_exactly_within_the_bound(
    indices: list[int | None], max_buckets: int, before: list[int]
) -> None:
    histogram = NativeHistogram(6, max_buckets)
    histogram.add_counts(dict.fromkeys(before, 1), 6)
    by = 6 - histogram.schema  # add_indices takes indices at the histogram's schema, as the bucketer gives them
    histogram.add_indices(tuple(None if k is None else reduce_index(k, by) for k in indices))  # few: one by one
    everything = [*dict.fromkeys(before), *indices]
    reference = NativeHistogram(6, 0)
    reference.add_counts([(k, 1) for k in everything], 6)
    reference.reduce_to(histogram.schema)
    assert histogram == reference and histogram.count == len(everything)
    assert histogram.width <= max_buckets or max_buckets == 0 or histogram.schema == SCHEMA_MIN
    if histogram.schema < 6:  # one step finer would not have fitted
        finer = NativeHistogram(6, 0)
        finer.add_counts([(k, 1) for k in everything], 6)
        finer.reduce_to(histogram.schema + 1)
        assert finer.width > max_buckets


def test_a_copy_shares_nothing_with_its_original() -> None:
    histogram = NativeHistogram(6, 160)
    histogram.observe(10.0)
    copy = histogram.copy()
    histogram.observe(10.0)
    histogram.observe(0.5)
    assert copy.count == 1 and copy.buckets == {native_index(10.0, 6): 1} and histogram.count == 3
    assert copy != histogram and copy.max_buckets == 160


def test_reduction_never_raises_the_schema_and_stops_at_the_minimum() -> None:
    histogram = NativeHistogram(-3, 1)
    for ms in (1.0, 1e3, 1e6, 1e9, 1e12):
        histogram.observe(ms)
    assert histogram.schema == SCHEMA_MIN and histogram.count == 5
    with pytest.raises(ValueError):
        histogram.reduce_to(-3)
    with pytest.raises(ValueError):
        NativeHistogram(9)
    with pytest.raises(ValueError):
        NativeHistogram(6, -1)


@settings(max_examples=150, deadline=None)
@given(buckets=st.dictionaries(st.integers(min_value=-50, max_value=50), st.integers(min_value=1, max_value=10**12)))
def test_spans_and_deltas_are_client_golangs(buckets: dict[int, int]) -> None:
    histogram = NativeHistogram(6, 0)
    histogram.buckets = dict(buckets)
    spans, deltas = histogram.spans_and_deltas()
    assert (spans, deltas) == golang_make_buckets(buckets)
    # and they decode back to the buckets
    decoded, index, running, position = {}, 0, 0, 0
    for offset, length in spans:
        index += offset
        for _ in range(length):
            running += deltas[position]
            position += 1
            if running:
                decoded[index] = running
            index += 1
    assert decoded == buckets


def test_wire_round_trip_and_malformed_payloads() -> None:
    histogram = NativeHistogram(5, 0)
    for ms in (0.0, 1.5, 1.5, 30.0, 2e4):
        histogram.observe(ms)
    wire = histogram.to_wire()
    assert all(type(x) is int for x in wire[2]) and NativeHistogram.from_wire(wire, 0) == histogram
    for bad in (None, [5, 0], [5, -1, []], [5, 0, [1]], [5, 0, [1, -2]], [5, 0, [1.5, 2]], [99, 0, []], "x",
                [5, 0, [32769, 1]], [5, 0, [-4096, 1]]):  # index_range(5) is (-4095, 32768)
        with pytest.raises(ValueError):
            NativeHistogram.from_wire(bad)


def test_pick_schema_is_client_golangs() -> None:
    assert pick_schema(1.1) == 3 and pick_schema(2) == 0 and pick_schema(4) == -1 and pick_schema(65536) == -4
    assert pick_schema(1.0027) == 8 and pick_schema(1.000001) == 8 and pick_schema(1e10) == -4
    assert pick_schema(2 ** (2**-6)) == 6 and pick_schema(math.nextafter(2 ** (2**-6), 0)) == 7
    for bad in (1, 0.5, -2, math.inf, math.nan, "2"):
        with pytest.raises(ValueError):
            pick_schema(bad)  # type: ignore[arg-type]


def test_quantile_interpolates_linearly_within_the_bucket() -> None:
    histogram = NativeHistogram(0, 0)
    histogram.add_counts({1: 2, 2: 2}, 0)  # (1, 2] s and (2, 4] s
    assert histogram.quantile(0.25) == 1.5 and histogram.quantile(0.5) == 2.0 and histogram.quantile(0.75) == 3.0
    assert math.isnan(NativeHistogram().quantile(0.5)) and histogram.quantile(2) == math.inf


# ----------------------------------------------------------------------------------------------- negotiation
@pytest.mark.parametrize(("accept", "expected"), [
    (PROMETHEUS_2_42_NATIVE_ACCEPT, pb.PROTOBUF),
    (PROMETHEUS_2_42_ACCEPT, pb.OPENMETRICS),
    *PROMETHEUS_3_ACCEPTS.values(),
    (None, pb.TEXT),
    ("", pb.TEXT),
    ("*/*", pb.TEXT),
    ("text/plain", pb.TEXT),
    ("text/plain;version=0.0.4", pb.TEXT),
    ("text/plain;version=9", pb.TEXT),
    ("application/openmetrics-text; version=1.0.0; charset=utf-8", pb.OPENMETRICS),
    ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text", pb.TEXT),
    ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,"
     "text/plain;version=0.0.4;q=0.9", pb.TEXT),
    ("text/plain;q=0.5, application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
     pb.PROTOBUF),
    ("application/vnd.google.protobuf;proto=Other;encoding=delimited", pb.TEXT),
    ("garbage;;;,,/", pb.TEXT),
    # an unparsable q is 0, and client_golang still takes a clause of q=0 when nothing else matches
    ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=x", pb.PROTOBUF),
    ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0,text/plain;q=0.1",
     pb.TEXT),
])
def test_negotiation_chooses_as_client_golang(accept: str | None, expected: str) -> None:
    assert pb.negotiate_format(accept) == expected
    assert pb.wants_protobuf(accept) == (expected == pb.PROTOBUF)


# ----------------------------------------------------------------------------------------------- wire format
class WireReader:
    """A minimal protobuf wire-format reader, independent of the protobuf library: varints, fixed64, and
    length-delimited fields; returns ``{field number: [values]}`` (bytes for length-delimited)."""

    @staticmethod
    def varint(data: bytes, pos: int) -> tuple[int, int]:
        result = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result, pos

    @classmethod
    def fields(cls, data: bytes) -> dict[int, list]:
        out: dict[int, list] = {}
        pos = 0
        while pos < len(data):
            key, pos = cls.varint(data, pos)
            number, wire_type = key >> 3, key & 7
            if wire_type == 0:
                value, pos = cls.varint(data, pos)
            elif wire_type == 1:
                value, pos = struct.unpack_from("<d", data, pos)[0], pos + 8
            elif wire_type == 2:
                length, pos = cls.varint(data, pos)
                value, pos = data[pos : pos + length], pos + length
            else:
                raise AssertionError(f"unexpected wire type {wire_type}")
            out.setdefault(number, []).append(value)
        return out

    @classmethod
    def delimited(cls, data: bytes) -> list[bytes]:
        messages, pos = [], 0
        while pos < len(data):
            length, pos = cls.varint(data, pos)
            messages.append(data[pos : pos + length])
            pos += length
        assert pos == len(data)
        return messages


def unzigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


class Fixture:
    """Known observations (milliseconds) incl. hostile ones, and what the recorder makes of them."""

    BOUNDS_S = (0.005, 0.05, 0.5, 5.0)
    RAW_MS = (
        [3.0, 7.5, 12.25, 42.0, 99.9, 100.0, 250.0, 1000.0, 1024.0, 4999.0]  # typical
        + [native.threshold_ms(k, 6) for k in (-300, -200, -100, -10, 0, 5)]  # bucket bounds exactly
        + [math.nextafter(native.threshold_ms(-100, 6), math.inf), 0.0, -0.0, -25.0, 1e-300, 1e-40, 5e-324]
        + [math.nan, math.inf, -math.inf, 1e15, 2e12]  # not observed; huge (capped at MAX_RESPONSE_TIME_MS)
    )

    def __init__(self, schema: int = 6) -> None:
        self.observed_ms: list[float] = []
        for ms in self.RAW_MS:  # the careful path's sanitizing (recorder.py)
            if math.isnan(ms) or math.isinf(ms):
                continue
            self.observed_ms.append(min(max(ms, 0.0), MAX_RESPONSE_TIME_MS))
        self.native = NativeHistogram(schema, 0)
        for ms in self.observed_ms:
            assert self.native.observe(ms)
        self.count = len(self.observed_ms)
        self.sum_s = math.fsum(self.observed_ms) / 1000.0
        self.cumulative = [sum(1 for ms in self.observed_ms if ms <= b * 1000) for b in self.BOUNDS_S]

    def families(self) -> bytes:
        labels = (("method", "GET"), ("name", "/a \"quoted\" näme"))
        return b"".join([
            pb.family("nh_test_requests_total", "Requests.", pb.COUNTER, [pb.counter_metric(labels, 17.0)]),
            pb.family("nh_test_duration_seconds", "Durations.", pb.HISTOGRAM, [
                pb.histogram_metric(labels, self.count, self.sum_s, self.BOUNDS_S, self.cumulative, self.native),
                pb.histogram_metric((("method", "GET"), ("name", "/empty")), 0, 0.0, self.BOUNDS_S, [0] * 4,
                                    NativeHistogram(6)),
            ]),
            pb.family("nh_test_threshold_seconds", "A gauge.", pb.GAUGE, [pb.gauge_metric(labels, 0.25)]),
            pb.family("nh_test_bounds", "All 256 buckets of schema 8 within (1, 2] s.", pb.HISTOGRAM, [
                pb.histogram_metric((), 256, 384.0, native=_all_schema_8_buckets()),
            ]),
        ])

    def text(self) -> bytes:
        registry = CollectorRegistry()
        fixture = self

        class Collector:
            def collect(self):
                counter = CounterMetricFamily("nh_test_requests", "Requests.", labels=["method", "name"])
                counter.add_metric(["GET", "/a \"quoted\" näme"], 17.0)
                histogram = HistogramMetricFamily("nh_test_duration_seconds", "Durations.", labels=["method", "name"])
                buckets = [(repr(b), n) for b, n in zip(fixture.BOUNDS_S, fixture.cumulative)] + [("+Inf", fixture.count)]
                histogram.add_metric(["GET", "/a \"quoted\" näme"], buckets, fixture.sum_s)
                return [counter, histogram]

        registry.register(Collector())
        return generate_latest(registry)


def _all_schema_8_buckets() -> NativeHistogram:
    histogram = NativeHistogram(8, 0)
    histogram.add_counts({k: 1 for k in range(1, 257)}, 8)
    return histogram


def test_what_we_serve_decodes_with_an_independent_reader_and_with_the_library() -> None:
    fixture = Fixture()
    body = fixture.families()
    messages = WireReader.delimited(body)
    assert len(messages) == 4
    # the library's own decoding of the same bytes, and its own encoding of the same family
    families = [pb.MetricFamily.FromString(m) for m in messages]
    assert [f.name for f in families] == ["nh_test_requests_total", "nh_test_duration_seconds",
                                          "nh_test_threshold_seconds", "nh_test_bounds"]
    for message, decoded in zip(messages, families):
        assert decoded.SerializeToString() == message  # our framing is the library's serialization

    counter, histogram_family = (WireReader.fields(m) for m in messages[:2])
    assert counter[1] == [b"nh_test_requests_total"] and counter[3] == [pb.COUNTER]
    metric = WireReader.fields(counter[4][0])
    labels = [WireReader.fields(pair) for pair in metric[1]]
    assert [(p[1][0].decode(), p[2][0].decode()) for p in labels] == [("method", "GET"), ("name", '/a "quoted" näme')]
    assert WireReader.fields(metric[3][0])[1] == [17.0]

    assert histogram_family[3] == [pb.HISTOGRAM] and len(histogram_family[4]) == 2
    histogram = WireReader.fields(WireReader.fields(histogram_family[4][0])[7][0])
    assert histogram[1] == [fixture.count] and histogram[2] == [fixture.sum_s]
    buckets = [WireReader.fields(b) for b in histogram[3]]
    assert [(b[1][0], b[2][0]) for b in buckets] == list(zip(fixture.cumulative, fixture.BOUNDS_S))
    assert [unzigzag(x) for x in histogram[5]] == [6]
    assert histogram[6] == [ZERO_THRESHOLD] and histogram[7] == [fixture.native.zero_count]
    spans = [WireReader.fields(s) for s in histogram[12]]
    decoded: dict[int, int] = {}
    index = running = position = 0
    deltas = [unzigzag(x) for x in histogram[13]]
    for span in spans:
        index += unzigzag(span.get(1, [0])[0])
        for _ in range(span.get(2, [0])[0]):
            running += deltas[position]
            position += 1
            if running:
                decoded[index] = running
            index += 1
    assert decoded == fixture.native.buckets and position == len(deltas)
    assert fixture.native.zero_count + sum(decoded.values()) == fixture.count

    empty = WireReader.fields(WireReader.fields(histogram_family[4][1])[7][0])
    assert [WireReader.fields(s) for s in empty[12]] == [{1: [0], 2: [0]}]  # the no-op span marks it native


def test_hostile_values_go_where_the_classic_histogram_puts_them() -> None:
    fixture = Fixture()
    native_hist = fixture.native
    zero_like = [ms for ms in fixture.observed_ms if ms / 1000.0 <= ZERO_THRESHOLD]
    assert native_hist.zero_count == len(zero_like) == 6  # 0, -0, -25 (counted as 0), 1e-300, 1e-40, 5e-324 ms
    assert fixture.count == len(Fixture.RAW_MS) - 3  # NaN and infinities are not observed
    top = max(native_hist.buckets)
    assert top == native_index(MAX_RESPONSE_TIME_MS, 6) and native_hist.buckets[top] == 2  # 1e15 and 2e12, capped
    # every bound lands in its own bucket, the next double in the next one
    assert native_hist.buckets[native_index(native.threshold_ms(-100, 6), 6)] >= 1
    assert native_index(math.nextafter(native.threshold_ms(-100, 6), math.inf), 6) == -99
    # the recorder itself, fed the raw values through its listener (fast and careful paths alike), puts them
    # there, in its native histogram and in its classic buckets, both as the sanitized values above say
    recorder = RequestRecorder([b * 1000 for b in Fixture.BOUNDS_S], Fixture.BOUNDS_S[-1] * 1000, native=(6, 0))
    for ms in Fixture.RAW_MS:
        recorder.record("GET", "/a", ms, 0, Response(200), None)
    entry = recorder.endpoints["GET", "/a"]
    totals = entry.folded()
    assert (entry.native.schema, entry.native.zero_count, entry.native.buckets) == (
        native_hist.schema, native_hist.zero_count, native_hist.buckets)
    assert list(itertools.accumulate(totals.buckets))[:-1] == fixture.cumulative
    assert sum(totals.buckets) == fixture.count and sum(totals.statuses.values()) == len(Fixture.RAW_MS)


# ----------------------------------------------------------------------------------------------- Prometheus
class _Target:
    """An HTTP server on 127.0.0.1 serving the fixture: protobuf when the Accept header asks for it, else text.
    Records every Accept header it sees, per path."""

    def __init__(self, fixture: Fixture) -> None:
        self.accepts: dict[str, list[str | None]] = {}
        protobuf_body, text_body = fixture.families(), fixture.text()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                accept = self.headers.get("Accept")
                target.accepts.setdefault(self.path, []).append(accept)
                if pb.wants_protobuf(accept):
                    body, content_type = protobuf_body, pb.CONTENT_TYPE
                else:
                    body, content_type = text_body, "text/plain; version=0.0.4; charset=utf-8"
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> _Target:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def prometheus_run(tmp_path_factory: pytest.TempPathFactory):
    """Two real Prometheus 2.42 servers scraping the fixture every second: one with native histograms on."""
    from support import PrometheusServer, prometheus_config

    fixture = Fixture()
    with _Target(fixture) as target:
        config = prometheus_config([target.address], scrape_interval="1s")
        config["scrape_configs"][0]["metrics_path"] = "/native"
        plain = prometheus_config([target.address], scrape_interval="1s")
        plain["scrape_configs"][0]["metrics_path"] = "/plain"
        work = tmp_path_factory.mktemp("prometheus")
        with PrometheusServer(work / "native", config, extra_args=["--enable-feature=native-histograms"]) as prom, \
                PrometheusServer(work / "plain", plain) as prom_plain:
            prom.wait_for_targets_up()
            prom_plain.wait_for_targets_up()
            prom.wait_for(lambda: prom.query("nh_test_duration_seconds") and prom.query("nh_test_bounds"),
                          timeout=30, what="the native series")
            prom_plain.wait_for(lambda: prom_plain.query("nh_test_duration_seconds_count"), timeout=30,
                                what="the classic series")
            yield fixture, target, prom, prom_plain


def _native_sample(prom, expr: str) -> dict:
    result = prom.query(expr)
    assert len(result) == 1, result
    return result[0]["histogram"][1]


def test_prometheus_asks_as_recorded_and_gets_what_it_asked_for(prometheus_run) -> None:
    fixture, target, prom, prom_plain = prometheus_run
    assert target.accepts["/native"][0] == PROMETHEUS_2_42_NATIVE_ACCEPT
    assert target.accepts["/plain"][0] == PROMETHEUS_2_42_ACCEPT
    assert all(t["health"] == "up" and not t["lastError"] for t in prom.targets() + prom_plain.targets())
    # a text scraper (no Accept header, or curl's) gets text
    import urllib.request

    for headers in ({}, {"Accept": "*/*"}, {"Accept": "text/plain"}):
        request = urllib.request.Request(f"http://{target.address}/curl", headers=headers)
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            assert b"nh_test_duration_seconds_bucket{" in response.read()


def test_prometheus_ingests_count_and_sum_exactly(prometheus_run) -> None:
    fixture, _target, prom, _plain = prometheus_run
    selector = 'nh_test_duration_seconds{name="/a \\"quoted\\" näme"}'
    assert float(prom.query(f"histogram_count({selector})")[0]["value"][1]) == fixture.count
    assert float(prom.query(f"histogram_sum({selector})")[0]["value"][1]) == fixture.sum_s
    sample = _native_sample(prom, selector)
    assert int(sample["count"]) == fixture.count and float(sample["sum"]) == fixture.sum_s
    empty = _native_sample(prom, 'nh_test_duration_seconds{name="/empty"}')
    assert int(empty["count"]) == 0
    assert float(prom.query('nh_test_requests_total{method="GET"}')[0]["value"][1]) == 17.0
    assert float(prom.query("nh_test_threshold_seconds")[0]["value"][1]) == 0.25


def test_prometheus_reads_our_buckets_with_our_bounds(prometheus_run) -> None:
    fixture, _target, prom, _plain = prometheus_run
    sample = _native_sample(prom, 'nh_test_duration_seconds{name="/a \\"quoted\\" näme"}')
    zero = [b for b in sample["buckets"] if float(b[1]) <= 0 <= float(b[2])]
    assert [(float(b[1]), float(b[2]), int(b[3])) for b in zero] == [
        (-ZERO_THRESHOLD, ZERO_THRESHOLD, fixture.native.zero_count)]
    served = {
        (upper_bound(k - 1, 6), upper_bound(k, 6)): n for k, n in fixture.native.buckets.items()
    }
    read = {(float(b[1]), float(b[2])): int(b[3]) for b in sample["buckets"] if b not in zero}
    assert read == served


def test_prometheus_uses_our_bounds_table(prometheus_run) -> None:
    _fixture, _target, prom, _plain = prometheus_run
    buckets = _native_sample(prom, "nh_test_bounds")["buckets"]
    uppers = [float(b[2]) for b in buckets]
    assert len(uppers) == 256 and uppers[-1] == 2.0
    assert [u / 2 for u in uppers[:-1]] == list(FRACTIONS[8][1:])  # bound k of (1, 2] is 2 * FRACTIONS[8][k]


@pytest.mark.parametrize("q", [0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0])
def test_histogram_quantile_is_the_linear_interpolation_we_compute(prometheus_run, q: float) -> None:
    fixture, _target, prom, _plain = prometheus_run
    value = float(prom.query(f'histogram_quantile({q}, nh_test_duration_seconds{{name="/a \\"quoted\\" näme"}})')[0]["value"][1])
    assert value == pytest.approx(fixture.native.quantile(q), rel=1e-12)


def test_classic_buckets_in_the_same_message_are_not_ingested_by_prometheus_2_42(prometheus_run) -> None:
    """With the feature flag, Prometheus 2.42 keeps only the native histogram of a message that has both
    (``scrape_classic_histograms``, which keeps both, came in 2.45); without it, only the classic one."""
    fixture, _target, prom, prom_plain = prometheus_run
    for suffix in ("_bucket", "_count", "_sum"):
        assert prom.query(f"nh_test_duration_seconds{suffix}") == []
    classic = {r["metric"]["le"]: float(r["value"][1])
               for r in prom_plain.query('nh_test_duration_seconds_bucket{name="/a \\"quoted\\" näme"}')}
    assert classic == {**{repr(b): n for b, n in zip(fixture.BOUNDS_S, fixture.cumulative)}, "+Inf": fixture.count}
    assert float(prom_plain.query('nh_test_duration_seconds_count{method="GET"}')[0]["value"][1]) == fixture.count
    assert "histogram" not in prom_plain.query('nh_test_duration_seconds_count{method="GET"}')[0]


def test_histogram_series_are_one_per_endpoint(prometheus_run) -> None:
    _fixture, _target, prom, _plain = prometheus_run
    names = {s["__name__"] for s in prom.series('{__name__=~"nh_test_duration_seconds.*"}')}
    assert names == {"nh_test_duration_seconds"}
    assert len(prom.series("nh_test_duration_seconds")) == 2


def test_the_encoders_are_the_librarys_serialization_of_the_whole_message() -> None:
    """Labels serialized apart (cached per endpoint) and classic buckets copied from a template give the same
    bytes as one message built field by field."""
    fixture = Fixture()
    labels = [("method", "GET"), ("name", "/x")]
    expected = pb.Metric(label=[pb.LabelPair(name=n, value=v) for n, v in labels])
    histogram = expected.histogram
    histogram.sample_count, histogram.sample_sum = fixture.count, fixture.sum_s
    histogram.bucket.extend(
        [pb.Bucket(cumulative_count=n, upper_bound=b) for b, n in zip(fixture.BOUNDS_S, fixture.cumulative)])
    histogram.schema, histogram.zero_threshold = fixture.native.schema, ZERO_THRESHOLD
    histogram.zero_count = fixture.native.zero_count
    spans, deltas = fixture.native.spans_and_deltas()
    histogram.positive_span.extend([pb.BucketSpan(offset=o, length=n) for o, n in spans])
    histogram.positive_delta.extend(deltas)
    args = (fixture.count, fixture.sum_s, fixture.BOUNDS_S, fixture.cumulative, fixture.native)
    assert pb.histogram_metric(labels, *args) == expected.SerializeToString()
    assert pb.histogram_metric(pb.metric_labels(labels), *args) == expected.SerializeToString()
    counter = pb.Metric(label=[pb.LabelPair(name="a", value="b")])
    counter.counter.value = 3.5
    assert pb.counter_metric([("a", "b")], 3.5) == counter.SerializeToString()
    with pytest.raises(ValueError):
        pb.histogram_metric(labels, 1, 1.0, (1.0, 2.0), (1,))
