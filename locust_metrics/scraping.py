"""Serving scrapes: shared, bounded, paced renders of snapshots; our HTTP endpoint and the web UI's ``/metrics``.

Our exporter runs inside the load generator, on gevent's single event loop, so serving a scrape must never
hold the loop for long (every request in flight would get those milliseconds added to its response time):

1. :class:`ScrapeRenderer` folds the hot records in slices, then takes a snapshot
   (:func:`~locust_metrics.snapshot.take_snapshot`, one instant, no yielding) and renders it with the fast
   :class:`~locust_metrics.encoders.Encoder` in slices, gzipping in slices too. What is served is the
   snapshot's, whatever happens meanwhile.
2. Concurrent scrapes share renders (:meth:`ScrapeRenderer.serve`): a scrape that arrives while a render of
   the same format and encoding is in flight waits for it and is answered the same bytes, so N scrapers at
   once cost about one render. Its numbers are those of that render's snapshot, taken after the scrape
   arrived or at most one render's time before; :attr:`ScrapeResponse.snapshot_time` says when, and is what
   scrapes are counted with (:class:`ScrapeTracker`), so a shared scrape whose snapshot predates the end of
   the test never counts as the final scrape. Renders of different formats run side by side, at most
   ``--metrics-max-concurrent-renders`` at once (a scrape that shares a render takes no slot); a scrape that
   would need one more is answered at once with HTTP 503 and ``Retry-After``, as exporters do, never queued.
   Renders of different formats that start together share one snapshot (one taken after they began).
3. One budget per loop turn (:class:`LoopPacer`): everything a scrape does in slices (folding, rendering,
   gzip, answering the scrapes that shared a render) and, on our own endpoint, the start of every request's
   handling share about :data:`~locust_metrics.encoders.SLICE_S` of each turn of the event loop per render in
   flight (at least one). So 50 scrapers whose requests arrive in the same instant are spread over a few
   turns; the snapshot, which cannot be split, waits for a turn in which none of that work ran yet.
4. What the fast path does not cover (``name[]`` filters, another name escaping scheme, a failure of the fast
   encoder) is rendered by prometheus_client over the registry (:mod:`locust_metrics.collector`).
5. With native histograms on (``--metrics-native-histograms``), a scrape that client_golang would answer in
   protobuf (a Prometheus with native histograms on) is rendered by
   :class:`~locust_metrics.protobuf_scrape.ProtobufEncoder`, the same way, from a snapshot taken with the
   native histograms (``natives=True``); every other scrape is served exactly as with them off.

:class:`MetricsServer` serves it on our own port with gevent's WSGI server (Locust runs on gevent; no
threads); :func:`add_web_ui_route` adds ``/metrics`` to Locust's web UI (Flask). Every answered scrape is
counted (:class:`ScrapeTracker`), so the exporter can wait for one last scrape at exit.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import choose_encoder

from .encoders import OPENMETRICS, SLICE_S, TEXT, Encoder, FastPathUnavailable, compress, gzip_accepted, negotiate
from .options import DEFAULT_MAX_CONCURRENT_RENDERS, flag
from .recorder import RequestRecorder
from .snapshot import Snapshot

if TYPE_CHECKING:  # imported on the first protobuf scrape: google.protobuf costs some MB of memory
    from .protobuf_scrape import ProtobufEncoder

logger = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
"""A WSGI application: ``app(environ, start_response)`` returns the body's pieces."""

OWN_ENDPOINT = "own"
"""``ScrapeTracker`` key of our own HTTP endpoint (``--metrics-port``)."""

WEB_UI_ENDPOINT = "web_ui"
"""``ScrapeTracker`` key of the web UI's ``/metrics``."""

FINAL_SCRAPE_GAPS = 2.0
"""At exit, a periodic scraper's next scrape is waited for until its latest scrape's start plus this many times
the longest of its recent intervals (plus :data:`FINAL_SCRAPE_MARGIN_S`)."""

FINAL_SCRAPE_MARGIN_S = 1.0
"""Seconds added to the expected time of a periodic scraper's next scrape (scrape duration, jitter)."""


class ScrapeTracker:
    """Counts answered scrapes, per endpoint, and remembers when the recent ones started (unix time, seconds).

    The start, not the answer: a scrape reads its numbers after it starts, so one that started after
    the test stopped holds the final numbers; one that was answered after the stop may not (its
    snapshot can predate the last requests).

    Attributes:
        count: answered scrapes, all endpoints.
        last_time: start of the latest answered scrape (any endpoint), or None.
    """

    HISTORY = 5
    """Scrape start times kept per endpoint (so :meth:`longest_gap` looks at the last 4 intervals)."""

    def __init__(self) -> None:
        self.count = 0
        self.last_time: float | None = None
        self._starts: dict[str, list[float]] = {}

    def scraped(self, started: float | None = None, endpoint: str = OWN_ENDPOINT) -> None:
        """Record one answered scrape of ``endpoint`` that started at ``started`` (unix seconds; default: now).

        The fast path passes the time its numbers were read (the snapshot's; see :class:`ScrapeRenderer`): scrapes
        that shared one render pass the same time, and count as one instant in the recent history.
        """
        started = time.time() if started is None else started
        self.count += 1
        if self.last_time is None or started > self.last_time:
            self.last_time = started
        starts = self._starts.setdefault(endpoint, [])
        if started in starts:
            return  # a scrape that shared a render: the same instant, not a 0 s interval
        starts.append(started)
        if len(starts) > self.HISTORY:
            del starts[0]

    def scrapes(self, endpoint: str) -> int:
        """How many of the recent scrapes (at most :data:`HISTORY`) were of ``endpoint``."""
        return len(self._starts.get(endpoint, ()))

    def last(self, endpoint: str) -> float | None:
        """Start of the latest scrape of ``endpoint`` (unix seconds), or None."""
        starts = self._starts.get(endpoint)
        return max(starts) if starts else None

    def longest_gap(self, endpoint: str) -> float | None:
        """The longest time between two consecutive recent scrapes of ``endpoint``, seconds; None before the
        second scrape. For a scraper that scrapes periodically (Prometheus) this is its interval."""
        starts = sorted(self._starts.get(endpoint, ()))
        if len(starts) < 2:
            return None
        return max(b - a for a, b in zip(starts, starts[1:]))

    def wait_for_final(self, since: float, serving: dict[str, tuple[bool, str]], timeout: float) -> bool:
        """Wait (gevent) until a scrape that started at or after ``since`` (unix seconds: the last change, test
        stop or worker report) was answered, so the last numbers reach Prometheus. ``serving`` is
        ``{endpoint: (still serving, name for the log)}``. It waits only for a scraper that scrapes periodically
        and can still reach us:

        * an endpoint that still serves, scraped at least twice, so that a one-off ``curl`` never makes the
          process wait;
        * and no longer than that scraper's next scrape can take: until its latest scrape's start plus
          :data:`FINAL_SCRAPE_GAPS` times the longest of its recent intervals plus
          :data:`FINAL_SCRAPE_MARGIN_S`; a scraper already silent for longer is not waited for;
        * and never more than ``timeout`` seconds.

        Nothing is waited for when such a scrape was already answered. Logs one line when it waits, and one
        when the web UI that was being scraped is gone. Returns True when the final numbers were scraped (or
        there was nothing to wait for).
        """

        def final_scraped() -> bool:  # a scrape that started after the last change was answered
            return self.last_time is not None and self.last_time >= since

        if final_scraped():
            return True
        now = time.time()
        until: float | None = None  # unix time of the expected next scrape plus the margin, latest endpoint
        scrapers = []
        for endpoint, (still_serving, name) in serving.items():
            gap, last = self.longest_gap(endpoint), self.last(endpoint)
            if gap is None or last is None:
                continue  # never, or once: nobody scrapes this endpoint periodically
            if not still_serving:
                if endpoint == WEB_UI_ENDPOINT:
                    logger.info(
                        "locust-metrics: the web UI's /metrics was scraped, but Locust has stopped its web UI: "
                        "no final scrape (with --autoquit, give it at least the scrape interval)"
                    )
                continue
            expected = last + FINAL_SCRAPE_GAPS * gap + FINAL_SCRAPE_MARGIN_S
            if expected > now:
                until = expected if until is None else max(until, expected)
                scrapers.append(f"{name} (scraped every {gap:.3g}s)")
        if until is None or timeout <= 0:
            return until is None
        wait = min(timeout, until - now)
        logger.info(
            "locust-metrics: waiting up to %.3gs for a final scrape of %s (%s %gs)",
            wait, " and ".join(scrapers), flag("final_scrape_timeout"), timeout,
        )
        import gevent

        deadline = time.monotonic() + wait
        while not final_scraped() and time.monotonic() < deadline:
            gevent.sleep(0.05)
        return final_scraped()

SHARED_RENDER_TIMEOUT_S = 10.0
"""Longest wait, in **seconds**, of a scrape for the render it shares (Prometheus' default scrape timeout);
after it, the scrape is answered 503. A render at 500 names takes about 10-20 ms."""

RETRY_AFTER_S = 1
"""``Retry-After`` of a 503 answer, whole **seconds**."""

DRAIN_TIMEOUT_S = 2.0
"""Longest wait, in **seconds**, at exit for scrapes still being answered (:meth:`ScrapeRenderer.drain`);
short, as a second ``quit`` (SIGTERM) waits for the first one's final push, final scrape and this."""


_SEND_STEP = 1 << 16  # bytes of an answer sent between two looks at the loop's budget (~20-50 µs of sendall)


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
            self._timer = self._loop.timer(0.000001)  # one turn of the loop, as gevent_pause
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


def gevent_pause() -> None:
    """Give the gevent loop back for one iteration: pending I/O and due timers run, then we resume.

    A (1 µs) timer, not ``gevent.sleep(0)``: sleep(0) only queues a callback, and gevent runs queued
    callbacks back to back for up to its switch interval (5 ms) before it polls I/O, so a render that
    pauses with sleep(0) still holds requests in flight, measured at 15 ms per scrape at 500 names.
    """
    import gevent

    gevent.sleep(0.000001)


class SnapshotTaker(Protocol):
    """Takes a :class:`~locust_metrics.snapshot.Snapshot` now; with ``natives``, with the endpoints' native
    histograms (:func:`~locust_metrics.snapshot.take_snapshot`)."""

    def __call__(self, natives: bool = False) -> Snapshot: ...


class ScrapeRenderer:
    """Serves scrapes of snapshots: snapshot, sliced rendering, content negotiation, gzip, shared renders.

    Args:
        snapshot: takes a :class:`~locust_metrics.snapshot.Snapshot` (the exporter's ``snapshot``; kept as
            the attribute :attr:`snapshot`); called with ``natives=True`` only for a protobuf scrape (native
            histograms on: :class:`SnapshotTaker`).
        registry: the ``CollectorRegistry`` that serves what the fast path does not cover (``name[]``
            filters, other name escapings, fallbacks).
        recorder: returns the exported recorder, whose hot records a render folds in slices before its
            snapshot (so that the snapshot, which cannot be split, has few to copy).
        max_concurrent_renders: ``--metrics-max-concurrent-renders``.

    Attributes:
        fast_scrapes: renders by the fast path; ``library_scrapes``: by prometheus_client (each serves one
            scrape, and the scrapes that shared it).
        fallbacks: scrapes the fast path could not render (served by prometheus_client instead).
        shared_scrapes: scrapes answered with a render another scrape started.
        refused_scrapes: scrapes answered 503 (bound reached, or the shared render took too long).
        renders_in_flight: renders running now (each holds one of ``--metrics-max-concurrent-renders``).
        sending: answers being sent now (:meth:`paced`).
        encoder: the :class:`~locust_metrics.encoders.Encoder` of the fast path (its label caches).
        protobuf: the :class:`~locust_metrics.protobuf_scrape.ProtobufEncoder` of protobuf scrapes (asked
            for by a Prometheus with native histograms on, served while the exported recorder keeps native
            histograms: ``--metrics-native-histograms``).
        pacer: the :class:`LoopPacer` that all of this renderer's work shares (our server's request
            handling too).
        folded_at: when the last fold of every endpoint began (:meth:`fold` without ``at_least``: a scrape's
            or the exporter's fold loop's), ``time.monotonic()`` seconds; ``-inf`` before the first.
    """

    def __init__(
        self, snapshot: SnapshotTaker, registry: CollectorRegistry, recorder: Callable[[], RequestRecorder],
        max_concurrent_renders: int = DEFAULT_MAX_CONCURRENT_RENDERS,
    ) -> None:
        self.snapshot = snapshot
        self.registry = registry
        self.recorder = recorder
        self.max_concurrent_renders = max_concurrent_renders
        self.encoder = Encoder()
        self._protobuf: ProtobufEncoder | None = None
        self.fast_scrapes = 0
        self.library_scrapes = 0
        self.fallbacks = 0
        self._warned = False
        self.shared_scrapes = 0
        self.refused_scrapes = 0
        self.renders_in_flight = 0
        self.sending = 0
        self._in_flight: dict[tuple[str, bool], _Render] = {}  # (format, gzip) -> the render scrapes share
        self.pacer = LoopPacer()
        self._snapshot: tuple[float, Snapshot] | None = None  # the latest (time, snapshot), while renders run
        self.folded_at = -math.inf

    @property
    def protobuf(self) -> ProtobufEncoder:
        """The encoder of protobuf scrapes, made on the first one (with native histograms off, the protobuf
        library is never imported)."""
        if self._protobuf is None:
            from .protobuf_scrape import ProtobufEncoder

            self._protobuf = ProtobufEncoder()
        return self._protobuf

    def fold(
        self, pause: Callable[[], None] | None = None, recorder: RequestRecorder | None = None, at_least: int = 0
    ) -> None:
        """Fold the hot records of every endpoint of ``recorder`` (default: the exported one) into its totals,
        calling ``pause`` about every :data:`SLICE_S` seconds of work (the loop turn's budget, see
        :class:`LoopPacer`). Changes no exported value, so it may yield between endpoints. With ``at_least``
        (> 0), only the endpoints that kept that many response times or more for their native histogram
        (``EndpointStats.native_times``; none with native histograms off)."""
        clock, next_deadline = time.perf_counter, self.pacer.deadline
        deadline = next_deadline() if pause is not None else 0.0
        if at_least <= 0:
            self.folded_at = time.monotonic()
        for endpoint in list((recorder or self.recorder()).endpoints.values()):
            if at_least > 0 and len(endpoint.native_times or ()) < at_least:
                continue
            endpoint.fold()
            if pause is not None and clock() >= deadline:
                pause()
                deadline = next_deadline()

    def serve(
        self,
        accept: str | None,
        accept_encoding: str | None = None,
        pause: Callable[[], None] | None = gevent_pause,
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
        if self.recorder().native is not None:  # native histograms on: protobuf to a scraper that asks for it
            from . import protobuf_scrape

            if protobuf_scrape.wants(accept):
                fmt, encoder, content_type = protobuf_scrape.negotiated()
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
                # fold first (in slices, with pause), so that the snapshot has few hot records to copy
                self.fold(pause)
                if pause is not None:
                    self.pacer.fresh_turn(pause)  # the snapshot cannot be split: a turn of its own
                protobuf = fmt not in (TEXT, OPENMETRICS)  # protobuf_scrape.PROTOBUF
                latest = self._snapshot
                if latest is not None and latest[0] >= started and (latest[1].natives or not protobuf):
                    render.snapshot_time, snapshot = latest
                else:
                    render.snapshot_time = time.time()
                    # one instant: nothing else runs while it is taken
                    snapshot = self.snapshot(natives=True) if protobuf else self.snapshot()
                    self._snapshot = (render.snapshot_time, snapshot)
                if pause is not None:
                    pause()
                if protobuf:
                    body = self.protobuf.render_pieces(snapshot, pause, self.pacer.deadline)
                else:
                    body = self.encoder.render_pieces(snapshot, fmt, pause, self.pacer.deadline)
                self.fast_scrapes += 1
            except FastPathUnavailable as exc:
                self._warn_once(f"locust-metrics: scrapes are rendered by prometheus_client ({exc})", False)
            except Exception:
                self._warn_once("locust-metrics: fast rendering failed; served by prometheus_client instead", True)
        if body is None:
            registry: Any = self.registry.restricted_registry(names) if names else self.registry
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
        pause: Callable[[], None] | None = gevent_pause,
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

    def wsgi_app(self, tracker: ScrapeTracker | None = None) -> WSGIApp:
        """A WSGI app serving scrapes on every path, with prometheus_client's ``make_wsgi_app`` semantics.

        ``GET`` renders (any path but ``/favicon.ico``, which gets an empty 200) through :meth:`serve`,
        ``OPTIONS`` answers ``Allow``, other methods 405. With ``tracker``, every served scrape is recorded
        in it, once its answer was sent, with the time its numbers were read
        (:attr:`ScrapeResponse.snapshot_time`); 503 and 500 answers, ``OPTIONS``, 405 and the favicon are
        not scrapes.
        """

        def metrics_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
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


def tracking_wsgi_app(
    registry: CollectorRegistry, tracker: ScrapeTracker, renderer: ScrapeRenderer | None = None
) -> WSGIApp:
    """A WSGI app serving ``registry`` that records answered scrapes in ``tracker``.

    With ``renderer`` (a :class:`ScrapeRenderer`), its fast path (snapshot, sliced
    rendering that yields to the loop, concurrent scrapes sharing renders; a scrape is recorded with the
    time its numbers were read, and 503 answers are not scrapes); else prometheus_client's
    ``make_wsgi_app``. Same bytes either way.
    """
    if renderer is not None:
        return renderer.wsgi_app(tracker)
    app: WSGIApp = make_wsgi_app(registry)

    def metrics_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.time()
        body = app(environ, start_response)
        if environ.get("PATH_INFO", "/") != "/favicon.ico":
            tracker.scraped(started)
        return body

    return metrics_app


ALL_INTERFACES = frozenset({"", "0.0.0.0", "::", "*"})
"""Bind addresses that mean every interface."""


def _paced_handler(pacer: LoopPacer) -> type:
    """gevent's WSGI request handler, that starts handling a request only when ``pacer`` (a
    :class:`LoopPacer`) gives it a share of the loop turn.

    Requests that arrive at the same instant (50 scrapers at once) are otherwise all read, parsed and
    answered in one turn of the loop, about 0.1-0.2 ms each, before the load test's greenlets run again.
    The handler waits for a request's first bytes without parsing them, then for its share of a turn.
    """
    from gevent.pywsgi import WSGIHandler

    class PacedWSGIHandler(WSGIHandler):  # type: ignore[misc]  # gevent is untyped
        def handle_one_request(self) -> Any:  # gevent calls it once per request of a connection
            if not self.rfile.closed:
                try:
                    self.rfile.peek(1)  # wait for the request's first bytes (or the end), cooperatively
                except OSError:
                    pass  # the parse below sees it and ends the connection
                pacer.wait()
            return super().handle_one_request()

    return PacedWSGIHandler


class MetricsServer:
    """Our own HTTP endpoint: gevent's WSGI server serving ``registry`` on every path (``/metrics``).

    Raises ``OSError`` from :meth:`start` when the address cannot be bound (port taken, bad host).
    With ``ssl_context`` (an ``ssl.SSLContext``) it serves HTTPS; with ``auth`` (a
    :class:`~locust_metrics.security.BasicAuth`) requests without valid credentials get 401 (and do not
    count as scrapes).
    """

    def __init__(
        self, registry: CollectorRegistry, tracker: ScrapeTracker, host: str, port: int, renderer: ScrapeRenderer | None = None,
        ssl_context: Any = None, auth: Any = None,
    ) -> None:
        self.host = host
        self.port = port
        self._app = tracking_wsgi_app(registry, tracker, renderer)
        if auth is not None:
            self._app = auth.wsgi(self._app)
        self.ssl_context = ssl_context
        self._pacer: LoopPacer | None = getattr(renderer, "pacer", None)
        self._server: Any = None

    def start(self) -> None:
        """Bind and start serving in the background (greenlets)."""
        from gevent.pywsgi import WSGIServer

        extra: dict[str, Any] = {}
        if self._pacer is not None:
            extra["handler_class"] = _paced_handler(self._pacer)
        if self.ssl_context is not None:  # HTTPS, quiet about failed handshakes
            from .security import TLSWSGIServer

            self._server = TLSWSGIServer(
                (self.host, self.port), self._app, log=None, error_log=logger, ssl_context=self.ssl_context, **extra
            )
        else:
            self._server = WSGIServer((self.host, self.port), self._app, log=None, error_log=logger, **extra)
        self._server.start()

    @property
    def url(self) -> str:
        """The endpoint's URL as a user on this machine would type it: ``localhost`` when bound to all
        interfaces (``""``, ``0.0.0.0``, ``::``), else the bind address (IPv6 in brackets)."""
        host = "localhost" if self.host in ALL_INTERFACES else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.ssl_context is not None else 'http'}://{host}:{self.port}/metrics"

    @property
    def bind_address(self) -> str:
        """What the server listens on, e.g. ``0.0.0.0:9646 (all interfaces)`` or ``127.0.0.1:9646``."""
        host = "0.0.0.0" if self.host in ("", "*") else self.host
        address = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        return f"{address} (all interfaces)" if self.host in ALL_INTERFACES else address

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None:
            self._server.stop(timeout=1)
            self._server = None


def add_web_ui_route(
    web_ui: Any, registry: CollectorRegistry, tracker: ScrapeTracker, renderer: ScrapeRenderer | None = None,
    guard: Any = None,
) -> bool:
    """Serve ``registry`` at ``/metrics`` on Locust's web UI (Flask app). Returns False if it has one.

    The path follows Locust's ``--web-base-path`` (``/base/metrics``), like the web UI's own routes.

    ``guard`` (from :func:`locust_metrics.security.web_ui_guard`) runs first: a Response it returns (401)
    is answered instead, and is not counted as a scrape.

    The route honours the ``Accept`` header (OpenMetrics or text) like prometheus_client's own handlers.
    With ``renderer`` (a :class:`ScrapeRenderer`) it serves the fast path, and
    gzip when ``Accept-Encoding`` allows it; scrapes share renders with each other and with our own
    endpoint's, under the same bound (503 beyond it, not counted as a scrape), and are recorded once sent,
    with the time their numbers were read.
    """
    from flask import Response, request

    app = web_ui.app
    options = getattr(getattr(web_ui, "environment", None), "parsed_options", None)
    path = (getattr(options, "web_base_path", "") or "").rstrip("/") + "/metrics"  # under --web-base-path
    if any(rule.rule == path for rule in app.url_map.iter_rules()):
        return False

    def metrics() -> Any:  # a flask Response
        started = time.time()
        if guard is not None:
            denied = guard()
            if denied is not None:
                return denied
        if renderer is not None:  # the fast path (also gzip when asked)
            response = renderer.serve(
                request.headers.get("Accept"), request.headers.get("Accept-Encoding"),
                names=request.args.getlist("name[]") or None,
            )
            snapshot_time = response.snapshot_time  # None for a 503 (or 500): no scrape

            def sent() -> None:
                if snapshot_time is not None:
                    tracker.scraped(snapshot_time, WEB_UI_ENDPOINT)

            return Response(renderer.paced(response.body, sent), status=response.status, headers=response.headers)
        encoder, content_type = choose_encoder(request.headers.get("Accept") or "")
        body = encoder(registry)
        tracker.scraped(started, WEB_UI_ENDPOINT)
        return Response(body, content_type=content_type)

    app.add_url_rule(path, "locust_metrics", metrics)
    return True
