"""Rendering and serving: turn the recorder's accumulators into Prometheus metric families, and serve them.

* :class:`LocustCollector` is a prometheus_client custom collector: at scrape time it reads the
  :class:`~locust_metrics.recorder.RequestRecorder`, the runner and the resource samples and yields
  metric families. prometheus_client does the wire formats (text 0.0.4, OpenMetrics, gzip) for anyone
  serving the registry; our own endpoints use the faster, loop-friendly renderer of ``rendering.py``.
* :class:`MetricsServer` serves a registry on our own port with gevent's WSGI server (Locust runs on
  gevent; no threads).
* :func:`add_web_ui_route` adds ``/metrics`` to Locust's web UI (Flask).

Every scrape is counted (:class:`ScrapeTracker`), so the exporter can wait for one last scrape at exit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    Metric,
)
from prometheus_client.utils import floatToGoString

from . import families as F
from .families import Family

if TYPE_CHECKING:  # pragma: no cover
    from .exporter import MetricsExporter

logger = logging.getLogger(__name__)

RUNNER_STATES = ("ready", "spawning", "running", "cleanup", "stopping", "stopped", "missing")
"""Locust's runner states (``locust.runners.STATE_*``), all exported by ``locust_runner_state``."""

WORKER_STATES = ("ready", "spawning", "running", "missing")
"""Worker states counted by ``locust_workers`` on a master."""


OWN_ENDPOINT = "own"
"""``ScrapeTracker`` key of our own HTTP endpoint (``--metrics-port``)."""

WEB_UI_ENDPOINT = "web_ui"
"""``ScrapeTracker`` key of the web UI's ``/metrics``."""


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

        The fast path passes the time its numbers were read (the snapshot's; see ``rendering.py``): scrapes
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


class _Families:
    """Builds metric families whose samples all carry the constant labels first."""

    def __init__(self, const_labels: dict[str, str]) -> None:
        self.names = list(const_labels)
        self.values = list(const_labels.values())

    def make(self, family: Family) -> Any:
        """An empty prometheus_client metric family of ``family`` (see :mod:`locust_metrics.families`)."""
        return family.metric(self.names)

    def labels(self, *values: str) -> list[str]:
        return self.values + list(values)


def exported_les(bounds_ms: tuple[float, ...], hidden: frozenset[float] = frozenset()) -> tuple[list[str], list[int] | None]:
    """The ``le`` values of the exported buckets (``+Inf`` last), and the indices of the recorder's cumulative
    counts they show (None: all). Hidden bounds (:meth:`~locust_metrics.options.Settings.hidden_bounds_ms`)
    are recorded, not exported: leaving a cumulative count out changes no other one."""
    les = [floatToGoString(ms / 1000.0) for ms in bounds_ms if ms not in hidden] + ["+Inf"]
    if not hidden or len(les) == len(bounds_ms) + 1:
        return les, None
    return les, [i for i, ms in enumerate(bounds_ms) if ms not in hidden] + [len(bounds_ms)]


def _status_label(status: int) -> str:
    return str(status) if 100 <= status <= 999 else "0"


class LocustCollector:
    """prometheus_client collector of one exporter: everything in the README's metrics table.

    ``collect()`` runs at scrape time, on the gevent loop, without yielding: it reads one consistent
    snapshot (no request event can run in between).
    """

    def __init__(self, exporter: MetricsExporter) -> None:
        self.exporter = exporter

    def describe(self) -> list[Metric]:
        """Nothing to pre-declare (names are fixed; registering must not render)."""
        return []

    def collect(self) -> Iterator[Metric]:
        exporter = self.exporter
        f = _Families(dict(exporter.settings.labels))
        yield from self._requests(f, exporter)
        yield from self.collect_other(f)

    def collect_other(self, f: _Families | None = None) -> Iterator[Metric]:
        """The families that do not come from the recorder: runner, users, workers, resources, test, versions.

        A few dozen series. The fast scrape path (``rendering.py``) snapshots these as they are and
        renders the per-endpoint families from ``_requests`` itself.
        """
        exporter = self.exporter
        f = f or _Families(dict(exporter.settings.labels))
        for section in (self._runner, self._nodes, self._test, self._thresholds):
            yield from _section(section, f, exporter)
        yield from self._health(f, exporter)

    # ------------------------------------------------------------------ requests
    def _requests(self, f: _Families, exporter: MetricsExporter) -> Iterator[Metric]:
        recorder = exporter.totals
        les, keep = exported_les(recorder.bounds_ms, exporter.settings.hidden_bounds_ms())
        duration = f.make(F.REQUEST_DURATION)
        requests = f.make(F.REQUESTS)
        failures = f.make(F.FAILURES)
        slow = f.make(F.SLOW_REQUESTS)
        threshold = f.make(F.SLOW_THRESHOLD)
        size = f.make(F.RESPONSE_SIZE)
        for endpoint in list(recorder.endpoints.values()):
            labels = f.labels(endpoint.method, endpoint.name)
            buckets, sum_ms, slow_requests, response_bytes, by_status = endpoint.folded()  # Totals
            cumulative = list(accumulate(buckets))
            if keep is not None:
                cumulative = [cumulative[i] for i in keep]
            duration.add_metric(labels, list(zip(les, cumulative)), sum_ms / 1000.0)
            statuses: dict[str, int] = {}
            for status, n in by_status.items():
                label = _status_label(status)
                statuses[label] = statuses.get(label, 0) + n
            for label, n in statuses.items():
                requests.add_metric(labels + [label], n)
            for error, n in endpoint.failures.items():
                failures.add_metric(labels + [error], n)
            slow.add_metric(labels, slow_requests)
            threshold.add_metric(labels, endpoint.slow_ms / 1000.0)
            size.add_metric(labels, response_bytes)
        dropped = f.make(F.DROPPED_NAMES)
        dropped.add_metric(f.labels(), recorder.dropped)
        yield from (duration, requests, failures, slow, threshold, size, dropped)

    # ------------------------------------------------------------------ runner, users, workers
    def _runner(self, f: _Families, exporter: MetricsExporter) -> Iterator[Metric]:
        runner = exporter.environment.runner
        users = f.make(F.USERS)
        target = f.make(F.USERS_TARGET)
        state = f.make(F.RUNNER_STATE)
        counts: dict[str, int] = {cls.__name__: 0 for cls in (exporter.environment.user_classes or [])}
        current_state = None
        if runner is not None:
            counts.update(exporter.user_classes_count())
            target.add_metric(f.labels(), float(getattr(runner, "target_user_count", 0) or 0))
            current_state = str(getattr(runner, "state", "")) or None
        for user_class, n in sorted(counts.items()):
            users.add_metric(f.labels(user_class), n)
        states = RUNNER_STATES if current_state in RUNNER_STATES or current_state is None else (*RUNNER_STATES, current_state)
        for name in states:
            state.add_metric(f.labels(name), 1.0 if name == current_state else 0.0)
        yield from (users, target, state)
        workers = exporter.workers_by_state()
        if workers is not None:
            family = f.make(F.WORKERS)
            for name in WORKER_STATES:
                family.add_metric(f.labels(name), workers.get(name, 0))
            yield family

    # ------------------------------------------------------------------ load generator resources
    def _nodes(self, f: _Families, exporter: MetricsExporter) -> Iterator[Metric]:
        cpu = f.make(F.CPU_SECONDS)
        ratio = f.make(F.CPU_RATIO)
        memory = f.make(F.MEMORY)
        for node, figures in sorted(exporter.node_resources().items()):
            labels = f.labels(node)
            cpu.add_metric(labels, figures.cpu_seconds)
            ratio.add_metric(labels, figures.cpu_usage_ratio)
            memory.add_metric(labels, figures.resident_memory_bytes)
        yield from (cpu, ratio, memory)

    # ------------------------------------------------------------------ the test and ourselves
    def _test(self, f: _Families, exporter: MetricsExporter) -> Iterator[Metric]:
        lifecycle = exporter.lifecycle
        if lifecycle.run_id is not None:
            info = f.make(F.TEST_INFO)
            info.add_metric(f.labels(lifecycle.run_id, lifecycle.host, lifecycle.locustfile), 1.0)
            yield info
            start = f.make(F.TEST_START)
            start.add_metric(f.labels(), lifecycle.start_time or 0.0)
            yield start
        if lifecycle.stop_time is not None:
            stop = f.make(F.TEST_STOP)
            stop.add_metric(f.labels(), lifecycle.stop_time)
            yield stop
        info = f.make(F.INFO)
        info.add_metric(f.labels(exporter.version, exporter.locust_version), 1.0)
        yield info


    # ------------------------------------------------------------------ thresholds (--metrics-threshold)
    def _thresholds(self, f: _Families, exporter: MetricsExporter) -> Iterator[Metric]:
        checks = exporter.checks
        if checks is None:
            return
        passed = f.make(F.THRESHOLD_PASSED)
        value = f.make(F.THRESHOLD_VALUE)
        for verdict in checks.exported():
            names = f.labels(verdict.threshold.text, verdict.method or "", verdict.name or "")
            passed.add_metric(names, 1.0 if verdict.passed else 0.0)
            value.add_metric(names, verdict.observed)
        yield from (passed, value)


    # ------------------------------------------------------------------ our own health
    def _health(self, f: _Families, exporter: MetricsExporter) -> Iterator[Metric]:
        errors = f.make(F.ERRORS)
        counts = dict(exporter.health.errors)
        counts["recorder"] = exporter.recorder.errors + (exporter.totals.errors if exporter.totals is not
                                                          exporter.recorder else 0)
        for source in HEALTH_SOURCES:
            errors.add_metric(f.labels(source), counts.get(source, 0))
        fallbacks = f.make(F.FALLBACKS)
        fallbacks.add_metric(f.labels("render"), exporter.renderer.fallbacks)
        fast = f.make(F.FAST_DISPATCH)
        fast.add_metric(f.labels(), 1.0 if exporter.fast_dispatch else 0.0)
        yield from (errors, fallbacks, fast)
        if exporter.pusher is not None:
            push = f.make(F.PUSH_FAILURES)
            push.add_metric(f.labels(), exporter.pusher.failures)
            yield push


HEALTH_SOURCES = ("listener", "recorder", "runner", "nodes", "test", "thresholds")
"""The ``source`` label values of ``locust_metrics_errors_total`` (all exported, 0 until a fault)."""


def _section(section: Callable, f: _Families, exporter: MetricsExporter) -> list[Metric]:
    """The families of one part of a scrape, or none when it fails (e.g. psutil denied in a container).

    A scrape never fails for one part: the error is logged once per part and exporter, with its
    traceback, and the other families are served.
    """
    try:
        return list(section(f, exporter))
    except Exception:
        name = section.__name__.strip("_")
        first = name not in exporter.health.errors
        exporter.health.error(name)
        if first:
            logger.exception(
                "locust-metrics: could not export the %s metrics; the others are served (further errors here "
                "are not logged)", section.__name__.strip("_"),
            )
        return []


def tracking_wsgi_app(registry: CollectorRegistry, tracker: ScrapeTracker, renderer: Any = None) -> Callable:
    """A WSGI app serving ``registry`` that records answered scrapes in ``tracker``.

    With ``renderer`` (a :class:`~locust_metrics.encoders.ScrapeRenderer`), its fast path (snapshot, sliced
    rendering that yields to the loop, concurrent scrapes sharing renders; a scrape is recorded with the
    time its numbers were read, and 503 answers are not scrapes); else prometheus_client's
    ``make_wsgi_app``. Same bytes either way.
    """
    if renderer is not None:
        app: Callable[..., Any] = renderer.wsgi_app(tracker)
        return app
    app = make_wsgi_app(registry)

    def metrics_app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.time()
        body = app(environ, start_response)
        if environ.get("PATH_INFO", "/") != "/favicon.ico":
            tracker.scraped(started)
        return body

    return metrics_app


ALL_INTERFACES = frozenset({"", "0.0.0.0", "::", "*"})
"""Bind addresses that mean every interface."""


def _paced_handler(pacer: Any) -> type:
    """gevent's WSGI request handler, that starts handling a request only when ``pacer`` (a
    :class:`~locust_metrics.encoders.LoopPacer`) gives it a share of the loop turn.

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
        self, registry: CollectorRegistry, tracker: ScrapeTracker, host: str, port: int, renderer: Any = None,
        ssl_context: Any = None, auth: Any = None,
    ) -> None:
        self.host = host
        self.port = port
        self._app = tracking_wsgi_app(registry, tracker, renderer)
        if auth is not None:
            self._app = auth.wsgi(self._app)
        self.ssl_context = ssl_context
        self._pacer = getattr(renderer, "pacer", None)
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
    web_ui: Any, registry: CollectorRegistry, tracker: ScrapeTracker, renderer: Any = None, guard: Any = None
) -> bool:
    """Serve ``registry`` at ``/metrics`` on Locust's web UI (Flask app). Returns False if it has one.

    The path follows Locust's ``--web-base-path`` (``/base/metrics``), like the web UI's own routes.

    ``guard`` (from :func:`locust_metrics.security.web_ui_guard`) runs first: a Response it returns (401)
    is answered instead, and is not counted as a scrape.

    The route honours the ``Accept`` header (OpenMetrics or text) like prometheus_client's own handlers.
    With ``renderer`` (a :class:`~locust_metrics.encoders.ScrapeRenderer`) it serves the fast path, and
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

    def metrics() -> Response:
        started = time.time()
        if guard is not None:
            denied = guard()
            if denied is not None:
                return denied
        if renderer is not None:  # the fast path of rendering.py (also gzip when asked)
            response = renderer.serve(
                request.headers.get("Accept"), request.headers.get("Accept-Encoding"),
                names=request.args.getlist("name[]") or None,
            )
            snapshot_time = response.snapshot_time  # None for a 503 (or 500): no scrape

            def sent() -> None:
                if snapshot_time is not None:
                    tracker.scraped(snapshot_time, WEB_UI_ENDPOINT)

            return Response(renderer.paced(response.body, sent), status=response.status, headers=response.headers)
        encoder, content_type = choose_encoder(request.headers.get("Accept"))
        body = encoder(registry)
        tracker.scraped(started, WEB_UI_ENDPOINT)
        return Response(body, content_type=content_type)

    app.add_url_rule(path, "locust_metrics", metrics)
    return True
