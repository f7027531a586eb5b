"""The batch bucketer (``locust_metrics/bucketing.py``) against the exact one-by-one functions: every response
time lands in the classic bucket ``bisect_left(bounds, t)`` and the native bucket ``native_index(t)``, at bucket
bounds and the doubles next to them, at classic bounds that are not native ones, in the zero bucket, below
the table (under 1 µs) and above it."""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from collections import Counter

import pytest

from locust_metrics.bucketing import LOW_MS, SORT_AT_LEAST, TOP_MS, BatchBucketer, zero_limit_ms
from locust_metrics.native import NativeHistogram, native_index, reduce_index, threshold_ms, upper_bound
from locust_metrics.options import Settings

BOUNDS = Settings.from_kwargs().bounds_ms() + (2.5, 1234.5678)


def neighbours(values: list[float]) -> list[float]:
    out = []
    for v in values:
        out += [math.nextafter(v, -math.inf), v, math.nextafter(v, math.inf)]
    return [v for v in out if v >= 0.0]


def expected(times: list[float], bounds: tuple[float, ...], schema: int) -> tuple[list[int], dict[int | None, int]]:
    classic = [0] * (len(bounds) + 1)
    for t in times:
        classic[bisect_left(bounds, t)] += 1
    return classic, dict(Counter(native_index(t, schema) for t in times))


@pytest.mark.parametrize("schema", [6, 8, 3, 0, -4])
def test_a_batch_lands_where_the_exact_functions_put_each_time(schema: int) -> None:
    bounds = tuple(sorted(set(BOUNDS)))
    bucketer = BatchBucketer(bounds, schema)
    rng = random.Random(schema)
    low, high = native_index(LOW_MS, schema), native_index(TOP_MS, schema)
    native_edges = [upper_bound(k, schema) * 1000.0 for k in range(low - 3, high + 3, max(1, (high - low) // 300))]
    native_edges += [threshold_ms(k, schema) for k in (low - 1, low, high - 1, high, high + 1)]
    times = (neighbours(native_edges) + neighbours(list(bounds)) + neighbours([zero_limit_ms(), LOW_MS, TOP_MS])
             + [0.0, -0.0 + 0.0, 5e-324, 1e-300, 1e-40, 1e12, 3.0e6, 123.0]
             + [rng.lognormvariate(4.0, 2.0) for _ in range(5000)])
    rng.shuffle(times)
    histogram = NativeHistogram(schema, 0)
    classic, sum_ms = bucketer.count(times, histogram)
    expected_classic, expected_native = expected(times, bounds, schema)
    assert classic == expected_classic and sum_ms == sum(times)
    assert histogram.buckets == {k: n for k, n in expected_native.items() if k is not None}
    assert histogram.zero_count == expected_native.get(None, 0) > 0


@pytest.mark.parametrize("size", [1, 2, 41])
def test_small_batches_land_where_the_exact_functions_put_each_time(size: int) -> None:
    """A real run's batches are small (one entry's response times between two folds); a batch of one takes a path of
    its own (a getter of one position gives the item, not a tuple). Edge values and their neighbours, in order."""
    schema = 6
    bounds = tuple(sorted(set(BOUNDS)))
    bucketer = BatchBucketer(bounds, schema)
    times = (neighbours([threshold_ms(k, schema) for k in range(native_index(0.5, schema), native_index(2.0, schema))])
             + neighbours(list(bounds)) + neighbours([zero_limit_ms(), LOW_MS, TOP_MS]) + [0.0, 1e-300, 3.0e6])
    histogram = NativeHistogram(schema, 0)
    classic = [0] * (len(bounds) + 1)
    for start in range(0, len(times), size):
        batch = times[start : start + size]
        added, sum_ms = bucketer.count(batch, histogram)
        assert sum_ms == sum(batch)
        classic = [a + b for a, b in zip(classic, added)]
    expected_classic, expected_native = expected(times, bounds, schema)
    assert classic == expected_classic
    assert histogram.buckets == {k: n for k, n in expected_native.items() if k is not None}
    assert histogram.zero_count == expected_native.get(None, 0) > 0


def test_a_coarser_histogram_gets_the_buckets_that_hold_ours() -> None:
    """After the bucket bound halved a histogram's resolution, a batch lands in the coarser buckets."""
    bucketer = BatchBucketer(BOUNDS, 6)
    times = [0.0, 1e-40, 0.0005, 3.0, 40.0, 333.3, 5000.0, 3e6] + [float(i) for i in range(1, 2000, 7)]
    coarse = NativeHistogram(6, 0)
    coarse.reduce_to(3)
    bucketer.count(times, coarse)
    reference = NativeHistogram(3, 0)
    for t in times:
        reference.observe(t)
    assert coarse == reference
    with pytest.raises(ValueError, match="finer"):
        bucketer.count(times, NativeHistogram(8, 0))


def test_the_table_holds_every_classic_bound_in_its_range() -> None:
    bucketer = BatchBucketer(BOUNDS, 6)
    cuts = set(bucketer.cuts)
    assert {b for b in BOUNDS if LOW_MS <= b <= TOP_MS} <= cuts
    assert bucketer.cuts == sorted(cuts) and bucketer.cuts[0] == zero_limit_ms()
    assert native_index(zero_limit_ms(), 6) is None and native_index(math.nextafter(zero_limit_ms(), 1.0), 6) is not None


def test_an_empty_batch_adds_nothing() -> None:
    histogram = NativeHistogram(6, 160)
    assert BatchBucketer(BOUNDS, 6).count([], histogram) == ([0] * (len(BOUNDS) + 1), 0)
    assert histogram == NativeHistogram(6, 160)


def test_the_schema_is_checked() -> None:
    with pytest.raises(ValueError, match="schema 9"):
        BatchBucketer(BOUNDS, 9)


@pytest.mark.parametrize("schema", [6, 8, 0])
def test_a_large_batch_counted_by_sorting_lands_where_the_exact_functions_put_each_time(schema: int) -> None:
    """Many response times over few table positions take the sorting path: the same buckets, at bucket bounds
    and classic bounds too, and into a coarser histogram."""
    bounds = tuple(sorted(set(BOUNDS)))
    bucketer = BatchBucketer(bounds, schema)
    rng = random.Random(7)
    edges = [threshold_ms(k, schema) for k in range(native_index(20.0, schema), native_index(400.0, schema) + 1)]
    times = neighbours(edges) + neighbours([b for b in bounds if 20 < b < 400])
    times += [rng.lognormvariate(4.5, 0.4) for _ in range(SORT_AT_LEAST + 4 * len(times))]
    times = [min(max(t, 20.0), 400.0) for t in times]
    rng.shuffle(times)
    for reduced_to in (schema, schema - 2):
        histogram = NativeHistogram(schema, 0)
        histogram.reduce_to(reduced_to)
        cuts = bucketer.cuts
        span = bisect_left(cuts, max(times)) - bisect_left(cuts, min(times)) + 1
        assert len(times) >= max(SORT_AT_LEAST, 2 * span), "the sorting path"
        classic, sum_ms = bucketer.count(times, histogram)
        expected_classic, _ = expected(times, bounds, schema)
        reference = NativeHistogram(schema, 0)
        reference.reduce_to(reduced_to)
        for t in times:
            reference.observe(t)
        assert classic == expected_classic and histogram == reference and sum_ms == sum(times)


@pytest.mark.parametrize("size", [1, 41, SORT_AT_LEAST * 4])
def test_add_counts_into_the_classic_buckets_in_place_and_returns_the_slow_ones(size: int) -> None:
    """What a fold uses: the classic counts go into the endpoint's own list (in place), and the slow requests are
    those in a bucket above ``slow_index`` (every path: one time, a small batch, a large sorted one)."""
    bounds = tuple(sorted(set(BOUNDS)))
    bucketer = BatchBucketer(bounds, 6)
    rng = random.Random(size)
    times = [min(rng.lognormvariate(5.0, 0.6), 3000.0) for _ in range(size)]
    if size > SORT_AT_LEAST:
        times = [max(t, 50.0) for t in times]  # few positions: the sorting path
    slow_index = bounds.index(500.0)
    classic = [7] * (len(bounds) + 1)
    histogram = NativeHistogram(6, 0)
    sum_ms, slow = bucketer.add(times, histogram, classic, slow_index)
    expected_classic, expected_native = expected(times, bounds, 6)
    assert classic == [7 + n for n in expected_classic]
    assert slow == sum(t > 500.0 for t in times) == sum(expected_classic[slow_index + 1 :])
    assert sum_ms == sum(times) and histogram.buckets == expected_native


@pytest.mark.parametrize(("max_buckets", "sigma"), [(0, 1.0), (40, 2.0), (160, 1.0)])
def test_small_batches_inside_the_table_land_as_the_general_path_puts_them(max_buckets: int, sigma: float) -> None:
    """Batches of 2..64 response times, all inside the table, take a loop of their own (``_add_few``): the same
    classic counts, and the same native histogram as ``add_indices`` of the exact indices gives, also when the
    bucket bound lowers the schema in the middle of the run (``reserve``), and into a histogram reduced before."""
    bounds = tuple(sorted(set(BOUNDS)))
    bucketer = BatchBucketer(bounds, 6)
    rng = random.Random(max_buckets)
    histogram, reference = NativeHistogram(6, max_buckets), NativeHistogram(6, max_buckets)
    if max_buckets == 160:
        histogram.reduce_to(4)
        reference.reduce_to(4)
    classic = [0] * (len(bounds) + 1)
    expected_classic = [0] * (len(bounds) + 1)
    slow_index = bounds.index(500.0)
    for _ in range(300):
        batch = [min(max(rng.lognormvariate(4.0, sigma), 0.01), 1e5) for _ in range(rng.randrange(2, 65))]
        before = sum(classic[slow_index + 1 :])
        sum_ms, slow = bucketer.add(batch, histogram, classic, slow_index)
        assert sum_ms == sum(batch) and slow == sum(classic[slow_index + 1 :]) - before == sum(t > 500.0 for t in batch)
        for t in batch:
            expected_classic[bisect_left(bounds, t)] += 1
        reference.add_indices([reduce_index(native_index(t, 6), 6 - reference.schema) for t in batch])  # type: ignore[arg-type]
        assert histogram == reference
    assert classic == expected_classic
    if max_buckets == 40:
        assert histogram.schema < 6 and histogram.width <= 40, "the bound lowered the schema"


@pytest.mark.parametrize("batch", [[100.0, 3.0e6], [1e-5, 100.0], [1e-5, 3.0e6], [250.0, 1e-40, 7.5], [0.0, 5.0]])
def test_a_small_batch_with_a_time_outside_the_table_lands_where_the_exact_functions_put_each_time(batch: list[float]) -> None:
    """Above the table (over 17.5 minutes), below it (under 1 µs) or in the zero bucket: a small batch takes the
    general path, which places those one by one."""
    bounds = tuple(sorted(set(BOUNDS)))
    histogram = NativeHistogram(6, 0)
    classic = [0] * (len(bounds) + 1)
    BatchBucketer(bounds, 6).add(batch, histogram, classic, len(bounds))
    expected_classic, expected_native = expected(batch, bounds, 6)
    assert classic == expected_classic
    assert histogram.buckets == {k: n for k, n in expected_native.items() if k is not None}
    assert histogram.zero_count == expected_native.get(None, 0)
