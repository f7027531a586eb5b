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
4. Concurrent scrapes share renders (:meth:`ScrapeRenderer.serve`): a scrape that arrives while a render
   of the same format and encoding is in flight waits for it and is answered the same bytes, so N
   scrapers at once cost about one render, not N renders whose slices queue behind each other on the
   loop. Its numbers are those of that render's snapshot: taken after the scrape arrived, or at most
   one render's time before; :attr:`ScrapeResponse.snapshot_time` says when, and is what scrapes are
   counted with (:class:`~locust_metrics.exposition.ScrapeTracker`), so a shared scrape whose snapshot
   predates the end of the test never counts as the final scrape. Renders of different formats run
   side by side, at most ``--metrics-max-concurrent-renders`` at once (each takes a slot; a scrape that
   shares a render takes none); a scrape that would need one more is answered at once with HTTP 503 and
   ``Retry-After``, as exporters do, never queued. Renders of different formats that start together
   also share one snapshot (one taken after they began).
5. One budget per loop turn (:class:`LoopPacer`): everything a scrape does in slices (folding,
   rendering, gzip, and answering the scrapes that shared a render) and, on our own endpoint, the start
   of every request's handling share about :data:`SLICE_S` of each turn of the event loop per render in
   flight (at least one). So 50 scrapers whose requests arrive (or are answered) in the same instant
   are spread over a few turns instead of holding one turn for all of them; renders of different
   formats (at most ``--metrics-max-concurrent-renders``) each progress about as fast as one alone. The
   snapshot, which cannot be split, waits for a turn in which none of that work ran yet.

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
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from prometheus_client import exposition as _text
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as _openmetrics
from prometheus_client.utils import floatToGoString

from . import families as F
from . import protobuf_scrape
from .exposition import LocustCollector, _Families, _status_label, exported_les
from .options import DEFAULT_MAX_CONCURRENT_RENDERS, flag
from .recorder import fold_records

if TYPE_CHECKING:  # pragma: no cover
    from .exposition import ScrapeTracker
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

SHARED_RENDER_TIMEOUT_S = 10.0
"""Longest wait, in **seconds**, of a scrape for the render it shares (Prometheus' default scrape timeout);
after it, the scrape is answered 503. A render at 500 names takes about 10-20 ms."""

RETRY_AFTER_S = 1
"""``Retry-After`` of a 503 answer, whole **seconds**."""

DRAIN_TIMEOUT_S = 2.0
"""Longest wait, in **seconds**, at exit for scrapes still being answered (:meth:`ScrapeRenderer.drain`);
short, as a second ``quit`` (SIGTERM) waits for the first one's final push, final scrape and this."""

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
_SEND_STEP = 1 << 16  # bytes of an answer sent between two looks at the loop's budget (~20-50 µs of sendall)


class FastPathUnavailable(Exception):
    """The fast renderer cannot produce this scrape exactly; the caller uses prometheus_client's encoder."""


class ScrapeRefused(Exception):
    """:meth:`ScrapeRenderer.respond` could not serve the scrape; ``response`` is its 503 or 500 answer."""

    def __init__(self, response: ScrapeResponse) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass
class ScrapeResponse:
    """The answer to one scrape, from :meth:`ScrapeRenderer.serve`.

    Attributes:
        status: the HTTP status line: ``"200 OK"``; ``"503 Service Unavailable"`` (the bound on concurrent
            renders was reached, or the shared render took longer than :data:`SHARED_RENDER_TIMEOUT_S`;
            with ``Retry-After``); ``"500 Internal Server Error"`` (the render this scrape shared failed;
            the scrape that rendered it got the error itself, which is logged).
        headers: ``Content-Type``, ``Content-Length`` (and ``Content-Encoding: gzip``, ``Retry-After``).
        body: bytes pieces to send in order (a WSGI iterable).
        snapshot_time: unix time, **seconds**, at which the served numbers were read (the snapshot of the
            render, shared or not); None when the scrape was not served (not 200): such an answer is no
            scrape.
        shared: True when the body is that of a render another scrape started.
    """

    status: str
    headers: list[tuple[str, str]]
    body: list[bytes]
    snapshot_time: float | None = None
    shared: bool = False


class _Render:
    """A render in flight that scrapes of the same format and encoding share (see :meth:`ScrapeRenderer.serve`)."""

    __slots__ = ("body", "snapshot_time", "done", "failed")

    def __init__(self) -> None:
        self.body: list[bytes] | None = None
        self.snapshot_time: float | None = None
        self.done: Any = None  # a gevent Event, made by the first scrape that waits
        self.failed = False


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
        natives: for a protobuf scrape, each endpoint's native histogram copied in the same instant (None
            where native histograms are off), in ``endpoints``' order; else None.
    """

    __slots__ = ("endpoints", "families", "request_families", "les", "le_keep", "label_pairs", "natives")

    def __init__(
        self,
        endpoints: list[tuple[Any, ...]],
        families: list[Metric],
        request_families: int,
        les: tuple[str, ...],
        label_pairs: tuple[tuple[str, str], ...],
        le_keep: list[int] | None = None,
        natives: list[Any] | None = None,
    ) -> None:
        self.natives = natives
        self.endpoints = endpoints
        self.families = families
        self.request_families = request_families
        self.les = les
        self.le_keep = le_keep
        self.label_pairs = label_pairs


class LoopPacer:
    """Shares each turn of the gevent loop among our work: about :attr:`budget_s` of it per turn, in all.

    Work that yields in slices asks :meth:`deadline` when to give the loop back. Work that arrives in
    bursts (many scrapes whose requests arrive, or whose shared render ends, at the same instant) calls
    :meth:`wait` before each piece: the first pieces of a loop turn go on at once, until the turn's budget
    is spent; the others queue (first come, first served) and are let through a few per later turn, in
    which pending I/O and timers (the requests of the load test) run first. A turn is told apart by the
    loop's iteration counter (``loop.iteration``; not by ``loop.now()``, which starting a timer updates).
    Only for greenlets on the gevent loop.

    Args:
        budget_s: the budget of one loop turn, **seconds** (:attr:`budget_s`, read when a turn starts;
            the renderer sets it to :data:`SLICE_S` per render in flight).
    """

    def __init__(self, budget_s: float = SLICE_S) -> None:
        self.budget_s = budget_s
        self._turn: int | None = None
        self._deadline = 0.0
        self._loop: Any = None
        self._queue: deque[Any] = deque()
        self._timer: Any = None

    def deadline(self) -> float:
        """The ``time.perf_counter()`` value at which this loop turn's budget is spent."""
        loop = self._loop
        if loop is None:
            import gevent

            loop = self._loop = gevent.get_hub().loop
        turn = loop.iteration
        if turn != self._turn:  # the first call of a new loop turn starts its budget
            self._turn = turn
            self._deadline = time.perf_counter() + self.budget_s
        return self._deadline

    @property
    def queued(self) -> int:
        """Greenlets waiting in :meth:`wait` now."""
        return len(self._queue)

    def fresh_turn(self, pause: Callable[[], None]) -> None:
        """Call ``pause`` until a loop turn in which none of our work ran yet (a few times at most), and start
        that turn's budget: for work that cannot be split (a snapshot), so that it does not come on top of a
        turn's budget spent by others, and the others wait for the next turn."""
        self.deadline()  # makes sure the loop is known and this turn counted as used
        for _ in range(_FRESH_TURN_TRIES):
            pause()
            if self._loop.iteration != self._turn:
                self.deadline()
                return

    def wait(self) -> None:
        """Return when this loop turn has budget left for one more piece of work: at once when it has and
        nobody is queued, else in a later turn, in the order of arrival (each turn lets one at least)."""
        deadline = self.deadline()
        if not self._queue and time.perf_counter() < deadline:
            return
        from gevent.hub import Waiter

        waiter = Waiter()
        self._queue.append(waiter)
        self._arm()
        waiter.get()

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = self._loop.timer(0.000001)  # one turn of the loop, as _gevent_pause
        if not self._timer.active:
            self._timer.start(self._release)

    def _release(self) -> None:
        """In the hub, at a later turn: let queued greenlets run, one after the other, while the turn's budget
        lasts (each runs until it blocks, then the hub comes back here); at least one per turn, so that the
        queue moves even when renders spend every turn's budget before this runs."""
        queue = self._queue
        if queue:
            self.deadline()
            queue.popleft().switch(None)
        while queue and time.perf_counter() < self.deadline():
            queue.popleft().switch(None)
        if queue:
            self._arm()


_FRESH_TURN_TRIES = 8  # pauses at most before an unsplittable piece of work goes on in a turn others used


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
        fast_scrapes: renders by the fast path; ``library_scrapes``: by prometheus_client (each serves one
            scrape, and the scrapes that shared it).
        shared_scrapes: scrapes answered with a render another scrape started.
        refused_scrapes: scrapes answered 503 (bound reached, or the shared render took too long).
        renders_in_flight: renders running now (each holds one of ``--metrics-max-concurrent-renders``).
        sending: answers being sent now (:meth:`paced`).
        pacer: the :class:`LoopPacer` that all of this renderer's work shares (our server's request
            handling too).
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
        self.shared_scrapes = 0
        self.refused_scrapes = 0
        self.renders_in_flight = 0
        self.sending = 0
        self._in_flight: dict[tuple[str, bool], _Render] = {}  # (format, gzip) -> the render scrapes share
        self.pacer = LoopPacer()
        self._snapshot: tuple[float, Snapshot] | None = None  # the latest (time, snapshot), while renders run
        self._protobuf = protobuf_scrape.ProtobufRenderer()  # protobuf scrapes (native histograms on)

    # ------------------------------------------------------------------ snapshot
    def snapshot(self, natives: bool = False) -> Snapshot:
        """Copy what a scrape serves, at one instant (no yielding; about 1 µs per endpoint; with ``natives``, the
        native histograms too, for a protobuf scrape: a few µs more per endpoint)."""
        exporter = self.exporter
        recorder = exporter.totals
        labels = dict(exporter.settings.labels)
        # copies only, no folding of the hot records (rendering folds the copies, in slices)
        endpoints = []
        for e in list(recorder.endpoints.values()):
            copy = e.copy_unfolded()
            endpoints.append((e.method, e.name, e.slow_ms, e.slow_index, tuple(e.failures.items()), *copy.totals, copy.hot))
        native_copies = [e.copy_native() for e in recorder.endpoints.values()] if natives else None
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
        return Snapshot(endpoints, templates + others, len(templates), tuple(les), pairs, keep, native_copies)

    def fold(self, pause: Callable[[], None] | None = None) -> None:
        """Fold the hot records of every endpoint into its totals, calling ``pause`` about every
        :data:`SLICE_S` seconds of work (the loop turn's budget, see :class:`LoopPacer`). Changes no exported
        value, so it may yield between endpoints."""
        clock, next_deadline = time.perf_counter, self.pacer.deadline
        deadline = next_deadline() if pause is not None else 0.0
        for endpoint in list(self.exporter.totals.endpoints.values()):
            endpoint.fold()
            if pause is not None and clock() >= deadline:
                pause()
                deadline = next_deadline()

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
        clock, next_deadline = time.perf_counter, self.pacer.deadline
        deadline = next_deadline() if pause is not None else 0.0

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
                deadline = next_deadline()
            elif not index % _FLUSH_EVERY:
                flush()  # bounded memory: lines become bytes pieces at least every few endpoints
        flush()
        return pieces

    # ------------------------------------------------------------------ serving
    @property
    def max_concurrent_renders(self) -> int:
        """The bound on renders in flight: the exporter's ``--metrics-max-concurrent-renders``."""
        settings = getattr(self.exporter, "settings", None)
        return int(getattr(settings, "max_concurrent_renders", DEFAULT_MAX_CONCURRENT_RENDERS))

    def serve(
        self,
        accept: str | None,
        accept_encoding: str | None = None,
        pause: Callable[[], None] | None = _gevent_pause,
        names: list[str] | None = None,
        *,
        fresh: bool = False,
        bounded: bool = True,
    ) -> ScrapeResponse:
        """Answer one scrape for the request's ``Accept`` / ``Accept-Encoding`` headers.

        * A render of the same format (:func:`negotiate`) and encoding (gzip or not) in flight: wait for it
          (at most :data:`SHARED_RENDER_TIMEOUT_S`, holding no slot) and answer its bytes, with this
          request's own ``Content-Type``. Its snapshot was taken after this scrape arrived, or at most one
          render's time before.
        * Else, when :attr:`max_concurrent_renders` renders are in flight already: 503 with ``Retry-After``
          at once.
        * Else render, holding a slot: fold, snapshot, render and gzip in slices (``pause`` between
          them, see :data:`SLICE_S`; ``None`` renders in one go), for every scrape that joins meanwhile.

        ``names`` (the ``name[]`` query parameters) restricts the output as prometheus_client does, and is
        served by prometheus_client, as are formats the fast path does not cover: such renders are never
        shared, and take a slot. When the fast rendering fails unexpectedly (logged once), prometheus_client
        renders instead, for the scrapes that share the render too. Errors of prometheus_client's own
        encoder propagate to the scrape that rendered; scrapes that shared its render get a 500 answer.
        Never blocks longer than :data:`SHARED_RENDER_TIMEOUT_S` when sharing.

        With ``fresh``, a render in flight is shared only if its numbers are read after this call began
        (a push: the final push after the test stopped must carry the final numbers); else this call
        renders itself. With ``bounded=False`` it is never refused by the bound (a push; it still counts as
        a render in flight while it renders).

        Returns a :class:`ScrapeResponse`; a 200 is a scrape, other answers are not.
        """
        started = time.time()
        if pause is not None:
            self.pacer.wait()  # a burst of scrapes arriving at once: a few per loop turn
        fmt, encoder, content_type = negotiate(accept)
        if protobuf_scrape.wanted(self.exporter.settings, accept):  # native histograms: client_golang's choice
            fmt, encoder, content_type = protobuf_scrape.PROTOBUF, protobuf_scrape.encode_registry, protobuf_scrape.CONTENT_TYPE
        gzipped = gzip_accepted(accept_encoding)
        key = (fmt, gzipped) if fmt is not None and not names else None
        if key is not None:
            render = self._in_flight.get(key)
            if render is not None and (not fresh or render.snapshot_time is None or render.snapshot_time >= started):
                return self._share(render, content_type, gzipped)
        if bounded and self.renders_in_flight >= self.max_concurrent_renders:
            self.refused_scrapes += 1
            return _unavailable(
                f"{self.renders_in_flight} renders are in flight, the most {flag('max_concurrent_renders')} allows"
            )
        render = _Render()
        self.renders_in_flight += 1
        self.pacer.budget_s = SLICE_S * self.renders_in_flight  # each render progresses as fast as alone
        if key is not None:
            self._in_flight[key] = render
        try:
            self._render(render, started, fmt, encoder, gzipped, names, pause)
        except BaseException:
            render.failed = True
            raise
        finally:
            self.renders_in_flight -= 1
            self.pacer.budget_s = SLICE_S * max(1, self.renders_in_flight)
            if not self.renders_in_flight:
                self._snapshot = None  # kept only while renders that may share it run
            if key is not None and self._in_flight.get(key) is render:
                del self._in_flight[key]
            if render.done is not None:
                render.done.set()
        return _served(render, content_type, gzipped, shared=False)

    def _share(self, render: _Render, content_type: str, gzipped: bool) -> ScrapeResponse:
        """Wait for ``render`` (bounded) and answer its body."""
        if render.done is None:
            from gevent.event import Event

            render.done = Event()
        if not render.done.wait(timeout=SHARED_RENDER_TIMEOUT_S):
            self.refused_scrapes += 1
            return _unavailable(f"the render this scrape shares took longer than {SHARED_RENDER_TIMEOUT_S:g}s")
        # every scrape that shared the render wakes now: they send their answers a few per loop turn
        self.pacer.wait()
        if render.failed or render.body is None:
            return _answer("500 Internal Server Error", "rendering failed; see the Locust log")
        self.shared_scrapes += 1
        return _served(render, content_type, gzipped, shared=True)

    def _render(
        self, render: _Render, started: float, fmt: str | None, encoder: Callable[[Any], bytes], gzipped: bool,
        names: list[str] | None, pause: Callable[[], None] | None,
    ) -> None:
        """Render one scrape that began at ``started`` (unix seconds) into ``render`` (body, snapshot time).

        A snapshot that a render of another format took after ``started`` is used as it is (renders of
        several formats that start together copy the data once); else a new one is taken.
        """
        body: list[bytes] | None = None
        if fmt is not None and not names:
            try:
                if pause is not None:  # fold in slices first, so that the snapshot has few hot records to copy
                    self.fold(pause)
                    self.pacer.fresh_turn(pause)  # the snapshot cannot be split: a turn of its own
                latest = self._snapshot
                protobuf = fmt == protobuf_scrape.PROTOBUF
                if latest is not None and latest[0] >= started and (not protobuf or latest[1].natives is not None):
                    render.snapshot_time, snapshot = latest
                else:
                    render.snapshot_time = time.time()
                    snapshot = self.snapshot(protobuf)  # one instant: nothing else runs while it is taken
                    self._snapshot = (render.snapshot_time, snapshot)
                if pause is not None:
                    pause()
                if protobuf:
                    body = self._protobuf.render_pieces(self, snapshot, dict(self.exporter.settings.labels), pause)
                else:
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
            render.snapshot_time = time.time()  # the collector reads everything at once, without yielding
            body = [encoder(registry)]
            self.library_scrapes += 1
        if gzipped:
            if pause is not None:
                pause()
            body = [compress(body, pause, next_deadline=self.pacer.deadline)]
        render.body = body

    def paced(self, body: Iterable[bytes], sent: Callable[[], None] | None = None) -> Iterator[bytes]:
        """``body``'s pieces for a server to send, each :data:`_SEND_STEP` bytes when this loop turn has budget
        left (:class:`LoopPacer`): the answers of many scrapes that shared a render go out a few per turn.

        ``sent`` is called once the server asked for more after the last piece, i.e. once it has sent the
        whole body (not when the client went away before). Counted in :attr:`sending` until then.
        """
        self.sending += 1
        return self._paced(body, sent)

    def _paced(self, body: Iterable[bytes], sent: Callable[[], None] | None) -> Iterator[bytes]:
        try:
            wait = self.pacer.wait
            unpaced = _SEND_STEP  # bytes handed to the server since the last wait: wait before the first piece
            for piece in body:
                if unpaced >= _SEND_STEP:
                    wait()
                    unpaced = 0
                unpaced += len(piece)
                yield piece
            if sent is not None:
                sent()
        finally:
            self.sending -= 1

    def drain(self, timeout: float = DRAIN_TIMEOUT_S) -> bool:
        """Wait (at most ``timeout`` seconds) until no scrape is being rendered, waiting for its turn or
        being sent; True when none is. Called at exit, after the final scrape: scrapes that arrived with it
        (another Prometheus of an HA pair, those that shared its render) still get their answers."""
        import gevent

        deadline = time.monotonic() + timeout
        while self.renders_in_flight or self.sending or self.pacer.queued:
            if time.monotonic() >= deadline:
                return False
            gevent.sleep(0.01)
        return True

    def respond(
        self,
        accept: str | None,
        accept_encoding: str | None = None,
        pause: Callable[[], None] | None = _gevent_pause,
        names: list[str] | None = None,
        *,
        fresh: bool = False,
        bounded: bool = True,
    ) -> tuple[list[tuple[str, str]], list[bytes]]:
        """:meth:`serve` for a caller that only takes a served scrape: returns ``(headers, body)``.

        Raises :class:`ScrapeRefused` (holding the 503 or 500 answer) when the scrape is not served.
        """
        response = self.serve(accept, accept_encoding, pause, names, fresh=fresh, bounded=bounded)
        if response.snapshot_time is None:
            raise ScrapeRefused(response)
        return response.headers, response.body

    def wsgi_app(self, tracker: ScrapeTracker | None = None) -> Callable[[dict, Callable], Iterable[bytes]]:
        """A WSGI app serving scrapes on every path, with prometheus_client's ``make_wsgi_app`` semantics.

        ``GET`` renders (any path but ``/favicon.ico``, which gets an empty 200) through :meth:`serve`,
        ``OPTIONS`` answers ``Allow``, other methods 405. With ``tracker``, every served scrape is recorded
        in it, once its answer was sent, with the time its numbers were read
        (:attr:`ScrapeResponse.snapshot_time`); 503 and 500 answers, ``OPTIONS``, 405 and the favicon are
        not scrapes.
        """

        def metrics_app(environ: dict, start_response: Callable) -> Iterable[bytes]:
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
                response = self.serve(environ.get("HTTP_ACCEPT"), environ.get("HTTP_ACCEPT_ENCODING"), names=names)
                start_response(response.status, response.headers)
                return self.paced(response.body, _count(tracker, response))
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


def _count(tracker: ScrapeTracker | None, response: ScrapeResponse) -> Callable[[], None] | None:
    """What records ``response`` in ``tracker`` once it was sent, or None when it is no scrape (not 200)."""
    snapshot_time = response.snapshot_time
    if tracker is None or snapshot_time is None:
        return None
    return lambda: tracker.scraped(snapshot_time)


def _answer(status: str, message: str, extra: list[tuple[str, str]] | None = None) -> ScrapeResponse:
    """A short text answer that is no scrape (503, 500)."""
    body = f"# HTTP {status}: {message}\n".encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), *(extra or []), ("Content-Length", str(len(body)))]
    return ScrapeResponse(status, headers, [body])


def _unavailable(message: str) -> ScrapeResponse:
    """503 with ``Retry-After``: what exporters answer when they are busy; Prometheus records a failed scrape."""
    return _answer(
        "503 Service Unavailable", f"{message}; retry after {RETRY_AFTER_S}s", [("Retry-After", str(RETRY_AFTER_S))]
    )


def _served(render: _Render, content_type: str, gzipped: bool, shared: bool) -> ScrapeResponse:
    """The 200 answer with ``render``'s body (a list of its own: the pieces are shared, never changed)."""
    body = list(render.body or ())
    headers = [("Content-Type", content_type)]
    if gzipped:
        headers.append(("Content-Encoding", "gzip"))
    headers.append(("Content-Length", str(sum(map(len, body)))))
    return ScrapeResponse("200 OK", headers, body, render.snapshot_time, shared)


__all__ = [
    "OPENMETRICS",
    "TEXT",
    "FastPathUnavailable",
    "LoopPacer",
    "ScrapeRefused",
    "ScrapeRenderer",
    "ScrapeResponse",
    "Snapshot",
    "compress",
    "escape_label_value",
    "gzip_accepted",
    "negotiate",
]
