"""Response times bucketed in batches: the classic buckets and the native buckets of many at once.

With native histograms on, the request listener does not bucket a response time at all: it appends it to its
endpoint's list (:attr:`~locust_metrics.recorder.EndpointStats.native_times`), and the next fold (a scrape, a
worker's report, the exporter every second: ``exporter.FOLD_INTERVAL_S``) counts the list with :class:`BatchBucketer`:
one C-level ``bisect`` per response time into a table of **cuts**, the union of the classic bucket bounds and
of the native buckets' largest response times, so that every interval between two cuts lies in one classic
and one native bucket. Then, by batch size:

* up to 64 (:data:`~locust_metrics.native.FEW_INDICES`), all inside the table (a real run's usual batch: one
  entry's requests of one second): one Python loop adds each response time to its native bucket (straight
  into the histogram's dense store) and to its classic bucket (:meth:`BatchBucketer._add_few`);
* larger, or with a time outside the table: one ``operator.itemgetter`` of all the positions picks each kind's
  buckets from its table; the classic ones are counted in C (``collections``' element counter), the native ones by
  :meth:`~locust_metrics.native.NativeHistogram.add_indices` (counted in C first, then added per bucket);
* large batches over few positions are sorted instead (:meth:`BatchBucketer._add_sorted`).

Why: indexing each response time in the listener cost 0.6 µs more per request in place (classic table, then
native tables), 1.9 against 1.3 µs. This costs 0.18-0.78 µs per response time on the same VM, by batch size
(5,000 to 10), outside the request's path; the listener costs about what the classic one does. In a real run
with one request name (batches of a second's requests) the listener and its folds took 0.66% of Locust's CPU
per request, as with native histograms off; over 50 names (batches of about 40, cold caches) 1.26-1.30%
against 0.89-0.93% off (docs/performance.md, seventh session). Numbers: ``docs/native-histograms.md``, ``docs/performance.md``.

Exact: a response time ``t`` lands in the interval ``(cuts[p - 1], cuts[p]]``, and every cut is a classic
bound or the largest response time (ms) of a native bucket (:func:`~locust_metrics.native.native_index`
computed in milliseconds, as the careful path does), so ``t``'s buckets are those of ``cuts[p]``. Response
times outside the table (below 1 µs but not in the zero bucket, above :data:`TOP_MS`) are bucketed one by one
with the exact functions.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from itertools import compress, repeat
from operator import itemgetter, sub
from typing import Any

from .native import (
    FEW_INDICES,
    ZERO_THRESHOLD,
    NativeHistogram,
    _count_elements,
    check_schema,
    native_index,
    reduce_index,
    threshold_ms,
)

OUTSIDE: Any = type("Outside", (), {"__repr__": lambda self: "OUTSIDE", "__slots__": ()})()
"""Where the table's positions send a response time to be bucketed one by one."""

SORT_AT_LEAST = 512
"""Batches of this many response times or more, spread over at most half as many table positions, are
counted by sorting (:meth:`BatchBucketer._add_sorted`: about 0.1 µs per response time at 5,000) rather
than one ``bisect`` each (about 0.33 µs)."""

LOW_MS = 0.001
"""Response times from here (1 µs) ..."""

TOP_MS = float(2**20)
"""... up to here (about 17.5 minutes) are bucketed through the table; the others one by one."""


def zero_limit_ms() -> float:
    """The largest response time (ms) in the native zero bucket: ``ms / 1000.0 <= ZERO_THRESHOLD``."""
    ms = ZERO_THRESHOLD * 1000.0
    while native_index(ms, 0) is not None:
        ms = math.nextafter(ms, -math.inf)
    while native_index(math.nextafter(ms, math.inf), 0) is None:
        ms = math.nextafter(ms, math.inf)
    return ms


class BatchBucketer:
    """Buckets batches of response times (ms) into classic and native buckets at once (see the module's
    docstring).

    Args:
        bounds_ms: the classic buckets' upper bounds (inclusive), in **milliseconds**, ascending and finite
            (``+Inf`` implicit), as the recorder holds them.
        schema: the native schema, ``SCHEMA_MIN..SCHEMA_MAX`` (``ValueError`` otherwise).

    Attributes:
        bounds_ms, schema: as given (a tuple; an int).
        cuts: the table: the zero bucket's limit, then every native bucket's largest response time from
            :data:`LOW_MS` to :data:`TOP_MS` and every classic bound in that range, ascending, without
            duplicates.

    Memory and time: at schema 6 about 1,900 cuts (three lists of that length, about 100 KB), built in some
    20 ms; at schema 8 four times that. The recorder keeps one per process and settings
    (:func:`~locust_metrics.recorder.batch_bucketer`).
    """

    __slots__ = ("bounds_ms", "schema", "cuts", "_classic_of", "_native_of")

    def __init__(self, bounds_ms: Sequence[float], schema: int) -> None:
        self.bounds_ms = tuple(float(b) for b in bounds_ms)
        self.schema = check_schema(schema)
        zero_ms = zero_limit_ms()
        low = native_index(LOW_MS, schema)
        high = native_index(TOP_MS, schema)
        assert low is not None and high is not None
        below = threshold_ms(low - 1, schema)  # the top of the response times under the table's first bucket
        limits = [threshold_ms(k, schema) for k in range(low, high + 1)]
        cuts = sorted({zero_ms, below, *limits, *(b for b in self.bounds_ms if below < b < limits[-1])})
        self.cuts = cuts
        # the buckets of the interval (cuts[p - 1], cuts[p]] (p >= 2): those of cuts[p]. OUTSIDE (classic)
        # where the response times are bucketed one by one (p = 1: below the table; p = len(cuts): above it;
        # p = 0, the zero bucket, too if a classic bound lies at or below its limit); native None there
        # (counted in the zero bucket, then moved)
        classic_of: list[Any] = [bisect_left(self.bounds_ms, cut) for cut in cuts] + [OUTSIDE]
        classic_of[1] = OUTSIDE
        if self.bounds_ms and self.bounds_ms[0] <= zero_ms:
            classic_of[0] = OUTSIDE
        self._classic_of = classic_of
        native_of: list[int | None] = [None, None, *(native_index(cut, schema) for cut in cuts[2:]), None]
        self._native_of = {0: native_of}  # by how many steps a histogram's schema is below ours

    def _native_table(self, by: int) -> list[int | None]:
        """The native bucket of each position at ``schema - by`` (made once per ``by``)."""
        table = self._native_of.get(by)
        if table is None:
            table = self._native_of[by] = [None if k is None else reduce_index(k, by) for k in self._native_of[0]]
        return table

    def count(self, times: list[float], histogram: NativeHistogram) -> tuple[list[int], float]:
        """Bucket ``times`` (response times in ms: floats, finite and ``>= 0``; not changed): count them in
        ``histogram`` (whose schema is ours or was reduced from it: ``ValueError`` if finer), and return
        ``(classic, sum_ms)``: the non-cumulative classic counts, one per bound plus ``+Inf`` (a new list),
        and the sum of the times in their order. :meth:`add` into a new list."""
        classic = [0] * (len(self.bounds_ms) + 1)
        sum_ms, _ = self.add(times, histogram, classic, len(classic) - 1)
        return classic, sum_ms

    def add(self, times: list[float], histogram: NativeHistogram, classic: list[int], slow_index: int) -> tuple[float, int]:
        """Bucket ``times`` (response times in ms: floats, finite and ``>= 0``; not changed): count them in
        ``histogram`` (whose schema is ours or was reduced from it: ``ValueError`` if finer) and add them to
        ``classic``, the non-cumulative classic counts (one per bound plus ``+Inf``, changed in place: an
        endpoint's own). Returns ``(sum_ms, slow)``: the sum of the times in their order, and how many of them
        lie in a classic bucket above ``slow_index`` (the endpoint's slow requests, see
        ``EndpointStats.slow_index``).

        Per response time: a ``bisect`` into :attr:`cuts` (C). A batch of up to
        :data:`~locust_metrics.native.FEW_INDICES` inside the table then takes one Python loop
        (:meth:`_add_few`); a larger one a pick from each kind's table (one ``operator.itemgetter`` of all the
        positions, applied to both tables) and a count, all in C (``map``, ``itemgetter``, ``collections``'
        element counter, :meth:`NativeHistogram.add_indices`), with Python steps only per bucket, and per
        response time outside the table; a large one over few positions is sorted (:meth:`_add_sorted`).
        Adding in place, rather than returning counts for the caller to add, saves a fold of a few response
        times about a fifth of its time (``docs/performance.md``)."""
        by = self.schema - histogram.schema
        if by < 0:
            raise ValueError(f"a histogram at schema {histogram.schema} is finer than the bucketer's {self.schema}")
        if len(times) >= SORT_AT_LEAST:
            cuts = self.cuts
            first, last = bisect_left(cuts, min(times)), bisect_left(cuts, max(times))
            if 2 <= first and last < len(cuts) and 2 * (last - first + 1) <= len(times):
                return self._add_sorted(times, histogram, by, first, last, classic, slow_index)
        positions: Any = None
        if 1 < len(times) <= FEW_INDICES:
            positions = list(map(bisect_left, repeat(self.cuts), times))
            first, last = min(positions), max(positions)
            if 2 <= first and last < len(self.cuts):  # (else some lie outside the table: below)
                return self._add_few(times, positions, first, last, histogram, classic, slow_index)
        classic_of, native_of = self._classic_of, self._native_of.get(by) or self._native_table(by)
        if len(times) > 1:  # one getter of every position, applied to both tables (a C loop each)
            pick = itemgetter(*(positions or map(bisect_left, repeat(self.cuts), times)))
            classics, natives = pick(classic_of), pick(native_of)
        elif times:  # (a getter of one position gives the item, not a tuple)
            position = bisect_left(self.cuts, times[0])
            classics, natives = (classic_of[position],), (native_of[position],)
        else:
            return 0, 0
        by_classic: dict[Any, int] = {}
        _count_elements(by_classic, classics)
        histogram.add_indices(natives)
        outside = by_classic.pop(OUTSIDE, 0)
        slow = 0
        for index, n in by_classic.items():
            classic[index] += n
            if index > slow_index:
                slow += n
        if outside:  # one by one, exactly (rare: see __init__), out of the zero bucket where add_indices put them
            bounds, cuts = self.bounds_ms, self.cuts
            moved = [t for t in times if classic_of[bisect_left(cuts, t)] is OUTSIDE]
            for t in moved:
                index = bisect_left(bounds, t)
                classic[index] += 1
                slow += index > slow_index
            histogram.zero_count -= len(moved)
            histogram.add_counts(Counter(native_index(t, self.schema) for t in moved), self.schema)
        return sum(times), slow

    def _add_few(
        self, times: list[float], positions: list[int], first: int, last: int, histogram: NativeHistogram,
        classic: list[int], slow_index: int,
    ) -> tuple[float, int]:
        """:meth:`add` of a small batch (up to :data:`~locust_metrics.native.FEW_INDICES`) whose table
        ``positions`` (one per response time, the smallest ``first``, the largest ``last``) all lie inside the
        table: one Python loop adds each response time to its native bucket (in the histogram's store, made to
        hold the batch's buckets first: :meth:`NativeHistogram.reserve`) and to its classic bucket. In a small
        batch most response times have a bucket of their own: counting them in C first (as :meth:`add` does
        otherwise) costs more than it saves (``docs/performance.md``, ninth session). The slow requests: the
        classic buckets above ``slow_index`` before and after."""
        native_of: Any = self._native_of[0]  # (ints at these positions)
        store, offset = histogram.reserve(native_of[first], native_of[last], self.schema)
        by = self.schema - histogram.schema  # (reserve may have lowered it)
        if by:
            native_of = self._native_table(by)
        classic_of = self._classic_of
        slow = sum(classic[slow_index + 1 :])
        for p in positions:
            store[native_of[p] - offset] += 1
            classic[classic_of[p]] += 1
        return sum(times), sum(classic[slow_index + 1 :]) - slow

    def _add_sorted(
        self, times: list[float], histogram: NativeHistogram, by: int, first: int, last: int, classic: list[int],
        slow_index: int,
    ) -> tuple[float, int]:
        """:meth:`add` of a batch with many more response times than table positions between its smallest
        (at ``first``) and its largest (at ``last``), all inside the table: sort a copy (C), ``bisect`` every
        cut of that range into it (C, per cut), and take the differences: Python steps only per position
        populated."""
        ordered = sorted(times)
        ends = list(map(bisect_right, repeat(ordered), self.cuts[first : last + 1]))
        counts = [ends[0], *map(sub, ends[1:], ends)]
        classic_of, native_of = self._classic_of, self._native_table(by)
        native: dict[int | None, int] = {}
        get = native.get
        slow = 0
        for position, n in zip(compress(range(first, last + 1), counts), filter(None, counts)):
            index = classic_of[position]
            classic[index] += n
            if index > slow_index:
                slow += n
            k = native_of[position]
            native[k] = get(k, 0) + n
        histogram.add_counts(native, histogram.schema)
        return sum(times), slow


__all__ = ["LOW_MS", "OUTSIDE", "TOP_MS", "BatchBucketer", "zero_limit_ms"]
