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
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:  # pragma: no cover
    from .plugin import MetricsExporter

logger = logging.getLogger(__name__)

RUNNER_STATES = ("ready", "spawning", "running", "cleanup", "stopping", "stopped", "missing")
"""Locust's runner states (``locust.runners.STATE_*``), all exported by ``locust_runner_state``."""

WORKER_STATES = ("ready", "spawning", "running", "missing")
"""Worker states counted by ``locust_workers`` on a master."""


class ScrapeTracker:
    """Counts answered scrapes and remembers when the last one started (unix time, seconds).

    The start, not the answer: a scrape reads its numbers after it starts, so one that started after
    the test stopped holds the final numbers; one that was answered after the stop may not (its
    snapshot can predate the last requests).
    """

    def __init__(self) -> None:
        self.count = 0
        self.last_time: float | None = None

    def scraped(self, started: float | None = None) -> None:
        """Record one answered scrape that started at ``started`` (unix seconds; default: now)."""
        self.count += 1
        self.last_time = time.time() if started is None else started


class _Families:
    """Builds metric families whose samples all carry the constant labels first."""

    def __init__(self, const_labels: dict[str, str]) -> None:
        self.names = list(const_labels)
        self.values = list(const_labels.values())

    def counter(self, name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
        return CounterMetricFamily(name, doc, labels=self.names + list(labels))

    def gauge(self, name: str, doc: str, labels: Iterable[str] = (), unit: str = "") -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=self.names + list(labels), unit=unit)

    def histogram(self, name: str, doc: str, labels: Iterable[str] = ()) -> HistogramMetricFamily:
        return HistogramMetricFamily(name, doc, labels=self.names + list(labels))

    def labels(self, *values: str) -> list[str]:
        return self.values + list(values)


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
        for section in (self._runner, self._nodes, self._test):
            yield from _section(section, f, exporter)

    # ------------------------------------------------------------------ requests
    def _requests(self, f: _Families, exporter: MetricsExporter) -> Iterator[Metric]:
        recorder = exporter.totals
        les = [floatToGoString(ms / 1000.0) for ms in recorder.bounds_ms] + ["+Inf"]
        duration = f.histogram(
            "locust_request_duration_seconds",
            "Response time of every request that has one (success or failure), seconds.",
            ["method", "name"],
        )
        requests = f.counter(
            "locust_requests", "Completed requests by status code (\"0\": no response or no numeric status).",
            ["method", "name", "status_code"],
        )
        failures = f.counter("locust_request_failures", "Failed requests by error class.", ["method", "name", "error"])
        slow = f.counter(
            "locust_slow_requests", "Requests slower than the endpoint's slow threshold.", ["method", "name"]
        )
        threshold = f.gauge(
            "locust_slow_request_threshold_seconds", "Slow threshold in force for the endpoint, seconds.",
            ["method", "name"],
        )
        size = f.counter(
            "locust_response_size_bytes", "Sum of response sizes (Locust's response_length), bytes.", ["method", "name"]
        )
        for endpoint in list(recorder.endpoints.values()):
            labels = f.labels(endpoint.method, endpoint.name)
            buckets, sum_ms, slow_requests, response_bytes, by_status = endpoint.folded()
            cumulative = list(accumulate(buckets))
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
        dropped = f.counter(
            "locust_metrics_dropped_names",
            "Requests counted under name=\"__overflow__\" because of --metrics-max-names.",
        )
        dropped.add_metric(f.labels(), recorder.dropped)
        yield from (duration, requests, failures, slow, threshold, size, dropped)

    # ------------------------------------------------------------------ runner, users, workers
    def _runner(self, f: _Families, exporter: MetricsExporter) -> Iterator[Metric]:
        runner = exporter.environment.runner
        users = f.gauge("locust_users", "Running users by user class.", ["user_class"])
        target = f.gauge("locust_users_target", "Target user count of the test.")
        state = f.gauge("locust_runner_state", "1 for the runner's current state, 0 for the others.", ["state"])
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
            family = f.gauge("locust_workers", "Workers connected to the master, by state.", ["state"])
            for name in WORKER_STATES:
                family.add_metric(f.labels(name), workers.get(name, 0))
            yield family

    # ------------------------------------------------------------------ load generator resources
    def _nodes(self, f: _Families, exporter: MetricsExporter) -> Iterator[Metric]:
        cpu = f.counter("locust_process_cpu_seconds", "User + system CPU time of the Locust process, seconds.", ["node"])
        ratio = f.gauge(
            "locust_process_cpu_usage_ratio", "CPU use of the Locust process; 1.0 = one core (Locust warns at 0.9).",
            ["node"],
        )
        memory = f.gauge("locust_process_resident_memory_bytes", "Resident memory of the Locust process, bytes.", ["node"])
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
            info = f.gauge("locust_test_info", "1; labels describe the current test run.", ["run_id", "host", "locustfile"])
            info.add_metric(f.labels(lifecycle.run_id, lifecycle.host, lifecycle.locustfile), 1.0)
            yield info
            start = f.gauge("locust_test_start_time_seconds", "Unix time the current test started, seconds.")
            start.add_metric(f.labels(), lifecycle.start_time or 0.0)
            yield start
        if lifecycle.stop_time is not None:
            stop = f.gauge("locust_test_stop_time_seconds", "Unix time the last test stopped, seconds.")
            stop.add_metric(f.labels(), lifecycle.stop_time)
            yield stop
        info = f.gauge("locust_metrics_info", "1; versions of locust-metrics and Locust.", ["version", "locust_version"])
        info.add_metric(f.labels(exporter.version, exporter.locust_version), 1.0)
        yield info


def _section(section: Callable, f: _Families, exporter: MetricsExporter) -> list[Metric]:
    """The families of one part of a scrape, or none when it fails (e.g. psutil denied in a container).

    A scrape never fails for one part: the error is logged once per part and exporter, with its
    traceback, and the other families are served.
    """
    try:
        return list(section(f, exporter))
    except Exception:
        failed = exporter.__dict__.setdefault("_failed_sections", set())
        if section.__name__ not in failed:
            failed.add(section.__name__)
            logger.exception(
                "locust-metrics: could not export the %s metrics; the others are served (further errors here "
                "are not logged)", section.__name__.strip("_"),
            )
        return []


def tracking_wsgi_app(registry: CollectorRegistry, tracker: ScrapeTracker, renderer: Any = None) -> Callable:
    """A WSGI app serving ``registry`` that records answered scrapes in ``tracker``.

    With ``renderer`` (a :class:`~locust_metrics.rendering.ScrapeRenderer`), its fast path (snapshot, sliced
    rendering that yields to the loop, concurrent scrapes sharing renders; a scrape is recorded with the
    time its numbers were read, and 503 answers are not scrapes); else prometheus_client's
    ``make_wsgi_app``. Same bytes either way.
    """
    if renderer is not None:
        return renderer.wsgi_app(tracker)
    app = make_wsgi_app(registry)

    def metrics_app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.time()
        body = app(environ, start_response)
        if environ.get("PATH_INFO", "/") != "/favicon.ico":
            tracker.scraped(started)
        return body

    return metrics_app


def _paced_handler(pacer: Any) -> type:
    """gevent's WSGI request handler, that starts handling a request only when ``pacer`` (a
    :class:`~locust_metrics.rendering.LoopPacer`) gives it a share of the loop turn.

    Requests that arrive at the same instant (50 scrapers at once) are otherwise all read, parsed and
    answered in one turn of the loop, about 0.1-0.2 ms each, before the load test's greenlets run again.
    The handler waits for a request's first bytes without parsing them, then for its share of a turn.
    """
    from gevent.pywsgi import WSGIHandler

    class PacedWSGIHandler(WSGIHandler):
        def handle_one_request(self):  # gevent calls it once per request of a connection
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
        """The endpoint's URL as a user would type it."""
        host = self.host or "0.0.0.0"
        return f"{'https' if self.ssl_context is not None else 'http'}://{host}:{self.port}/metrics"

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
    With ``renderer`` (a :class:`~locust_metrics.rendering.ScrapeRenderer`) it serves the fast path, and
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
                    tracker.scraped(snapshot_time)

            return Response(renderer.paced(response.body, sent), status=response.status, headers=response.headers)
        encoder, content_type = choose_encoder(request.headers.get("Accept"))
        body = encoder(registry)
        tracker.scraped(started)
        return Response(body, content_type=content_type)

    app.add_url_rule(path, "locust_metrics", metrics)
    return True
