"""The scrape's fast path: a consistent snapshot, rendered in slices that give the event loop back.

Our exporter runs inside the load generator, on gevent's single event loop. prometheus_client renders a
scrape in one go (``collect()`` builds a ``Sample`` per series, ``generate_latest`` formats them): at
500 endpoint names that holds the loop for 100 ms or more, and every request in flight during that time
gets those milliseconds added to its response time. This module serves the same bytes faster and
without stalling the loop:

1. :meth:`ScrapeRenderer.snapshot` copies what a scrape shows (per-endpoint accumulators, the runner,
   the resources, the test) without yielding; gevent being cooperative, no request event can run in
   between, so the copy is one consistent instant (about 1 ms at 500 names).
2. :meth:`ScrapeRenderer.render` formats the per-endpoint families from the copy with precomputed label
   strings (cached per endpoint), and every :data:`SLICE_S` seconds calls ``pause`` (one turn of the
   event loop) so request greenlets run. What is served is the snapshot's, whatever happens meanwhile.
3. The few small families (runner, users, workers, resources, test, versions, dropped names) are
   rendered by prometheus_client itself; so are HELP/TYPE lines, from the collector's own (empty)
   families. Names, documentation, types and label names therefore have one source of truth:
   :class:`~locust_metrics.exposition.LocustCollector`.

Formats: Prometheus text 0.0.4 and OpenMetrics 1.0, chosen from the ``Accept`` header with
prometheus_client's :func:`~prometheus_client.exposition.choose_encoder` (Prometheus asks for OpenMetrics
first); gzip when the ``Accept-Encoding`` header allows it, compressed in slices too. The output is
byte-for-byte prometheus_client's for the same data (``tests/test_rendering.py``): labels sorted by
name, values escaped (backslash, double quote, newline), numbers as ``floatToGoString``, counters'
``_total`` samples, ``# EOF``. Anything the fast path does not cover (another name escaping scheme
asked for, ``name[]`` filters, a family it does not know) is served by prometheus_client's encoder over
the registry, as before.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from prometheus_client import exposition as _text
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as _openmetrics
from prometheus_client.utils import floatToGoString

from . import families as F
from .exposition import LocustCollector, _Families, _status_label, exported_les
from .recorder import fold_records

if TYPE_CHECKING:  # pragma: no cover
    from .plugin import MetricsExporter

logger = logging.getLogger(__name__)

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


class _FamilyList(list):
    """A list of metric families with the ``collect()`` method prometheus_client's encoders call."""

    def collect(self) -> Iterator[Metric]:
        return iter(self)


# roles of the per-endpoint families (the keys of _render_endpoints' pieces), by family name, and the label
# names each carries after the constant labels; a family of the collector's that is not listed here disables
# the fast path
_ROLES = ("duration", "requests", "failures", "slow", "threshold", "size")
_ENDPOINT_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    family.name: (role, family.labels) for role, family in zip(_ROLES, F.ENDPOINT_FAMILIES)
}
_FLUSH_EVERY = 64  # endpoints


class FastPathUnavailable(Exception):
    """The fast renderer cannot produce this scrape exactly; the caller uses prometheus_client's encoder."""


class Snapshot:
    """One consistent copy of everything a scrape serves. Made by :meth:`ScrapeRenderer.snapshot`.

    Attributes:
        endpoints: one tuple per ``(method, name)`` entry, in the recorder's order:
            ``(method, name, slow_ms, slow_index, failures, buckets, sum_ms, slow, response_bytes, statuses,
            hot)``: the entry's totals and its hot records not folded yet (see
            :meth:`~locust_metrics.recorder.EndpointStats.copy_unfolded`), ``slow_ms`` and ``sum_ms`` in
            milliseconds, ``failures`` a tuple of ``(error, count)`` pairs.
        families: the collector's families in exposition order; the per-endpoint ones carry no samples
            (they are templates for HELP/TYPE and label names), the others are complete.
        request_families: how many of ``families``, from the start, are the collector's request families
            (built over no endpoint); the rest are the small ones (runner, resources, test).
        les: the ``le`` label values of the exported histogram buckets (``+Inf`` last).
        le_keep: the indices of the cumulative bucket counts that ``les`` show (None: all; hidden bounds, see
            :func:`~locust_metrics.exposition.exported_les`).
        label_pairs: the constant labels as ``(name, escaped value)`` pairs.
    """

    __slots__ = ("endpoints", "families", "request_families", "les", "le_keep", "label_pairs")

    def __init__(
        self,
        endpoints: list[tuple[Any, ...]],
        families: list[Metric],
        request_families: int,
        les: tuple[str, ...],
        label_pairs: tuple[tuple[str, str], ...],
        le_keep: list[int] | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.families = families
        self.request_families = request_families
        self.les = les
        self.le_keep = le_keep
        self.label_pairs = label_pairs


class _EndpointLabels:
    """Precomputed beginnings of every line of one endpoint (sample name and labels, up to the value)."""

    __slots__ = (
        "bucket_head", "bucket_tail", "count_head", "sum_head", "status_head", "status_tail", "error_head", "error_tail",
        "slow_head", "threshold_head", "size_head", "threshold_ms", "threshold_text",
    )


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
    return floatToGoString(value)


def _gevent_pause() -> None:
    """Give the gevent loop back for one iteration: pending I/O and due timers run, then we resume.

    A (1 µs) timer, not ``gevent.sleep(0)``: sleep(0) only queues a callback, and gevent runs queued
    callbacks back to back for up to its switch interval (5 ms) before it polls I/O, so a render that
    pauses with sleep(0) still holds requests in flight, measured at 15 ms per scrape at 500 names.
    """
    import gevent

    gevent.sleep(0.000001)


class ScrapeRenderer:
    """Serves an exporter's scrapes: snapshot, sliced rendering, content negotiation, gzip.

    Args:
        exporter: the :class:`~locust_metrics.plugin.MetricsExporter` whose ``totals`` recorder,
            runner, resources and test lifecycle are exported, and whose ``registry`` serves everything
            the fast path does not cover.

    Attributes:
        fast_scrapes: scrapes rendered by the fast path; ``library_scrapes``: by prometheus_client.
    """

    def __init__(self, exporter: MetricsExporter) -> None:
        self.exporter = exporter
        self.collector = LocustCollector(exporter)
        self.fast_scrapes = 0
        self.library_scrapes = 0
        self.fallbacks = 0  # scrapes the fast path could not render (served by prometheus_client instead)
        self._headers: dict[tuple[Any, ...], bytes] = {}
        self._labels: dict[tuple[str, str], _EndpointLabels] = {}
        self._labels_key: tuple[Any, ...] | None = None
        self._warned = False

    # ------------------------------------------------------------------ snapshot
    def snapshot(self) -> Snapshot:
        """Copy what a scrape serves, at one instant (no yielding; about 1 µs per endpoint)."""
        exporter = self.exporter
        recorder = exporter.totals
        labels = dict(exporter.settings.labels)
        # copies only, no folding of the hot records (rendering folds the copies, in slices)
        endpoints = []
        for e in list(recorder.endpoints.values()):
            copy = e.copy_unfolded()
            endpoints.append((e.method, e.name, e.slow_ms, e.slow_index, tuple(e.failures.items()), *copy.totals, copy.hot))
        # the collector's request families, built over no endpoint: empty templates (HELP, TYPE, label
        # names) and the complete small ones (dropped names)
        view = SimpleNamespace(
            totals=SimpleNamespace(bounds_ms=recorder.bounds_ms, endpoints={}, dropped=recorder.dropped),
            settings=exporter.settings,
        )
        families = _Families(labels)
        templates = list(self.collector._requests(families, view))
        others = list(self.collector.collect_other(families))
        les, keep = exported_les(recorder.bounds_ms, exporter.settings.hidden_bounds_ms())
        pairs = tuple((str(k), escape_label_value(str(v))) for k, v in labels.items())
        return Snapshot(endpoints, templates + others, len(templates), tuple(les), pairs, keep)

    def fold(self, pause: Callable[[], None] | None = None) -> None:
        """Fold the hot records of every endpoint into its totals, calling ``pause`` about every
        :data:`SLICE_S` seconds of work. Changes no exported value, so it may yield between endpoints."""
        clock = time.perf_counter
        deadline = clock() + SLICE_S
        for endpoint in list(self.exporter.totals.endpoints.values()):
            endpoint.fold()
            if pause is not None and clock() >= deadline:
                pause()
                deadline = clock() + SLICE_S

    # ------------------------------------------------------------------ rendering
    def render(self, snapshot: Snapshot, fmt: str, pause: Callable[[], None] | None = None) -> bytes:
        """The exposition of ``snapshot`` in ``fmt`` (:data:`TEXT` or :data:`OPENMETRICS`), UTF-8 bytes.

        With ``pause``, it is called about every :data:`SLICE_S` seconds of work (a callable that lets
        the event loop run, e.g. ``lambda: gevent.sleep(1e-6)``; the snapshot makes the result
        independent of what runs then).
        Raises :class:`FastPathUnavailable` when the collector has a per-endpoint family this renderer
        does not know (the caller then uses prometheus_client), ``ValueError`` for an unknown ``fmt``.
        """
        return b"".join(self.render_pieces(snapshot, fmt, pause))

    def render_pieces(self, snapshot: Snapshot, fmt: str, pause: Callable[[], None] | None = None) -> list[bytes]:
        """:meth:`render`'s output as consecutive pieces (no 1.5 MB join on the loop); same arguments and errors."""
        if fmt not in (TEXT, OPENMETRICS):
            raise ValueError(f"unknown exposition format {fmt!r}")
        plan: list[tuple[str, Any]] = []  # ("endpoint", (role, header)) or ("library", families)
        const_names = tuple(name for name, _ in snapshot.label_pairs)
        for index, family in enumerate(snapshot.families):
            if index < snapshot.request_families and not family.samples:
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
                plan.append(("library", _FamilyList([family])))

        pieces = self._render_endpoints(snapshot, pause)
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
            header = self._headers[key] = self._library(_FamilyList([family]), fmt)
        return header

    @staticmethod
    def _library(families: Iterable[Metric], fmt: str) -> bytes:
        """prometheus_client's rendering of ``families`` (without OpenMetrics' ``# EOF``)."""
        if fmt == OPENMETRICS:
            body = _openmetrics.generate_latest(families)
            return body[: -len(b"# EOF\n")] if body.endswith(b"# EOF\n") else body
        return _text.generate_latest(families)

    def _endpoint_labels(self, method: str, name: str, snapshot: Snapshot) -> _EndpointLabels:
        """Label strings of one endpoint, cached while constant labels and bucket bounds stay the same."""
        key = (snapshot.label_pairs, snapshot.les)
        if key != self._labels_key or len(self._labels) > 2 * len(snapshot.endpoints) + 64:
            self._labels = {}
            self._labels_key = key
        labels = self._labels.get((method, name))
        if labels is not None:
            return labels
        pairs = [*snapshot.label_pairs, ("method", escape_label_value(method)), ("name", escape_label_value(name))]
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

    def _render_endpoints(self, snapshot: Snapshot, pause: Callable[[], None] | None) -> dict[str, list[bytes]]:
        """Sample lines of the per-endpoint families, as UTF-8 pieces per role (see :data:`_ENDPOINT_FAMILIES`)."""
        lines: dict[str, list[str]] = {role: [] for role in _ROLES}
        pieces: dict[str, list[bytes]] = {role: [] for role in _ROLES}
        duration, requests, failures = lines["duration"], lines["requests"], lines["failures"]
        slow_lines, threshold_lines, size_lines = lines["slow"], lines["threshold"], lines["size"]
        extend, append = duration.extend, duration.append
        get_labels = self._labels.get
        number, go, status_label, escape = _number, floatToGoString, _status_label, escape_label_value
        les, keep = snapshot.les, snapshot.le_keep
        clock = time.perf_counter
        deadline = clock() + SLICE_S

        def flush() -> None:
            for role in _ROLES:
                if lines[role]:
                    pieces[role].append("".join(lines[role]).encode("utf-8"))
                    lines[role].clear()

        for index, (method, name, slow_ms, slow_index, errors, buckets, sum_ms, slow, size, statuses, hot) in enumerate(
            snapshot.endpoints, 1
        ):
            if hot:  # what the fast path recorded since the last fold
                by_status = dict(statuses)
                added = fold_records(hot, buckets, by_status, slow_index)
                buckets, sum_ms, size = added.buckets, sum_ms + added.sum_ms, size + added.response_bytes
                slow, statuses = slow + added.slow, by_status.items()
            labels = get_labels((method, name))
            if labels is None:
                labels = self._endpoint_labels(method, name, snapshot)
                get_labels = self._labels.get  # the cache may have been replaced
            cumulative = list(accumulate(buckets))
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
            append(f"{labels.sum_head}{go(sum_ms / 1000.0)}\n")
            if len(statuses) == 1:
                ((status, n),) = statuses
                requests.append(f"{labels.status_head}{status_label(status)}{labels.status_tail}{number(n)}\n")
            elif statuses:
                merged: dict[str, Any] = {}
                for status, n in statuses:
                    label = status_label(status)
                    merged[label] = merged.get(label, 0) + n
                for label, n in merged.items():
                    requests.append(f"{labels.status_head}{label}{labels.status_tail}{number(n)}\n")
            for error, n in errors:
                failures.append(f"{labels.error_head}{escape(error)}{labels.error_tail}{number(n)}\n")
            slow_lines.append(f"{labels.slow_head}{number(slow)}\n")
            if labels.threshold_ms != slow_ms:
                labels.threshold_ms, labels.threshold_text = slow_ms, go(slow_ms / 1000.0)
            threshold_lines.append(f"{labels.threshold_head}{labels.threshold_text}\n")
            size_lines.append(f"{labels.size_head}{number(size)}\n")
            if pause is not None and clock() >= deadline:
                flush()
                pause()
                deadline = clock() + SLICE_S
            elif not index % _FLUSH_EVERY:
                flush()  # bounded memory: lines become bytes pieces at least every few endpoints
        flush()
        return pieces

    # ------------------------------------------------------------------ serving
    def respond(
        self,
        accept: str | None,
        accept_encoding: str | None = None,
        pause: Callable[[], None] | None = _gevent_pause,
        names: list[str] | None = None,
    ) -> tuple[list[tuple[str, str]], list[bytes]]:
        """Render one scrape for the request's ``Accept`` / ``Accept-Encoding`` headers.

        Returns ``(headers, body)``: ``Content-Type``, ``Content-Length`` (and ``Content-Encoding: gzip``)
        headers, and the body as a list of bytes pieces to send in order (a WSGI iterable).

        ``pause`` is called between slices of work (default: one turn of the gevent loop, see
        :data:`SLICE_S`); ``None`` renders in one go. ``names`` (the ``name[]`` query parameters)
        restricts the output as prometheus_client does (and is served by prometheus_client). An
        unexpected error in the fast path is logged once and the scrape is served by prometheus_client
        instead; errors of prometheus_client's own encoder propagate.
        """
        fmt, encoder, content_type = negotiate(accept)
        body: list[bytes] | None = None
        if fmt is not None and not names:
            try:
                if pause is not None:  # fold in slices first, so that the snapshot has few hot records to copy
                    self.fold(pause)
                    pause()
                snapshot = self.snapshot()  # one instant: nothing else runs while it is taken
                if pause is not None:
                    pause()
                body = self.render_pieces(snapshot, fmt, pause)
                self.fast_scrapes += 1
            except FastPathUnavailable as exc:
                self._warn_once(f"locust-metrics: scrapes are rendered by prometheus_client ({exc})", False)
            except Exception:
                self._warn_once("locust-metrics: fast rendering failed; served by prometheus_client instead", True)
        if body is None:
            registry = self.exporter.registry
            if names:
                registry = registry.restricted_registry(names)
            body = [encoder(registry)]
            self.library_scrapes += 1
        headers = [("Content-Type", content_type)]
        if gzip_accepted(accept_encoding):
            if pause is not None:
                pause()
            body = [compress(body, pause)]
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(sum(map(len, body)))))
        return headers, body

    def wsgi_app(self) -> Callable[[dict, Callable], list[bytes]]:
        """A WSGI app serving scrapes on every path, with prometheus_client's ``make_wsgi_app`` semantics.

        ``GET`` renders (any path but ``/favicon.ico``, which gets an empty 200), ``OPTIONS`` answers
        ``Allow``, other methods 405.
        """

        def metrics_app(environ: dict, start_response: Callable) -> list[bytes]:
            method = environ.get("REQUEST_METHOD", "GET")
            if method == "OPTIONS":
                status, headers, body = "200 OK", [("Allow", "OPTIONS,GET")], [b""]
            elif method != "GET":
                status, headers = "405 Method Not Allowed", [("Allow", "OPTIONS,GET")]
                body = [f"# HTTP {status}: {method}; use OPTIONS or GET\n".encode()]
            elif environ.get("PATH_INFO") == "/favicon.ico":
                status, headers, body = "200 OK", [], [b""]
            else:
                names = parse_qs(environ.get("QUERY_STRING", "")).get("name[]")
                headers, body = self.respond(environ.get("HTTP_ACCEPT"), environ.get("HTTP_ACCEPT_ENCODING"), names=names)
                start_response("200 OK", headers)
                return body
            start_response(status, [*headers, ("Content-Length", str(len(body[0])))])
            return body

        return metrics_app

    def _warn_once(self, message: str, with_traceback: bool) -> None:
        self.fallbacks += 1
        if not self._warned:
            self._warned = True
            if with_traceback:
                logger.exception("%s (logged once)", message)
            else:
                logger.warning("%s (logged once)", message)


def compress(
    body: bytes | Iterable[bytes], pause: Callable[[], None] | None = None, level: int = GZIP_LEVEL
) -> bytes:
    """gzip ``body`` (bytes, or pieces in order) into one gzip member, as ``gzip.compress`` would.

    ``pause`` is called about every :data:`SLICE_S` seconds of work. ``level`` is zlib's (1-9).
    """
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    out: list[bytes] = []
    step = 1 << 16  # 64 KiB: about 0.15 ms at level 1
    clock = time.perf_counter
    deadline = clock() + SLICE_S
    for piece in [body] if isinstance(body, (bytes, bytearray)) else body:
        view = memoryview(piece)
        for start in range(0, len(view), step):
            out.append(compressor.compress(view[start : start + step]))
            if pause is not None and clock() >= deadline:
                pause()
                deadline = clock() + SLICE_S
    out.append(compressor.flush())
    return b"".join(out)


__all__ = [
    "OPENMETRICS",
    "TEXT",
    "FastPathUnavailable",
    "ScrapeRenderer",
    "Snapshot",
    "compress",
    "escape_label_value",
    "gzip_accepted",
    "negotiate",
]
