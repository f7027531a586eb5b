"""The exporter of one Locust Environment: wires the recorder, the collectors and the endpoint to Locust's events.

:class:`MetricsExporter` is what :func:`locust_metrics.install` returns. It owns

* ``recorder``: the hot-path :class:`~locust_metrics.recorder.RequestRecorder` (on ``request``, through ``dispatch.py``);
* ``registry``: a ``prometheus_client.CollectorRegistry`` holding one :class:`LocustCollector`, so an
  application can serve it itself (``prometheus_client.generate_latest(exporter.registry)``);
* ``server``: our own HTTP endpoint (``--metrics-port``), and ``/metrics`` on Locust's web UI;
* the test's lifecycle (``run_id``, start and stop times) from ``test_start`` / ``test_stop``;
* the final-scrape wait at exit (Locust's ``quit`` event), so a headless run's last numbers reach Prometheus;
* distributed mode: on a worker, ``report_to_master`` ships the recorder's deltas; on the master,
  ``worker_report`` merges them (see ``distributed.py``) and keeps each worker's CPU and memory.

Every listener except the hot path is wrapped by :func:`_guarded`: an error in our code is logged once, with
context, and never propagates into Locust (where it would change the exit code or stop the test).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import gevent
from prometheus_client import CollectorRegistry

from ._version import __version__
from .dispatch import attach, detach
from .distributed import PAYLOAD_KEY, PayloadMerger, take_payload
from .exposition import LocustCollector, MetricsServer, ScrapeTracker, add_web_ui_route
from .options import Settings
from .push import PUSH_TIMEOUT_S, Pusher
from .recorder import RequestRecorder, label_text
from .rendering import ScrapeRenderer
from .resources import NodeResources, ProcessResources
from .security import web_ui_guard

logger = logging.getLogger("locust_metrics")


def _guarded(method: Callable) -> Callable:
    """Wrap a listener so that an exception is logged once (per listener) and swallowed."""
    failed: list[bool] = []

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception:
            if not failed:
                failed.append(True)
                logger.exception(
                    "locust-metrics: error in %s (the test goes on; further errors here are not logged)",
                    method.__name__,
                )
            return None

    return wrapper


class TestLifecycle:
    """What ``locust_test_*`` export: the current run and its start/stop times (unix seconds)."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.host = ""
        self.locustfile = ""
        self.start_time: float | None = None
        self.stop_time: float | None = None


def _locustfile_label(parsed_options: Any) -> str:
    value = getattr(parsed_options, "locustfile", None) if parsed_options is not None else None
    if not value:
        return ""
    files = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return ",".join(os.path.basename(str(f).strip()) for f in files)


def _locust_version() -> str:
    try:
        from locust import __version__ as version
    except ImportError:  # pragma: no cover
        return "unknown"
    return str(version)


class MetricsExporter:
    """Exports one Locust Environment's test as Prometheus metrics. Made by :func:`locust_metrics.install`.

    Attributes:
        environment: the Locust ``Environment``.
        settings: the validated :class:`~locust_metrics.options.Settings`.
        recorder: per-endpoint accumulators (the data model).
        registry: ``prometheus_client.CollectorRegistry`` with everything we export.
        server: our :class:`~locust_metrics.exposition.MetricsServer`, or None (port 0, or a worker).
        scrapes: :class:`~locust_metrics.exposition.ScrapeTracker` of answered scrapes.
        lifecycle: :class:`TestLifecycle` of the current run.
        fast_dispatch: True while Locust's ``request`` event calls ``recorder.record`` directly (a Locust
            ``EventHook`` we know, see ``dispatch.py``); False: our listener is called the ordinary way.
    """

    def __init__(self, environment: Any, settings: Settings, from_options: bool = False) -> None:
        self.environment = environment
        self.settings = settings
        self.from_options = from_options
        self.version = __version__
        self.locust_version = _locust_version()
        self.recorder = self._new_recorder()
        # what is exported: the recorder itself, except on a worker with its own endpoint, where the
        # recorder is emptied at every report and a cumulative copy is kept for the worker's endpoint
        self.totals = self.recorder
        self._merger = PayloadMerger(self.recorder)
        self._totals_merger: PayloadMerger | None = None
        self._pending_payloads: list[dict[str, Any]] = []
        self._workers: dict[str, tuple[str, NodeResources]] = {}  # client id -> (node, figures)
        self.last_change_time: float | None = None  # last test stop or worker report (unix seconds)
        self.resources = ProcessResources()
        self.lifecycle = TestLifecycle()
        self.scrapes = ScrapeTracker()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(LocustCollector(self))
        self.renderer = ScrapeRenderer(self)  # our endpoints' fast scrape path (same bytes as the registry)
        self.server: MetricsServer | None = None
        self.pusher: Pusher | None = None  # push mode (--metrics-pushgateway), on a local run or a master
        self.web_ui_route = False
        self.fast_dispatch = False  # True while Locust's request event calls recorder.record directly
        self._started = False
        self._quit_done: Any = None  # set once the first quit event's final push and scrape are over

    # ------------------------------------------------------------------ setup
    def start(self) -> MetricsExporter:
        """Attach the listeners to ``environment.events`` and start serving. Idempotent.

        Raises ``OSError`` naming the address and ``--metrics-port`` when the port cannot be bound.
        """
        if self._started:
            return self
        events = self.environment.events
        self.fast_dispatch = attach(events.request, self.recorder.on_request, self.recorder.record)
        events.test_start.add_listener(self._on_test_start)
        events.test_stop.add_listener(self._on_test_stop)
        events.quit.add_listener(self._on_quit)
        events.usage_monitor.add_listener(self._on_usage_monitor)
        events.report_to_master.add_listener(self._on_report_to_master)
        events.worker_report.add_listener(self._on_worker_report)
        self._started = True
        port, option = self.settings.port, "--metrics-port / LOCUST_METRICS_PORT"
        if self.is_worker():
            port, option = self.settings.worker_port, "--metrics-worker-port / LOCUST_METRICS_WORKER_PORT"
            if port:
                port += int(getattr(self.environment.runner, "worker_index", 0) or 0)
                self.totals = self._new_recorder()
                self._totals_merger = PayloadMerger(self.totals)
        web_config = self.settings.web_config
        if port:
            server = MetricsServer(
                self.registry, self.scrapes, self.settings.host, port, self.renderer,
                ssl_context=web_config.ssl_context() if web_config is not None and web_config.tls else None,
                auth=web_config.basic_auth() if web_config is not None else None,
            )
            try:
                server.start()
            except OSError as exc:
                self.stop()
                where = f"{self.settings.host or '0.0.0.0'}:{port}"
                raise OSError(
                    exc.errno,
                    f"locust-metrics cannot serve metrics on {where} ({exc.strerror or exc}): choose a free port "
                    f"with {option}, or 0 to turn our HTTP server off",
                ) from exc
            self.server = server
            logger.info("locust-metrics: serving Prometheus metrics on %s", server.url)
        if self.settings.pushgateway and not self.is_worker():
            s = self.settings
            self.pusher = Pusher(self.registry, s.pushgateway, s.push_job, s.push_interval_s)
        self.attach_web_ui(getattr(self.environment, "web_ui", None))
        return self

    def _new_recorder(self) -> RequestRecorder:
        s = self.settings
        return RequestRecorder(s.bounds_ms(), s.slow_threshold_ms, s.slow_thresholds, s.max_names)

    def attach_web_ui(self, web_ui: Any) -> None:
        """Serve ``/metrics`` on Locust's web UI too (no-op when there is none, or it is off in settings)."""
        if web_ui is not None and self.settings.serve_web_ui and not self.web_ui_route:
            web_config = self.settings.web_config
            guard = web_ui_guard(web_ui, web_config.basic_auth() if web_config is not None else None)
            self.web_ui_route = add_web_ui_route(web_ui, self.registry, self.scrapes, self.renderer, guard)

    def stop(self) -> None:
        """Detach our listeners, push a last time (push mode) and stop our HTTP server (idempotent).

        Counts recorded so far stay. Locust as a library has no ``quit`` event: call this at the end so
        the Pushgateway gets the final numbers (bounded by the push timeout).
        """
        if self.pusher is not None:
            self.pusher.close(final_push=True)
        events = self.environment.events
        detach(events.request, self.recorder.on_request)
        self.fast_dispatch = False
        for hook, listener in (
            (events.test_start, self._on_test_start),
            (events.test_stop, self._on_test_stop),
            (events.quit, self._on_quit),
            (events.usage_monitor, self._on_usage_monitor),
            (events.report_to_master, self._on_report_to_master),
            (events.worker_report, self._on_worker_report),
        ):
            if listener in hook._handlers:
                hook.remove_listener(listener)
        if self.server is not None:
            self.server.stop()
            self.server = None
        self._started = False

    # ------------------------------------------------------------------ what the collector reads
    def is_worker(self) -> bool:
        """True when this process runs a Locust ``WorkerRunner``."""
        return type(self.environment.runner).__name__ == "WorkerRunner"

    def is_master(self) -> bool:
        """True when this process runs a Locust ``MasterRunner``."""
        return type(self.environment.runner).__name__ == "MasterRunner"

    def node_name(self) -> str:
        """``local``, ``master`` or ``worker-<index>`` (Locust's worker index)."""
        runner = self.environment.runner
        if self.is_worker():
            return f"worker-{getattr(runner, 'worker_index', 0)}"
        if self.is_master():
            return "master"
        return "local"

    def node_resources(self) -> dict[str, NodeResources]:
        """``{node: NodeResources}`` of this process and, on a master, of every worker Locust still knows.

        A worker's figures are those of its latest report (every 3 s); a worker that Locust dropped
        (quit, or missing for too long) disappears.
        """
        figures = {self.node_name(): self.resources.sample()}
        if self._workers:
            clients = getattr(self.environment.runner, "clients", {})
            for client_id, (node, resources) in list(self._workers.items()):
                if client_id in clients:
                    figures[node] = resources
                else:
                    del self._workers[client_id]
        return figures

    def user_classes_count(self) -> dict[str, int]:
        """Running users by user class (on a master, summed over the workers' reports)."""
        runner = self.environment.runner
        if runner is None:
            return {}
        if self.is_master():
            counts: dict[str, int] = {}
            for client in runner.clients.values():
                for user_class, n in (client.user_classes_count or {}).items():
                    counts[user_class] = counts.get(user_class, 0) + n
            return counts
        return dict(runner.user_classes_count)

    def workers_by_state(self) -> dict[str, int] | None:
        """``{state: workers}`` on a master; None elsewhere."""
        if not self.is_master():
            return None
        counts: dict[str, int] = {}
        for client in self.environment.runner.clients.values():
            counts[client.state] = counts.get(client.state, 0) + 1
        return counts

    # ------------------------------------------------------------------ listeners
    @_guarded
    def _on_test_start(self, environment: Any = None, **_kwargs: Any) -> None:
        if self.is_worker() and self.from_options:
            self._follow_master_options()
        lifecycle = self.lifecycle
        lifecycle.run_id = uuid.uuid4().hex[:12]
        lifecycle.host = label_text(self.environment.host or "")
        lifecycle.locustfile = label_text(_locustfile_label(self.environment.parsed_options))
        lifecycle.start_time = time.time()
        lifecycle.stop_time = None
        if self.pusher is not None:
            self.pusher.start(run=self.settings.push_run or lifecycle.run_id)

    @_guarded
    def _push_at_test_stop(self, environment: Any = None, **_kwargs: Any) -> None:
        if self.pusher is not None:
            self.pusher.request_push()

    @_guarded
    def _on_test_stop(self, environment: Any = None, **_kwargs: Any) -> None:
        self.lifecycle.stop_time = self.last_change_time = time.time()
        self._push_at_test_stop()

    @_guarded
    def _on_report_to_master(self, client_id: str = "", data: dict | None = None, **_kwargs: Any) -> None:
        """Worker: add the deltas since the last report (and our CPU and memory) to Locust's report."""
        if data is None:
            return
        payload = take_payload(self.recorder, self.node_name(), self.resources.sample())
        payloads = self._pending_payloads + [payload]
        self._pending_payloads = []
        if self._totals_merger is not None:
            for item in payloads:
                self._totals_merger.merge(item)
        data[PAYLOAD_KEY] = payloads

    @_guarded
    def _on_worker_report(self, client_id: str = "", data: dict | None = None, **_kwargs: Any) -> None:
        """Master: merge a worker's deltas; remember its CPU and memory under its node name."""
        payloads = (data or {}).get(PAYLOAD_KEY)
        if not payloads:
            return
        for payload in payloads:
            self._merger.merge(payload)
            if payload.get("resources"):
                self._workers[client_id] = (str(payload["node"]), NodeResources.from_wire(payload["resources"]))
        self.last_change_time = time.time()

    def _follow_master_options(self) -> None:
        """Worker: Locust copies the master's custom options to workers on spawn; use its buckets and thresholds.

        Data recorded under the old settings is kept and shipped as it is with the next report.
        """
        master = Settings.from_options(self.environment.parsed_options, recording_only=True)
        settings = dataclasses.replace(
            self.settings, slow_threshold_ms=master.slow_threshold_ms, slow_thresholds=master.slow_thresholds,
            buckets_s=master.buckets_s, max_names=master.max_names, labels=master.labels,
        )
        if (settings.bounds_ms(), settings.slow_threshold_ms, settings.slow_thresholds, settings.max_names) == (
            self.settings.bounds_ms(), self.settings.slow_threshold_ms, self.settings.slow_thresholds,
            self.settings.max_names,
        ):
            return
        if self.recorder.endpoints or self.recorder.dropped:
            self._pending_payloads.append(take_payload(self.recorder, self.node_name(), None))
        self.settings = settings
        self.recorder.configure(
            settings.bounds_ms(), settings.slow_threshold_ms, settings.slow_thresholds, settings.max_names
        )
        if self._totals_merger is not None:
            self._totals_merger = PayloadMerger(self.totals)

    @_guarded
    def _on_usage_monitor(self, environment: Any = None, cpu_usage: float = 0.0, **kwargs: Any) -> None:
        self.resources.on_usage_monitor(cpu_usage=cpu_usage)

    @_guarded
    def _on_quit(self, exit_code: int = 0, **_kwargs: Any) -> None:
        # On SIGTERM Locust shuts down twice at once (its signal handler, then its main greenlet once the
        # runner is gone), firing ``quit`` twice; either may exit the process first. So the second call
        # waits (bounded) for the first one's final push and final scrape instead of returning at once.
        if self._quit_done is not None:
            self._quit_done.wait(timeout=PUSH_TIMEOUT_S + self.settings.final_scrape_timeout_s + 5)
            return
        from gevent.event import Event

        self._quit_done = Event()
        try:
            if self.pusher is not None:
                self.pusher.close(final_push=True)  # the final push (bounded), then the final scrape
            self.wait_for_final_scrape()
            self.renderer.drain()  # scrapes answered with the final one (an HA pair, shared renders) go out too
            self._let_locust_csv_catch_up()
        finally:
            self._quit_done.set()

    def _let_locust_csv_catch_up(self) -> None:
        """With ``--csv``, stay up until Locust's CSV writer has rewritten its files after the last change.

        Locust rewrites its CSV files once a second (``locust.stats.CSV_STATS_INTERVAL_SEC``) and not again
        at exit, so a process that exits right after the test stops leaves CSV files up to a second old,
        which then disagree with what we exported. Waiting at most that second makes Locust's CSV final.
        """
        options = self.environment.parsed_options
        if not getattr(options, "csv_prefix", None) or self.is_worker() or self.last_change_time is None:
            return
        from locust.stats import CSV_STATS_INTERVAL_SEC

        remaining = self.last_change_time + CSV_STATS_INTERVAL_SEC + 0.2 - time.time()
        if remaining > 0:
            gevent.sleep(remaining)

    # ------------------------------------------------------------------ the end of a run
    def wait_for_final_scrape(self, timeout: float | None = None) -> bool:
        """Keep serving until one more scrape has been answered, so the last numbers reach Prometheus.

        Called from Locust's ``quit`` event (after the runner stopped, right before the process exits).
        Waits only if the endpoint was scraped before and has not been scraped since the test stopped;
        at most ``timeout`` seconds (default ``--metrics-final-scrape-timeout``). Logs one line when it
        waits. Returns True when the final numbers were scraped (or there was nothing to wait for).
        """
        if self.server is None and not self.web_ui_route:
            return True
        if self.scrapes.count == 0:
            return True  # nobody scrapes us: exit at once
        reference = self.last_change_time or time.time()
        if self.scrapes.last_time is not None and self.scrapes.last_time >= reference:
            return True  # already scraped after the test stopped
        timeout = self.settings.final_scrape_timeout_s if timeout is None else timeout
        if timeout <= 0:
            return False
        where = self.server.url if self.server is not None else "the web UI's /metrics"
        logger.info(
            "locust-metrics: waiting up to %gs for a final scrape of %s (--metrics-final-scrape-timeout)",
            timeout,
            where,
        )
        deadline = time.monotonic() + timeout

        def final_scraped() -> bool:  # a scrape that started after the last change was answered
            return self.scrapes.last_time is not None and self.scrapes.last_time >= reference

        while not final_scraped() and time.monotonic() < deadline:
            gevent.sleep(0.05)
        return final_scraped()
