"""The wire formats: the fast text/OpenMetrics encoder of a snapshot, content negotiation, gzip.

prometheus_client renders a scrape in one go (``collect()`` builds a ``Sample`` per series, ``generate_latest``
formats them): at 500 endpoint names that holds the gevent loop for 100 ms or more, and every request in flight
gets those milliseconds added to its response time. :class:`Encoder` writes the same bytes from a
:class:`~locust_metrics.snapshot.Snapshot` faster, in slices that give the loop back:

* the per-endpoint families are written from the snapshot with precomputed label strings (cached per
  endpoint), calling ``pause`` (one turn of the event loop) every :data:`SLICE_S` seconds of work; what is
  written is the snapshot's, whatever runs meanwhile;
* everything else (HELP/TYPE lines, the few small families: runner, users, workers, resources, test, versions,
  thresholds, health) is rendered by prometheus_client from :mod:`locust_metrics.collector`'s families of the
  same snapshot, so names, help, types and label names have one source of truth (``families.py``).

Formats: Prometheus text 0.0.4 and OpenMetrics 1.0, chosen from the ``Accept`` header with prometheus_client's
:func:`~prometheus_client.exposition.choose_encoder` (:func:`negotiate`; Prometheus asks for OpenMetrics first);
gzip (:func:`compress`, in slices too) when ``Accept-Encoding`` allows it. The output is byte-for-byte
prometheus_client's for the same snapshot (``tests/test_rendering.py``): labels sorted by name, values escaped
(backslash, double quote, newline), numbers as ``floatToGoString``, counters' ``_total`` samples, ``# EOF``.
What the fast path does not cover (another name escaping scheme, ``name[]`` filters, a family it does not know:
:class:`FastPathUnavailable`) is served by prometheus_client over the registry (``scraping.py``).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable
from itertools import accumulate
from typing import Any

from prometheus_client import exposition as _text
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as _openmetrics
from prometheus_client.utils import floatToGoString

from . import families as F
from .collector import FamilyList, other_families, request_families, status_label
from .snapshot import Snapshot

TEXT = "text"
"""Prometheus text exposition format 0.0.4 (``text/plain; version=0.0.4``)."""

OPENMETRICS = "openmetrics"
"""OpenMetrics 1.0 text format (``application/openmetrics-text``)."""

SLICE_S = 0.001
"""Longest stretch, in **seconds**, that rendering or compressing runs before it gives the loop back."""

GZIP_LEVEL = 1
"""zlib level of gzip responses: 10x cheaper than prometheus_client's 9, about 1.4x the bytes."""


_SAFE_ESCAPINGS = {
    getattr(_openmetrics, name) for name in ("UNDERSCORES", "ALLOWUTF8", "VALUES") if hasattr(_openmetrics, name)
}
# with these name escaping schemes, legacy-valid metric and label names (all of ours) are written as they
# are; "dots" rewrites every underscore, which only prometheus_client's encoder does


def negotiate(accept_header: str | None) -> tuple[str | None, Callable[[Any], bytes], str]:
    """Choose the exposition format for an ``Accept`` header, exactly as prometheus_client does.

    Returns ``(fast_format, encoder, content_type)``: ``fast_format`` is :data:`TEXT`,
    :data:`OPENMETRICS` or ``None`` when only prometheus_client's ``encoder(registry)`` can produce what
    was asked for; ``content_type`` is the response's ``Content-Type``. Never raises.
    """
    encoder, content_type = _text.choose_encoder(accept_header or "")
    function = getattr(encoder, "func", encoder)
    keywords = getattr(encoder, "keywords", None) or {}
    escaping = keywords.get("escaping")
    if escaping is not None and escaping not in _SAFE_ESCAPINGS:
        return None, encoder, content_type
    if function is _openmetrics.generate_latest:
        return OPENMETRICS, encoder, content_type
    if function is _text.generate_latest:
        return TEXT, encoder, content_type
    return None, encoder, content_type


def gzip_accepted(accept_encoding_header: str | None) -> bool:
    """True when the ``Accept-Encoding`` header allows gzip (prometheus_client's rule)."""
    return _text.gzip_accepted(accept_encoding_header or "")


def escape_label_value(value: str) -> str:
    """A label value as written between double quotes: backslash, newline and double quote escaped."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


# roles of the per-endpoint families (the keys of _render_endpoints' pieces), by family name, and the label
# names each carries after the constant labels; a family of the collector's that is not listed here disables
# the fast path
_ROLES = ("duration", "requests", "failures", "slow", "threshold", "size")
_ENDPOINT_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    family.name: (role, family.labels) for role, family in zip(_ROLES, F.ENDPOINT_FAMILIES)
}
_FLUSH_EVERY = 16  # endpoints: pieces below glibc's 128 KB mmap threshold even with 20 long error labels each


class FastPathUnavailable(Exception):
    """The fast renderer cannot produce this scrape exactly; the caller uses prometheus_client's encoder."""


class _EndpointLabels:
    """Precomputed beginnings of every line of one endpoint (sample name and labels, up to the value)."""

    __slots__ = (
        "bucket_head", "bucket_tail", "count_head", "sum_head", "status_head", "status_tail", "error_head", "error_tail",
        "slow_head", "threshold_head", "size_head", "threshold_ms", "threshold_text",
    )
    bucket_head: str
    bucket_tail: str
    count_head: str
    sum_head: str
    status_head: str
    status_tail: str
    error_head: str
    error_tail: str
    slow_head: str
    threshold_head: str
    size_head: str
    threshold_ms: float | None
    threshold_text: str


def _label_block(pairs: list[tuple[str, str]], extra: str | None = None) -> tuple[str, str]:
    """Labels sorted by name as prometheus_client writes them, split around ``extra``'s value.

    ``pairs`` are ``(name, escaped value)``. Without ``extra``: ``('{a="x",b="y"} ', '')``. With it:
    ``('{a="x",extra="', '",b="y"} ')``, to be joined around the extra label's escaped value.
    """
    values = dict(pairs)
    names = sorted([*values, extra] if extra is not None else values)
    if extra is None:
        return "{" + ",".join(f'{k}="{values[k]}"' for k in names) + "} ", ""
    index = names.index(extra)
    before = ",".join(f'{k}="{values[k]}"' for k in names[:index])
    after = ",".join(f'{k}="{values[k]}"' for k in names[index + 1 :])
    head = "{" + before + ("," if before else "") + extra + '="'
    tail = '"' + ("," if after else "") + after + "} "
    return head, tail


def _number(value: Any) -> str:
    """``floatToGoString(value)``, with a shortcut for the common case of a small non-negative int."""
    if type(value) is int and 0 <= value < 1_000_000:
        return f"{value}.0"
    return _go(value)


_go: Callable[[float], str] = floatToGoString  # prometheus_client's, untyped


class Encoder:
    """The fast text 0.0.4 / OpenMetrics 1.0 encoder of snapshots: :meth:`render` is a function of the snapshot
    (and the format); the encoder keeps only caches of HELP/TYPE lines and of each endpoint's label strings."""

    def __init__(self) -> None:
        self._headers: dict[tuple[Any, ...], bytes] = {}
        self._labels: dict[tuple[str, str], _EndpointLabels] = {}
        self._labels_key: tuple[Any, ...] | None = None

    def render(
        self, snapshot: Snapshot, fmt: str, pause: Callable[[], None] | None = None,
        next_deadline: Callable[[], float] | None = None,
    ) -> bytes:
        """The exposition of ``snapshot`` in ``fmt`` (:data:`TEXT` or :data:`OPENMETRICS`), UTF-8 bytes:
        prometheus_client's bytes for :func:`~locust_metrics.collector.families` of the same snapshot.

        With ``pause``, it is called about every :data:`SLICE_S` seconds of work (a callable that lets
        the event loop run, e.g. ``lambda: gevent.sleep(1e-6)``; the snapshot makes the result
        independent of what runs then); with ``next_deadline`` (e.g. :meth:`LoopPacer.deadline`), whenever
        ``time.perf_counter()`` passes what it returned.
        Raises :class:`FastPathUnavailable` when the collector has a per-endpoint family this renderer
        does not know (the caller then uses prometheus_client), ``ValueError`` for an unknown ``fmt``.
        """
        return b"".join(self.render_pieces(snapshot, fmt, pause, next_deadline))

    def render_pieces(
        self, snapshot: Snapshot, fmt: str, pause: Callable[[], None] | None = None,
        next_deadline: Callable[[], float] | None = None,
    ) -> list[bytes]:
        """:meth:`render`'s output as consecutive pieces (no 1.5 MB join on the loop); same arguments and errors."""
        if fmt not in (TEXT, OPENMETRICS):
            raise ValueError(f"unknown exposition format {fmt!r}")
        plan: list[tuple[str, Any]] = []  # ("endpoint", (role, header)) or ("library", families)
        const_names = tuple(name for name, _ in snapshot.labels)
        templates = request_families(snapshot, samples=False)  # the per-endpoint ones without samples
        for index, family in enumerate(templates + other_families(snapshot)):
            if index < len(templates) and not family.samples:
                known = _ENDPOINT_FAMILIES.get(family.name)
                if known is None:
                    raise FastPathUnavailable(f"no fast rendering for the per-endpoint family {family.name}")
                role, own = known
                if tuple(getattr(family, "_labelnames", ())) != const_names + own:
                    raise FastPathUnavailable(f"{family.name} has labels {getattr(family, '_labelnames', None)}")
                plan.append(("endpoint", (role, self._header(family, fmt))))
            elif plan and plan[-1][0] == "library":
                plan[-1][1].append(family)
            else:
                plan.append(("library", FamilyList([family])))

        pairs = tuple((name, escape_label_value(value)) for name, value in snapshot.labels)
        pieces = self._render_endpoints(snapshot, pairs, pause, next_deadline)
        if pause is not None:
            pause()
        out: list[bytes] = []
        for kind, item in plan:
            if kind == "endpoint":
                role, header = item
                out.append(header)
                out.extend(pieces[role])
            else:
                out.append(self._library(item, fmt))
        if fmt == OPENMETRICS:
            out.append(b"# EOF\n")
        return out

    def _header(self, family: Metric, fmt: str) -> bytes:
        """HELP/TYPE (and UNIT) lines of a family without samples, as prometheus_client writes them (cached)."""
        key = (fmt, family.name, family.type, family.documentation, family.unit)
        header = self._headers.get(key)
        if header is None:
            header = self._headers[key] = self._library(FamilyList([family]), fmt)
        return header

    @staticmethod
    def _library(families: FamilyList, fmt: str) -> bytes:
        """prometheus_client's rendering of ``families`` (without OpenMetrics' ``# EOF``)."""
        if fmt == OPENMETRICS:
            body: bytes = _openmetrics.generate_latest(families)
            return body[: -len(b"# EOF\n")] if body.endswith(b"# EOF\n") else body
        return _text.generate_latest(families)

    def _endpoint_labels(
        self, method: str, name: str, snapshot: Snapshot, label_pairs: tuple[tuple[str, str], ...]
    ) -> _EndpointLabels:
        """Label strings of one endpoint, cached while constant labels (``(name, escaped value)`` pairs) and
        bucket bounds stay the same."""
        key = (label_pairs, snapshot.les)
        if key != self._labels_key or len(self._labels) > 2 * len(snapshot.endpoints) + 64:
            self._labels = {}
            self._labels_key = key
        labels = self._labels.get((method, name))
        if labels is not None:
            return labels
        pairs = [*label_pairs, ("method", escape_label_value(method)), ("name", escape_label_value(name))]
        labels = _EndpointLabels()
        base, _ = _label_block(pairs)
        le_head, le_tail = _label_block(pairs, "le")
        duration = F.REQUEST_DURATION
        labels.bucket_head, labels.bucket_tail = f"{duration.sample('_bucket')}{le_head}", le_tail
        labels.count_head = f"{duration.sample('_count')}{base}"
        labels.sum_head = f"{duration.sample('_sum')}{base}"
        head, labels.status_tail = _label_block(pairs, F.REQUESTS.labels[-1])
        labels.status_head = F.REQUESTS.sample() + head
        head, labels.error_tail = _label_block(pairs, F.FAILURES.labels[-1])
        labels.error_head = F.FAILURES.sample() + head
        labels.slow_head = f"{F.SLOW_REQUESTS.sample()}{base}"
        labels.threshold_head = f"{F.SLOW_THRESHOLD.sample()}{base}"
        labels.size_head = f"{F.RESPONSE_SIZE.sample()}{base}"
        labels.threshold_ms = None
        labels.threshold_text = ""
        self._labels[(method, name)] = labels
        return labels

    def _render_endpoints(
        self, snapshot: Snapshot, label_pairs: tuple[tuple[str, str], ...], pause: Callable[[], None] | None,
        next_deadline: Callable[[], float] | None,
    ) -> dict[str, list[bytes]]:
        """Sample lines of the per-endpoint families, as UTF-8 pieces per role (see :data:`_ENDPOINT_FAMILIES`)."""
        lines: dict[str, list[str]] = {role: [] for role in _ROLES}
        pieces: dict[str, list[bytes]] = {role: [] for role in _ROLES}
        duration, requests, failures = lines["duration"], lines["requests"], lines["failures"]
        slow_lines, threshold_lines, size_lines = lines["slow"], lines["threshold"], lines["size"]
        extend, append = duration.extend, duration.append
        get_labels = self._labels.get
        number, go, status_of, escape = _number, _go, status_label, escape_label_value
        les, keep = snapshot.les, snapshot.le_keep
        clock = time.perf_counter
        if next_deadline is None:
            def next_deadline() -> float:
                return clock() + SLICE_S
        deadline = next_deadline() if pause is not None else 0.0

        def flush() -> None:
            for role in _ROLES:
                if lines[role]:
                    pieces[role].append("".join(lines[role]).encode("utf-8"))
                    lines[role].clear()

        for index, endpoint in enumerate(snapshot.endpoints, 1):
            totals = endpoint.folded() if endpoint.hot else endpoint.totals  # hot: recorded since the last fold
            statuses, slow_ms = totals.statuses, endpoint.slow_ms
            labels = get_labels((endpoint.method, endpoint.name))
            if labels is None:
                labels = self._endpoint_labels(endpoint.method, endpoint.name, snapshot, label_pairs)
                get_labels = self._labels.get  # the cache may have been replaced
            cumulative = list(accumulate(totals.buckets))
            if keep is not None:
                cumulative = [cumulative[i] for i in keep]
            total = cumulative[-1]
            head, tail = labels.bucket_head, labels.bucket_tail
            if type(total) is int and total < 1_000_000:  # all ints (a float would make the sum float)
                extend([f"{head}{le}{tail}{n}.0\n" for le, n in zip(les, cumulative)])
                append(f"{labels.count_head}{total}.0\n")
            else:
                extend([f"{head}{le}{tail}{go(n)}\n" for le, n in zip(les, cumulative)])
                append(f"{labels.count_head}{go(total)}\n")
            append(f"{labels.sum_head}{go(totals.sum_ms / 1000.0)}\n")
            if len(statuses) == 1:
                ((status, n),) = statuses
                requests.append(f"{labels.status_head}{status_of(status)}{labels.status_tail}{number(n)}\n")
            elif statuses:
                merged: dict[str, Any] = {}
                for status, n in statuses:
                    label = status_of(status)
                    merged[label] = merged.get(label, 0) + n
                for label, n in merged.items():
                    requests.append(f"{labels.status_head}{label}{labels.status_tail}{number(n)}\n")
            for error, n in endpoint.failures:
                failures.append(f"{labels.error_head}{escape(error)}{labels.error_tail}{number(n)}\n")
            slow_lines.append(f"{labels.slow_head}{number(totals.slow)}\n")
            if labels.threshold_ms != slow_ms:
                labels.threshold_ms, labels.threshold_text = slow_ms, go(slow_ms / 1000.0)
            threshold_lines.append(f"{labels.threshold_head}{labels.threshold_text}\n")
            size_lines.append(f"{labels.size_head}{number(totals.response_bytes)}\n")
            if pause is not None and clock() >= deadline:
                flush()
                pause()
                deadline = next_deadline()
            elif not index % _FLUSH_EVERY:
                flush()  # bounded memory: lines become bytes pieces at least every few endpoints
        flush()
        return pieces


def compress(
    body: bytes | Iterable[bytes], pause: Callable[[], None] | None = None, level: int = GZIP_LEVEL,
    next_deadline: Callable[[], float] | None = None,
) -> bytes:
    """gzip ``body`` (bytes, or pieces in order) into one gzip member, as ``gzip.compress`` would.

    ``pause`` is called about every :data:`SLICE_S` seconds of work; with ``next_deadline`` (e.g.
    :meth:`LoopPacer.deadline`), whenever ``time.perf_counter()`` passes what it returned (asked at the
    start and after each pause). ``level`` is zlib's (1-9).
    """
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    out: list[bytes] = []
    step = 1 << 16  # 64 KiB: about 0.15 ms at level 1
    clock = time.perf_counter
    if next_deadline is None:
        def next_deadline() -> float:
            return clock() + SLICE_S
    deadline = next_deadline() if pause is not None else 0.0
    for piece in [body] if isinstance(body, (bytes, bytearray)) else body:
        view = memoryview(piece)
        for start in range(0, len(view), step):
            out.append(compressor.compress(view[start : start + step]))
            if pause is not None and clock() >= deadline:
                pause()
                deadline = next_deadline()
    out.append(compressor.flush())
    return b"".join(out)

__all__ = [
    "GZIP_LEVEL",
    "OPENMETRICS",
    "SLICE_S",
    "TEXT",
    "Encoder",
    "FastPathUnavailable",
    "compress",
    "escape_label_value",
    "gzip_accepted",
    "negotiate",
]
