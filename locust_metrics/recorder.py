"""The data model: per-endpoint accumulators filled by Locust's ``request`` event (the hot path).

One :class:`EndpointStats` holds everything we export for one Locust statistics entry, i.e. one
``(method, name)`` pair: a non-cumulative histogram of response times, their sum, the slow count, the
response bytes, completed requests by status code and failures by error label.

The hot path, :meth:`RequestRecorder.record`, is a plain function called (through ``dispatch.py``) with
the six values of every ``request`` event that it reads, positionally: one dict lookup (the name's first method
and status; three for its others), one table lookup for the bucket (:func:`bucket_table`), a handful of
integer additions.
It takes no lock (gevent is cooperative: nothing else runs while it runs), touches no prometheus_client
object and formats no string. Everything
that is rare (a new endpoint, a new status code, a failure, bad input) is moved to slow paths. A scrape's
snapshot (``snapshot.py``) copies these objects; distributed mode (``distributed.py``) ships and
merges them.

Units: Locust reports response times in **milliseconds** (float or ``None``); we keep milliseconds here and
convert to seconds only when rendering.
"""

from __future__ import annotations

import functools
import logging
import math
import numbers
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from math import ceil
from operator import add
from typing import Any, NamedTuple

from .bucketing import BatchBucketer
from .native import NativeHistogram, check_wire, wire_pairs_ok
from .options import SlowThreshold, flag

logger = logging.getLogger(__name__)

OVERFLOW = "__overflow__"
"""Name (and error label) under which requests beyond the caps are counted."""

MAX_ERRORS_PER_ENDPOINT = 20
"""Most distinct ``error`` label values kept per endpoint; further ones count under :data:`OVERFLOW`."""

MAX_FAILURE_MESSAGE = 120
"""Failure messages are trimmed to this many characters in the ``error`` label."""

NO_STATUS = 0
"""Status key for requests with no response or no numeric status code (exported as ``"0"``)."""

MAX_NAME_LENGTH = 1000
"""Longest request name (and method) kept as a label, in characters; longer ones are cut to this length,
their last character replaced by ``"…"``. Names that share their first 999 characters share one entry
(totals stay exact; the ``name`` label no longer tells them apart)."""

MAX_RESPONSE_TIME_MS = 1e12
"""Largest response time, in **milliseconds** (about 31.7 years), put in the histogram as it is; a larger
finite value counts as this (``+Inf`` bucket, slow). Negative values count as 0; NaN and infinities are
not put in the histogram (the request is still counted)."""

BUCKET_TABLE_MIN_MS = 60_000
"""The bucket table (:func:`bucket_table`) covers response times up to at least this many milliseconds."""

BUCKET_TABLE_MAX_MS = 131_072
"""... and at most this many (about 1 MB of table); longer responses take the careful path."""

MAX_OVERFLOW_METHODS = 20
"""Most distinct methods of overflow entries (``name="__overflow__"``); further methods count under
``method="__overflow__"`` too, so hostile methods cannot grow memory either."""

try:  # Locust's exception for ``response.failure(...)`` in ``catch_response`` blocks
    from locust.exception import CatchResponseError
except ImportError:  # pragma: no cover - Locust always has it
    CatchResponseError = ()  # type: ignore[assignment,misc]


HOT_SUM, HOT_BYTES, HOT_NO_TIME, HOT_BUCKETS = 0, 1, 2, 3
"""Layout of a hot record (:attr:`EndpointStats.hot`): ``[sum_ms, response_bytes, requests without a
response time, bucket 0, bucket 1, ..., +Inf bucket]``; bucket ``i`` is at ``HOT_BUCKETS + i``. With native
histograms on, the listener keeps the response times instead (:attr:`EndpointStats.native_times`): its records
hold the bytes, the requests without a response time, and at :data:`HOT_TIMED` those with one; the sum and the
buckets stay 0 (the fold counts them from the times)."""

HOT_TIMED = HOT_BUCKETS
"""With native histograms on: where a hot record counts its status's requests with a response time."""

MAX_HOT_STATUSES = 8
"""Most status codes per endpoint with a hot record; requests with further status codes are exact too,
through the careful path (slower)."""


MAX_PENDING_NATIVE = 8
"""Most worker deltas of native histograms an entry keeps before adding them (:meth:`EndpointStats.add_native_wire`);
scrapes add them sooner."""


class Totals(NamedTuple):
    """The totals of one entry (or what hot records add to them). Times in **milliseconds**.

    Attributes:
        buckets: non-cumulative bucket counts, one per bound plus ``+Inf``.
        sum_ms: sum of the response times.
        slow: requests slower than the entry's threshold.
        response_bytes: sum of Locust's ``response_length`` (an int, or ``+Inf`` after an infinite one).
        statuses: ``{status code: completed requests}`` (a dict; in snapshots a tuple of pairs).
    """

    buckets: Sequence[int]
    sum_ms: float
    slow: int
    response_bytes: int | float
    statuses: Any


def plain_number(value: Any) -> int | float:
    """``value`` (a real number) as a plain number: an ``int`` or ``float`` as it is, any other as ``float``
    (``TypeError`` / ``ValueError`` if it has no float value). The careful path takes each odd value so
    (:meth:`RequestRecorder._number`); the fast path adds Locust's ``response_length`` and ``response_time`` as
    they come, so a hot record's sums keep an odd type (a ``Fraction`` stays a ``Fraction``, numpy's ``float64`` a
    ``float64``), and folds take the sums so."""
    if type(value) is int or type(value) is float:
        return value
    return float(value)


def fold_records(
    records: Iterable[tuple[int, Sequence[Any]]], buckets: Sequence[int], statuses: dict[int, int], slow_index: int
) -> Totals:
    """Add hot records (``(status, record)`` pairs, layout :data:`HOT_SUM`) to ``statuses`` (in place) and
    ``buckets``; returns :class:`Totals`: ``buckets`` plus theirs (a new list), and their sum, slow requests
    (in a bucket above ``slow_index``) and response bytes; ``statuses`` is the dict given, updated."""
    buckets = list(buckets)
    sum_ms, size, slow = 0.0, 0, 0
    for status, record in records:
        counts = record[HOT_BUCKETS:]
        statuses[status] = statuses.get(status, 0) + record[HOT_NO_TIME] + sum(counts)
        buckets = list(map(add, buckets, counts))
        sum_ms += record[HOT_SUM]
        size += record[HOT_BYTES]
        slow += sum(counts[slow_index + 1 :])
    return Totals(buckets, plain_number(sum_ms), slow, plain_number(size), statuses)


class NativeCopy(NamedTuple):
    """A copy of an entry's native histogram and of what is not added to it yet (:meth:`EndpointStats.copy_native`).

    Attributes:
        histogram: the native histogram as it was (shared with the entry until the entry changes it: read only).
        pending: worker deltas ``(schema, zero count, [index, count, ...])`` not added yet.
    """

    histogram: NativeHistogram
    pending: Sequence[tuple[int, int, list[int]]]

    def total(self) -> NativeHistogram:
        """:attr:`histogram` with the worker deltas added: a new histogram when there are any."""
        histogram = self.histogram
        if not self.pending:
            return histogram
        histogram = histogram.copy()
        for delta in self.pending:
            add_delta(histogram, delta)
        return histogram


def add_delta(histogram: NativeHistogram, delta: tuple[int, int, list[int]]) -> bool:
    """Add a worker's native delta ``(schema, zero count, [index, count, ...])``, its shape already checked
    (:meth:`EndpointStats.add_native_wire`), to ``histogram``; False, nothing added, when its pairs are not
    (:func:`~locust_metrics.native.wire_pairs_ok`: not from our workers). The caller counts that."""
    schema, zero_count, flat = delta
    if not wire_pairs_ok(schema, flat):
        return False
    histogram.add_counts(zip(flat[::2], flat[1::2]), schema)
    histogram.zero_count += zero_count
    return True


_warned_bad_delta = [False]


def log_bad_delta(delta: tuple[int, int, list[int]]) -> None:
    """Log, once per process, that a worker's native delta was left out as malformed (:func:`add_delta`)."""
    if not _warned_bad_delta[0]:
        _warned_bad_delta[0] = True
        logger.warning("locust-metrics: a worker's native histogram delta is malformed (%s); left out", str(delta)[:200])


class Unfolded(NamedTuple):
    """A copy of an entry's totals and of its hot records not folded yet (:meth:`EndpointStats.copy_unfolded`).

    Attributes:
        totals: :class:`Totals` with ``buckets`` a tuple and ``statuses`` a tuple of ``(status, n)`` pairs.
        hot: ``(status, record)`` pairs (records as tuples, layout :data:`HOT_SUM`) of the non-zero hot records.
    """

    totals: Totals
    hot: Sequence[tuple[int, Sequence[Any]]]


class EndpointStats:
    """Accumulators of one ``(method, name)`` statistics entry.

    The request listener's fast path writes only :attr:`hot`, one flat list per status code (one list
    subscript per counter, no dict update, no attribute store). The totals below do not include those
    records until they are folded in: read them through :meth:`folded` (or call :meth:`fold` first);
    :meth:`copy_unfolded` copies both without folding (a scrape's snapshot). The careful path and the
    master's merge fold, then write the totals.

    Attributes:
        method, name: Locust's request type and request name (the labels ``method`` and ``name``).
        buckets: list of ints, one per bucket upper bound plus the ``+Inf`` bucket; **not** cumulative:
            ``buckets[i]`` counts response times ``t`` with ``bounds[i-1] < t <= bounds[i]`` (ms).
        sum_ms: sum of response times, milliseconds.
        slow: requests with a response time greater than ``slow_ms``.
        slow_ms: this endpoint's slow threshold, milliseconds.
        slow_index: the bucket index of ``slow_ms`` among the recorder's bounds (the threshold is always a
            bound): a response time is slow exactly when its bucket index is greater (how :meth:`fold`
            counts the hot records' slow requests). The default, the last bucket, counts nothing as slow.
        response_bytes: sum of Locust's ``response_length``.
        statuses: ``{status code (int): completed requests}``; :data:`NO_STATUS` (0) = no numeric status.
        failures: ``{error label (str): failures}``.
        hot: ``{status code: hot record}`` (layout: :data:`HOT_SUM`), at most :data:`MAX_HOT_STATUSES`.
        native: the endpoint's :class:`~locust_metrics.native.NativeHistogram` (its totals; None when native
            histograms are off), holding the same observations as :attr:`buckets` once folded.
        native_times: with native histograms on, the response times (ms, floats) the request listener kept
            since the last fold, instead of bucketing them (the hot records count them per status, at
            :data:`HOT_TIMED`): a fold buckets them, classic and native at once, with :attr:`native_bucketer`,
            and starts a new list. None when native histograms are off.
        native_bucketer: the recorder's :class:`~locust_metrics.bucketing.BatchBucketer`, or None.
        snapshot: the immutable record a scrape's snapshot last made of this entry while its hot records were
            zero (``snapshot.EndpointSnapshot``), or None; every change of the totals or failures drops it, so
            the next snapshot reuses it only when nothing changed (no copy: the snapshot's cost stays with the
            entries that changed).
        native_snapshot: the same for a snapshot with the native histogram (a protobuf scrape's: the record
            holds :meth:`copy_native`'s copy); dropped by the same changes and by every change of the native
            histogram or of the worker deltas not added yet (:meth:`writable_native`, :meth:`add_native_wire`).
        on_bad_delta: called with each worker delta :meth:`fold_pending` leaves out as malformed (the recorder's
            count of faults, ``locust_metrics_errors_total{source="recorder"}``); None: only logged, once.
    """

    __slots__ = (
        "method", "name", "buckets", "sum_ms", "slow", "slow_ms", "slow_index", "response_bytes", "statuses",
        "failures", "hot", "native", "native_times", "native_bucketer", "native_pending", "native_shared",
        "snapshot", "native_snapshot", "on_bad_delta",
    )

    def __init__(
        self, method: str, name: str, n_buckets: int, slow_ms: float, slow_index: int | None = None,
        native: tuple[BatchBucketer, int] | None = None,
        on_bad_delta: Callable[[tuple[int, int, list[int]]], None] | None = None,
    ) -> None:
        self.method = method
        self.name = name
        self.buckets: list[int] = [0] * n_buckets
        self.sum_ms = 0.0
        self.slow = 0
        self.slow_ms = slow_ms
        self.slow_index = n_buckets - 1 if slow_index is None else slow_index
        self.response_bytes: int | float = 0
        self.statuses: dict[int, int] = {}
        self.failures: dict[str, int] = {}
        self.hot: dict[int, list[Any]] = {}
        # native histograms (``native``: (bucketer, max buckets), or None when off)
        self.native: NativeHistogram | None = None
        self.native_times: list[float] | None = None
        self.native_bucketer: BatchBucketer | None = None
        if native is not None:
            bucketer, max_buckets = native
            self.native = NativeHistogram(bucketer.schema, max_buckets)
            self.native_times = []
            self.native_bucketer = bucketer
        self.native_pending: list[tuple[int, int, list[int]]] = []  # worker deltas not added yet (add_native_wire)
        self.native_shared = False  # a snapshot holds self.native: copy it before changing it
        self.snapshot: Any = None
        self.native_snapshot: Any = None
        self.on_bad_delta = on_bad_delta  # called with each worker delta left out as malformed (None: logged once)

    def add_hot_record(self, status: int) -> None:
        """Give ``status`` a hot record (the fast path takes its next requests), up to :data:`MAX_HOT_STATUSES`."""
        if status not in self.hot and len(self.hot) < MAX_HOT_STATUSES:
            self.hot[status] = [0.0, 0, 0] + [0] * len(self.buckets)

    def fold(self) -> None:
        """Add the hot records into the totals and zero them, in place, and the worker deltas not added yet
        (:meth:`fold_pending`). Cheap when there are none."""
        self.fold_hot()
        if self.native_pending:
            self.fold_pending()

    def fold_hot(self) -> None:
        """Add the hot records into the totals and zero them, in place (with native histograms on, bucket the
        response times kept too). Cheap when they are zero."""
        if self.native_times is not None:
            self._fold_times()
            return
        dirty = [(status, record) for status, record in self.hot.items() if any(record)]
        if dirty:
            self.snapshot = self.native_snapshot = None
            added = fold_records(dirty, self.buckets, self.statuses, self.slow_index)
            self.buckets = list(added.buckets)
            self.sum_ms += added.sum_ms
            self.slow += added.slow
            self.response_bytes += added.response_bytes
            zero = [0.0, 0, 0] + [0] * len(self.buckets)
            for _, record in dirty:
                record[:] = zero

    def _fold_times(self) -> None:
        """:meth:`fold_hot` with native histograms on: the hot records' counts (layout :data:`HOT_TIMED`),
        then the response times kept, bucketed in one batch (classic buckets, their sum, slow requests, and
        the native histogram)."""
        changed = False
        statuses = self.statuses
        for status, record in self.hot.items():
            if record[HOT_BYTES] or record[HOT_NO_TIME] or record[HOT_TIMED]:
                changed = True
                statuses[status] = statuses.get(status, 0) + record[HOT_NO_TIME] + record[HOT_TIMED]
                self.response_bytes = plain_number(self.response_bytes + record[HOT_BYTES])
                record[HOT_BYTES] = record[HOT_NO_TIME] = record[HOT_TIMED] = 0
        times, bucketer = self.native_times, self.native_bucketer
        if times and bucketer is not None:
            self.native_times = []  # the listener reads the attribute per request
            sum_ms, slow = bucketer.add(times, self.writable_native(), self.buckets, self.slow_index)
            self.sum_ms += plain_number(sum_ms)  # (a float subclass's sum, e.g. numpy's)
            self.slow += slow
        if changed:
            self.snapshot = self.native_snapshot = None

    def copy_native(self) -> NativeCopy | None:
        """After a fold of the response times kept (as :meth:`copy_unfolded` does), a copy of the native
        histogram and of the worker deltas not added yet, without adding those (a scrape's snapshot: take it
        in the same instant as :meth:`copy_unfolded`; :meth:`NativeCopy.total` adds them later, in a slice of
        its own). None when native histograms are off."""
        if self.native is None:
            return None
        self.fold_hot()  # the response times kept: bucketed now (see copy_unfolded)
        self.native_shared = True  # copy on write: the next change copies it first (writable_native)
        return NativeCopy(self.native, tuple(self.native_pending))

    def writable_native(self) -> NativeHistogram:
        """The native histogram, to change: a copy of it first when a snapshot holds it (:meth:`copy_native`
        shares it instead of copying: a snapshot of 500 entries then takes no dict copy)."""
        native = self.native
        assert native is not None
        self.native_snapshot = None  # the kept record shows the histogram as it was
        if self.native_shared:
            native = self.native = native.copy()
            self.native_shared = False
        return native

    def add_native(self, time_ms: float) -> None:
        """Count one response time (ms, already sanitized by the careful path: finite, ``>= 0``) in the native
        histogram. Nothing when native histograms are off."""
        if self.native is not None:
            self.fold()  # the times kept first: the histogram sees the requests in order
            self.writable_native().observe(time_ms)

    def add_native_wire(self, wire: Any) -> None:
        """Take a worker's native delta (:meth:`NativeHistogram.to_wire` form), to be added at the next
        :meth:`fold` (a scrape folds endpoint by endpoint, giving the loop back between them): a report of 500
        endpoints holds some 70,000 (index, count) pairs, 15-50 ms of checks and dict updates, over the 5 ms a
        merge may hold the loop. Its shape is checked now (``ValueError``, nothing taken); its pairs when it is
        added (:func:`add_delta`). Nothing when native histograms are off here."""
        if self.native is None:
            return
        schema, zero_count, flat = check_wire(wire)
        if len(self.native_pending) >= MAX_PENDING_NATIVE:  # nobody scrapes: bounded memory, the merge pays
            self.fold_pending()
        self.native_pending.append((schema, zero_count, flat))
        self.native_snapshot = None

    def fold_pending(self) -> None:
        """Add the worker deltas taken by :meth:`add_native_wire` to the native histogram (exact, see
        :meth:`NativeHistogram.add_counts`)."""
        pending = self.native_pending
        if pending and self.native is not None:
            native = self.writable_native()
            self.native_pending = []
            for delta in pending:
                if not add_delta(native, delta):
                    (self.on_bad_delta or log_bad_delta)(delta)

    def copy_unfolded(self) -> Unfolded:
        """A copy of the totals and of the hot records, without folding: cheap enough for a scrape's
        snapshot (no list arithmetic), which folds the copies later, in slices (:func:`fold_records`). With
        native histograms on, a fold first (the response times kept are bucketed only by one): the hot
        records copied are then zero. A served scrape has folded in slices just before: few are left."""
        if self.native_times is not None:
            self.fold_hot()
        hot = self.hot
        # usually all zero (a served scrape folds first): then one C-level check, no comprehension frame
        dirty = [(status, tuple(record)) for status, record in hot.items() if any(record)] if any(map(any, hot.values())) else ()
        totals = Totals(tuple(self.buckets), self.sum_ms, self.slow, self.response_bytes, tuple(self.statuses.items()))
        return Unfolded(totals, dirty)

    def folded(self) -> Totals:
        """The totals after one fold, for readers of all of them. The containers are the live ones: copy to
        keep them."""
        self.fold()
        return Totals(self.buckets, self.sum_ms, self.slow, self.response_bytes, self.statuses)

    def add_totals(
        self, buckets: Iterable[int], sum_ms: float, slow: int, response_bytes: int | float,
        statuses: Iterable[tuple[int, int]], bucket_map: list[int] | None = None,
    ) -> int:
        """Add another entry's totals (a worker's, on the master); returns the requests added.

        ``bucket_map[i]`` is where bucket ``i`` of ``buckets`` goes in ours (None: the same bounds).
        """
        self.fold_hot()  # not the native deltas taken before: a scrape adds those, in slices
        self.snapshot = self.native_snapshot = None
        requests = 0
        own = self.statuses
        for status, n in statuses:
            own[status] = own.get(status, 0) + n
            requests += n
        if bucket_map is None:
            self.buckets = list(map(add, self.buckets, buckets))
        else:
            target = self.buckets
            for index, n in enumerate(buckets):
                target[bucket_map[index]] += n
        self.sum_ms += sum_ms
        self.slow += slow
        self.response_bytes += response_bytes
        return requests

    def add_request(self, status: int, index: int | None, time_ms: float | None, length: int | float) -> None:
        """Count one request in the totals (the careful path): ``index`` is the bucket of ``time_ms``
        (milliseconds), both None for a request without a response time."""
        self.fold()
        self.snapshot = self.native_snapshot = None
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.response_bytes += length
        if index is not None and time_ms is not None:
            self.buckets[index] += 1
            self.sum_ms += time_ms
            if time_ms > self.slow_ms:
                self.slow += 1

    @property
    def count(self) -> int:
        """Requests with a response time (the histogram's ``_count``), hot records included."""
        return sum(self.folded().buckets)

    @property
    def requests(self) -> int:
        """Completed requests, all statuses (Locust's "Request Count"), hot records included."""
        return sum(self.folded().statuses.values())

    def add_failure(self, label: str, n: int = 1) -> None:
        """Count ``n`` failures under ``label``, folding into :data:`OVERFLOW` past the per-endpoint cap."""
        self.snapshot = self.native_snapshot = None
        failures = self.failures
        if label in failures:
            failures[label] += n
        elif len(failures) < MAX_ERRORS_PER_ENDPOINT or label == OVERFLOW:
            failures[label] = n
        else:
            failures[OVERFLOW] = failures.get(OVERFLOW, 0) + n


def label_text(value: Any) -> str:
    """``value`` as a label value that every Prometheus parser accepts: ``str``, valid UTF-8, bounded.

    Non-strings are converted with ``str()`` (``"<TypeName>"`` if that raises); text longer than
    :data:`MAX_NAME_LENGTH` characters is cut to that length, ending in ``"…"``; lone surrogates (from
    undecodable bytes), which cannot be encoded as UTF-8, become ``"?"``. Idempotent; never raises.
    Quotes, backslashes, newlines and other characters need nothing here: the renderer escapes them.
    """
    if type(value) is not str:
        try:
            value = str(value)
            if type(value) is not str:  # a str subclass: keep its characters, drop its behaviour
                value = str.__str__(value)
        except Exception:
            value = f"<{_type_name(value)}>"
    text: str = value
    if len(text) > MAX_NAME_LENGTH:
        text = text[: MAX_NAME_LENGTH - 1] + "…"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _type_name(value: Any) -> str:
    try:
        name = type(value).__name__
        return name if type(name) is str and name.isascii() else label_text(name)
    except Exception:
        return "object"


def bucket_table(bounds_ms: tuple[float, ...], offset: int = 0) -> list[int | None]:
    """The hot path's bucket lookup: ``table[ceil(t)]`` is the bucket index of a response time ``t`` (ms).

    Args:
        bounds_ms: bucket upper bounds in milliseconds, ascending (``+Inf`` implicit).
        offset: added to every index (where bucket 0 is in the caller's list).

    Returns:
        A list of ``max(ceil(max bound), BUCKET_TABLE_MIN_MS) + 1`` entries, capped at
        :data:`BUCKET_TABLE_MAX_MS` + 1. Entry ``c`` is ``bisect_left(bounds_ms, t)`` for every ``t`` with
        ``c - 1 < t <= c`` (``t == 0`` for entry 0). That is exact when no bound lies strictly between
        ``c - 1`` and ``c``: every bound ``>= c`` is then ``>= t`` and every bound ``<= c - 1`` is ``< t``.
        Where a bound does (one that is not a whole millisecond, e.g. 2.5 ms), the entry is ``None`` and
        the caller bisects. One lookup replaces a ``bisect`` of about five comparisons. Times above the
        last entry are left to the caller too (``IndexError``).
    """
    top = min(max(ceil(bounds_ms[-1]) if bounds_ms else 0, BUCKET_TABLE_MIN_MS), BUCKET_TABLE_MAX_MS)
    table: list[int | None] = []
    for index, bound in enumerate(bounds_ms, offset):  # entries up to ceil(bound): this bucket or a lower one
        table += [index] * (min(ceil(bound), top) + 1 - len(table))
    table += [offset + len(bounds_ms)] * (top + 1 - len(table))
    for bound in bounds_ms:
        if bound != int(bound) and bound < top:
            table[ceil(bound)] = None
    return table


_HTTP_LABELS: dict[int, str] = {}


def error_label(status: Any, exception: Any) -> str:
    """The ``error`` label of a failed request. Never raises.

    ``"HTTP <code>"`` when the response has a numeric status >= 400; else the ``response.failure(...)``
    message (or a string exception), on one line, trimmed to :data:`MAX_FAILURE_MESSAGE` characters; else
    the exception's class name (e.g. ``"ConnectionRefusedError"``). Never the exception's full text, which
    often holds a URL. A message whose ``str()`` raises, or that is empty, gives the class name.
    """
    try:
        if type(status) is int and status >= 400:
            label = _HTTP_LABELS.get(status)
            if label is None:
                label = f"HTTP {status}"
                if len(_HTTP_LABELS) < 1000:  # cache the common ones; bounded against odd status codes
                    _HTTP_LABELS[status] = label
            return label
        if isinstance(exception, str):
            message = str.__str__(exception)
        elif isinstance(exception, CatchResponseError):
            message = str(exception)
        else:
            return _type_name(exception)
        if len(message) > 8 * MAX_FAILURE_MESSAGE:  # huge messages: only their start can reach the label
            message = message[: 8 * MAX_FAILURE_MESSAGE]
        message = " ".join(message.split())[:MAX_FAILURE_MESSAGE]  # one line: no newlines or runs of blanks
        return label_text(message) if message else _type_name(exception)
    except Exception:
        return _type_name(exception)


EVENT_DEFAULTS: dict[str, Any] = {
    "request_type": None, "name": None, "response_time": None, "response_length": 0, "response": None, "exception": None,
}
"""The keyword arguments of Locust's ``request`` event that we read, in the order in which
:meth:`RequestRecorder.record` takes their values, with the values taken for those an event is fired
without (Locust's own clients always pass all of them; ``context``, ``start_time`` and ``url`` are not
read)."""


class RequestRecorder:
    """Accumulates Locust ``request`` events per ``(method, name)``; bounded by ``max_names``.

    Args:
        bounds_ms: histogram bucket upper bounds in milliseconds, ascending (``+Inf`` implicit).
        default_slow_ms: slow threshold in milliseconds for names without a per-endpoint one.
        slow_thresholds: per-endpoint thresholds (exact names win over regexes, regexes in order).
        max_names: most distinct ``(method, name)`` entries; further ones count under
            ``name="__overflow__"`` (same method) and in :attr:`dropped`.
        native: ``(schema, max_buckets)`` to keep a native histogram per entry too
            (``--metrics-native-schema``, ``--metrics-native-max-buckets``), or None (off: the listener is
            the classic one, unchanged).

    Attributes:
        endpoints: ``{(method, name): EndpointStats}``, the exported entries plus overflow entries.
        dropped: requests folded into an overflow entry.
        record: the hot path, ``record(request_type, name, response_time, response_length, response,
            exception)``: records one ``request`` event given the values of its keywords in
            :data:`EVENT_DEFAULTS`, in that order, positionally.
        on_request: the same as a ``request`` event listener (keyword arguments). Add both to an
            Environment with ``dispatch.attach(environment.events.request, recorder.on_request,
            recorder.record)``: Locust's own ``EventHook`` then calls ``record`` directly, cheaper.
    """

    def __init__(
        self,
        bounds_ms: Iterable[float],
        default_slow_ms: float,
        slow_thresholds: Iterable[SlowThreshold] = (),
        max_names: int = 500,
        native: tuple[int, int] | None = None,
    ) -> None:
        self.configure(bounds_ms, default_slow_ms, slow_thresholds, max_names, native)
        self.endpoints: dict[tuple[str, str], EndpointStats] = {}
        # the hot path's index of the same entries, {name: {method: EndpointStats}}: two lookups with
        # str keys (hashes cached) are cheaper than building and hashing a (method, name) tuple
        self._by_name: dict[str, dict[str, EndpointStats]] = {}
        # the hot path's first lookup, {name: (method, status, hot record, EndpointStats)}: the hot record the
        # name's first request got (most requests of a name share its method and status), so that those take one
        # dict lookup and touch one tuple instead of two dicts, the entry and its dict of hot records; the others
        # look up _by_name as before. Set by the careful path for names it stores under their own name.
        self._first: dict[str, tuple[str, int, list[Any], EndpointStats]] = {}
        self.named = 0  # entries counted against max_names (overflow entries are not)
        self.overflow_entries = 0  # overflow entries (one per method, at most MAX_OVERFLOW_METHODS + 1)
        self.dropped = 0
        self._warned: set[str] = set()
        # requests our own code could not record (a bug), and worker native deltas left out as malformed: exported
        # in locust_metrics_errors_total{source="recorder"}
        self.errors = 0
        self.record, self.on_request = self._make_listener()

    def configure(
        self, bounds_ms: Iterable[float], default_slow_ms: float, slow_thresholds: Iterable[SlowThreshold], max_names: int,
        native: tuple[int, int] | None = None,
    ) -> None:
        """Set bucket bounds (ms), thresholds (ms), the name cap and native histograms (``(schema, max_buckets)``
        or None). Only valid while no endpoint exists. When ``native`` changes, :attr:`record` and
        :attr:`on_request` are made anew: the caller attaches the new ones (``dispatch.attach``)."""
        if getattr(self, "endpoints", None):
            raise RuntimeError("configure() needs an empty recorder")
        if native is not None:
            native = (int(native[0]), int(native[1]))
            NativeHistogram(*native)  # ValueError naming a bad schema or bound
        changed = native != getattr(self, "native", None)
        self.native = native
        if changed and hasattr(self, "record"):
            self.record, self.on_request = self._make_listener()
        self.default_slow_ms = float(default_slow_ms)
        thresholds = list(slow_thresholds)
        self._exact_thresholds = {t.pattern: t.ms for t in thresholds if not t.regex}
        self._regex_thresholds = [(re.compile(t.pattern), t.ms) for t in thresholds if t.regex]
        self.max_names = int(max_names)
        # every threshold is a bound (Settings.bounds_ms() adds them too), so slow = "bucket above it"
        bounds = {float(b) for b in bounds_ms} | {self.default_slow_ms} | {float(t.ms) for t in thresholds}
        self.bounds_ms = tuple(sorted(bounds))
        if not hasattr(self, "_bounds"):
            self._bounds: list[float] = []
            self._table: list[int | None] = []
        # in place: the listener holds these lists
        self._bounds[:] = self.bounds_ms
        self._table[:] = bucket_table(self.bounds_ms, offset=HOT_BUCKETS)
        self._bucketer = None if native is None else batch_bucketer(self.bounds_ms, native[0])

    # ------------------------------------------------------------------ the hot path
    def _make_listener(self) -> tuple[Callable[..., None], Callable[..., None]]:
        """Build the hot path: ``(record, on_request)``, closures over the endpoint index, the bounds and the
        bucket table.

        All three are mutated in place, never rebound (:meth:`clear` empties the dict, :meth:`configure`
        refills the lists), so the closures stay valid for the recorder's life. Locals instead of
        attribute lookups keep ``record`` at a few hundred nanoseconds per request. With native histograms on,
        :meth:`_make_native_listener` builds it instead (this one is then not used: off costs as before).
        """
        if self.native is not None:
            return self._make_native_listener()
        by_name = self._by_name
        first = self._first
        bounds = self._bounds
        table = self._table
        careful = self._record_carefully
        careful_failure = self._record_failure_carefully
        bisect = bisect_left
        label_of = error_label

        def record(
            request_type: Any, name: Any, response_time: Any, response_length: Any, response: Any, exception: Any
        ) -> None:
            """Record one Locust ``request`` event (locust-metrics), given the values of its keyword arguments
            in :data:`EVENT_DEFAULTS`, in that order (the defaults for those it was fired without). Never raises.

            ``response_time`` is in milliseconds, float or ``None`` (counted in requests, not in the
            histogram, as in Locust's statistics); ``response`` gives its ``status_code`` (0 when there is
            none); a request is a failure when ``exception`` is truthy, as in Locust. Anything unusual (a
            new name or status, a time or length out of range, odd types) is left, untouched, to the
            careful path, which records the request exactly once.
            """
            try:
                # everything that can raise comes before the first change, so that the careful path,
                # which then records the request, never records it twice
                method, code, counts, endpoint = first[name]  # KeyError (a new name): careful path
                status = 0 if response is None else response.status_code
                if method is not request_type or code != status:  # not the name's first method and status
                    endpoint = by_name[name][request_type]
                    counts = endpoint.hot[status]  # KeyError (a status without a record yet): careful path
                response_bytes = counts[1] + response_length  # 1: HOT_BYTES
                if response_time is None:
                    if not response_length >= 0:  # negative or NaN: the careful path counts it as 0
                        raise ValueError
                    counts[2] += 1  # HOT_NO_TIME
                    counts[1] = response_bytes
                else:
                    # a negative or NaN time or length: the careful path decides
                    if not (response_time >= 0.0 and response_length >= 0):
                        raise ValueError
                    # beyond the table (over 60 s by default: IndexError) or infinite (OverflowError):
                    # the careful path
                    index = table[ceil(response_time)]  # the bucket's index in the record
                    if index is None:  # a bound that is not a whole millisecond lies in this millisecond
                        index = bisect(bounds, response_time) + 3  # HOT_BUCKETS
                    sum_ms = counts[0] + response_time  # 0: HOT_SUM
                    # nothing below raises
                    counts[index] += 1
                    counts[0] = sum_ms
                    counts[1] = response_bytes
            except Exception:
                careful(request_type, name, response_time, response_length, response, exception)
                return
            try:  # the request is recorded: whatever happens now must not record it again
                if exception:
                    endpoint.add_failure(label_of(status, exception))
            except Exception:
                careful_failure(endpoint, exception)

        def on_request(
            request_type: Any = None, name: Any = None, response_time: Any = None, response_length: Any = 0,
            response: Any = None, exception: Any = None, *, context: Any = None, start_time: Any = None,
            url: Any = None, **_other: Any,
        ) -> None:
            """Locust ``request`` event listener (locust-metrics): :meth:`record` of its arguments (defaults:
            :data:`EVENT_DEFAULTS`). Never raises. Locust's own ``EventHook`` calls ``record`` in its place
            (``dispatch.py``); an ``EventHook`` we do not know calls this, as ``on_request(**kwargs)``.

            Built for that call: each keyword Locust passes is a parameter, matched by identity (an
            unknown keyword costs a string comparison with each parameter and a dict insertion, hence
            ``context``, ``start_time`` and ``url``, unread), and the body builds nothing.
            """
            record(request_type, name, response_time, response_length, response, exception)

        return record, on_request

    def _make_native_listener(self) -> tuple[Callable[..., None], Callable[..., None]]:
        """:meth:`_make_listener` for native histograms: the same checks, but no bucketing here. It appends the
        response time (as a float) to the endpoint's :attr:`EndpointStats.native_times` and counts the request
        in its status's hot record (:data:`HOT_TIMED`); a fold buckets the times, classic and native at once,
        in a batch (:class:`~locust_metrics.bucketing.BatchBucketer`). Times over
        :data:`MAX_RESPONSE_TIME_MS` take the careful path, which caps them."""
        by_name = self._by_name
        first = self._first
        careful = self._record_carefully
        careful_failure = self._record_failure_carefully
        label_of = error_label
        top = MAX_RESPONSE_TIME_MS

        def record(
            request_type: Any, name: Any, response_time: Any, response_length: Any, response: Any, exception: Any
        ) -> None:
            """Record one Locust ``request`` event (locust-metrics, with native histograms); see
            :meth:`RequestRecorder._make_listener`'s ``record``. Never raises."""
            try:
                # everything that can raise comes before the first change (see the classic listener)
                method, code, counts, endpoint = first[name]  # see the classic listener
                status = 0 if response is None else response.status_code
                if method is not request_type or code != status:
                    endpoint = by_name[name][request_type]
                    counts = endpoint.hot[status]
                response_bytes = counts[1] + response_length  # 1: HOT_BYTES
                if response_time is None:
                    if not response_length >= 0:
                        raise ValueError
                    counts[2] += 1  # HOT_NO_TIME
                    counts[1] = response_bytes
                else:
                    ms = response_time + 0.0  # a float (or TypeError: the careful path)
                    # negative, NaN, over MAX_RESPONSE_TIME_MS, or a bad length: the careful path
                    if not (0.0 <= ms <= top and response_length >= 0):
                        raise ValueError
                    times = endpoint.native_times
                    # nothing below raises (times is a list)
                    times.append(ms)  # type: ignore[union-attr]
                    counts[3] += 1  # HOT_TIMED
                    counts[1] = response_bytes
            except Exception:
                careful(request_type, name, response_time, response_length, response, exception)
                return
            try:
                if exception:
                    endpoint.add_failure(label_of(status, exception))
            except Exception:
                careful_failure(endpoint, exception)

        def on_request(
            request_type: Any = None, name: Any = None, response_time: Any = None, response_length: Any = 0,
            response: Any = None, exception: Any = None, *, context: Any = None, start_time: Any = None,
            url: Any = None, **_other: Any,
        ) -> None:
            """Locust ``request`` event listener (locust-metrics, with native histograms): :meth:`record` of its
            arguments. Never raises."""
            record(request_type, name, response_time, response_length, response, exception)

        return record, on_request

    # ------------------------------------------------------------------ slow paths
    def _record_carefully(
        self, request_type: Any, name: Any, response_time: Any, response_length: Any, response: Any, exception: Any
    ) -> None:
        """Record one request whose fast path did not complete (nothing of it was recorded yet).

        Handles first sightings (new endpoint, new status code) and sanitizes bad input (see
        :data:`MAX_NAME_LENGTH`, :data:`MAX_RESPONSE_TIME_MS`): names and
        methods that are not strings, too long or not encodable; response times that are negative (count
        as 0), huge (count as the maximum), NaN or infinite (not put in the histogram) or not numbers (not
        put in the histogram); missing, raising, non-numeric or non-3-digit status codes (status 0);
        lengths that are not numbers, NaN or negative (0; so the bytes counter never goes backwards; an
        infinite length makes it ``+Inf``). The request is always counted once in ``locust_requests_total``. Logs a
        warning once per kind of bad input. Never raises.
        """
        try:
            label = label_text(name)
            endpoint = self.endpoint(label_text(request_type), label)
            if endpoint.name != label:
                self.dropped += 1

            status = NO_STATUS
            if response is not None:
                try:
                    status = response.status_code
                    if type(status) is not int:
                        if isinstance(status, str) and 0 < len(status) <= 3 and status.isdigit():
                            status = int(status)
                        elif isinstance(status, int) and not isinstance(status, bool):
                            status = int(status)
                        else:
                            status = NO_STATUS
                except Exception:  # no status_code attribute, or a property that raises
                    status = NO_STATUS
                if not 100 <= status <= 999:  # HTTP status codes have three digits
                    status = NO_STATUS

            length = self._number(response_length, "response_length", label)
            if length is None or not length >= 0:  # not a number, NaN or negative
                if length is not None:
                    self._warn_once("response_length_bad", f"response_length {response_length!r} on {_short(label)}; counted as 0")
                length = 0

            time_ms = None if response_time is None else self._number(response_time, "response_time", label)
            if time_ms is not None:
                if time_ms != time_ms or time_ms in (math.inf, -math.inf):
                    self._warn_once("response_time_nan", f"response_time {response_time!r} on {_short(label)}; not put in the histogram")
                    time_ms = None
                elif time_ms < 0:
                    self._warn_once("response_time_negative", f"negative response_time {response_time!r} on {_short(label)}; counted as 0")
                    time_ms = 0.0
                elif time_ms > MAX_RESPONSE_TIME_MS:
                    self._warn_once("response_time_huge", f"response_time {response_time!r} ms on {_short(label)}; counted as {MAX_RESPONSE_TIME_MS:g}")
                    time_ms = MAX_RESPONSE_TIME_MS

            endpoint.add_request(status, None if time_ms is None else bisect_left(self.bounds_ms, time_ms), time_ms, length)
            if time_ms is not None and endpoint.native is not None:
                endpoint.add_native(time_ms)  # the same observation, handled as the classic histogram handles it
            endpoint.add_hot_record(status)  # the fast path takes this status from now on
            if (type(name) is str and type(request_type) is str and name == endpoint.name
                    and request_type == endpoint.method and name not in self._first and status in endpoint.hot):
                # the name's first hot record (a name stored as it came, not an overflowed or relabelled one)
                self._first[name] = (request_type, status, endpoint.hot[status], endpoint)
        except Exception:  # a bug of ours: never break the user's test
            self._log_bug_once(name)
            return
        try:
            if exception:
                endpoint.add_failure(error_label(status, exception))
        except Exception:
            self._record_failure_carefully(endpoint, exception)

    def _record_failure_carefully(self, endpoint: EndpointStats, exception: Any) -> None:
        """Count the failure of a request already recorded, when its label could not be made. Never raises."""
        try:
            endpoint.add_failure(_type_name(exception))
        except Exception:
            self._log_bug_once(endpoint.name)

    def _number(self, value: Any, kind: str, label: str) -> float | int | None:
        """``value`` as an int or float (any ``numbers.Real``; ``True`` is 1, as on the fast path), else None
        with a warning once."""
        if type(value) is int or type(value) is float:
            return value
        try:
            if isinstance(value, numbers.Real):
                return plain_number(value)
        except Exception:
            pass
        self._warn_once(kind, f"non-numeric {kind} {_short(value)} on {_short(label)}; {'counted as 0' if kind == 'response_length' else 'not put in the histogram'}")
        return None

    def _log_bug_once(self, name: Any) -> None:
        self.errors += 1
        if "bug" not in self._warned:
            self._warned.add("bug")
            logger.exception(
                "locust-metrics: could not record a request (name %s); the test goes on, further errors are not logged",
                _short(name),
            )

    def endpoint(self, method: str, name: str) -> EndpointStats:
        """The entry of ``(method, name)``, created on first sight; past ``max_names`` an overflow entry.

        ``method`` and ``name`` are made label-safe with :func:`label_text` first (a no-op for ordinary
        names). An overflowed name is not stored (memory stays bounded), so each of its requests takes the
        careful path, which adds it to :attr:`dropped`. Overflow entries are per method, for at most
        :data:`MAX_OVERFLOW_METHODS` methods, then ``("__overflow__", "__overflow__")``.
        """
        key = (method, name)
        endpoint = self.endpoints.get(key)
        if endpoint is not None:
            return endpoint
        method, name = label_text(method), label_text(name)
        endpoint = self.endpoints.get((method, name))
        if endpoint is not None:
            return endpoint
        if name == OVERFLOW:
            return self._overflow(method)
        if self.named >= self.max_names:
            if "max_names" not in self._warned:
                self._warn_once(
                    "max_names",
                    f"more than {self.max_names} distinct request names ({flag('max_names')}); "
                    f"further names, starting with {_short(name)}, are counted under name={OVERFLOW!r}",
                )
            return self._overflow(method)
        endpoint = self._new_endpoint(method, name)
        self.endpoints[(method, name)] = endpoint
        self._by_name.setdefault(name, {})[method] = endpoint
        self.named += 1
        return endpoint

    def _overflow(self, method: str) -> EndpointStats:
        endpoint = self.endpoints.get((method, OVERFLOW))
        if endpoint is not None:
            return endpoint
        if self.overflow_entries >= MAX_OVERFLOW_METHODS and method != OVERFLOW:
            return self._overflow(OVERFLOW)
        endpoint = self._new_endpoint(method, OVERFLOW)
        self.endpoints[(method, OVERFLOW)] = endpoint
        self._by_name.setdefault(OVERFLOW, {})[method] = endpoint
        self.overflow_entries += 1
        return endpoint

    def _new_endpoint(self, method: str, name: str) -> EndpointStats:
        slow_ms = self.slow_threshold_for(name)
        bucketer = self._bucketer
        return EndpointStats(method, name, len(self.bounds_ms) + 1, slow_ms, bisect_left(self.bounds_ms, slow_ms),
                             None if bucketer is None or self.native is None else (bucketer, self.native[1]),
                             self._bad_delta)

    def _bad_delta(self, delta: tuple[int, int, list[int]]) -> None:
        """A worker's native delta left out as malformed: one fault of the recorder (:attr:`errors`), logged once."""
        self.errors += 1
        log_bad_delta(delta)

    def clear(self) -> None:
        """Forget every entry and the dropped count (a worker, after shipping them to the master).

        The containers are emptied in place: the request listener holds them.
        """
        self.endpoints.clear()
        self._by_name.clear()
        self._first.clear()
        self.named = 0
        self.overflow_entries = 0
        self.dropped = 0

    def slow_threshold_for(self, name: str) -> float:
        """Slow threshold of a request name in milliseconds: exact match, else first regex, else default."""
        ms = self._exact_thresholds.get(name)
        if ms is not None:
            return ms
        for pattern, ms in self._regex_thresholds:
            if pattern.fullmatch(name):
                return ms
        return self.default_slow_ms

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning("locust-metrics: %s (logged once)", message)

    # ------------------------------------------------------------------ totals (for checks and tests)
    def totals(self) -> dict[str, int]:
        """Totals over all entries: ``requests``, ``failures``, ``count`` (with a response time), ``slow``."""
        return {
            "requests": sum(e.requests for e in self.endpoints.values()),
            "failures": sum(sum(e.failures.values()) for e in self.endpoints.values()),
            "count": sum(e.count for e in self.endpoints.values()),
            "slow": sum(e.folded().slow for e in self.endpoints.values()),
        }


@functools.lru_cache(maxsize=8)
def batch_bucketer(bounds_ms: tuple[float, ...], schema: int) -> BatchBucketer:
    """The :class:`~locust_metrics.bucketing.BatchBucketer` of these classic bounds (ms, a tuple) and native
    schema, built once per process (some 20 ms at schema 6) and shared by every recorder with those settings
    (the 8 used last kept)."""
    return BatchBucketer(bounds_ms, schema)


def _short(value: Any, limit: int = 80) -> str:
    """A bounded ``repr`` of ``value`` for log messages (names can be megabytes long)."""
    try:
        text = repr(value[: limit + 1] if isinstance(value, str) else value)
    except Exception:
        text = f"<{_type_name(value)}>"
    return text if len(text) <= limit + 2 else text[:limit] + "…"
