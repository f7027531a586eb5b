"""The exporter of one Locust Environment: wiring only, from Locust's events to our parts and outputs.

:class:`MetricsExporter` is what :func:`locust_metrics.install` returns. It connects

* ``request`` to the hot-path :class:`~locust_metrics.recorder.RequestRecorder` (through ``dispatch.py``);
* ``test_start`` / ``test_stop`` to the :class:`~locust_metrics.lifecycle.TestLifecycle`, the threshold checks
  (``threshold_checks.py``) and push (``push.py``);
* ``report_to_master`` / ``worker_report`` to the distributed sync (``distributed.py``): a worker ships the
  recorder's deltas, the master merges them and keeps each worker's CPU and memory;
* the outputs, which are functions of a snapshot (``snapshot.py``) that it takes on demand
  (:meth:`MetricsExporter.snapshot`): ``registry``, a ``prometheus_client.CollectorRegistry`` holding one
  :class:`~locust_metrics.collector.LocustCollector` (``generate_latest(exporter.registry)``); the fast
  scrape path (``scraping.py``, ``encoders.py``) on our own endpoint (``--metrics-port``), on ``/metrics`` of
  Locust's web UI and for push;
* ``quit`` to the final push and the final-scrape wait, so a headless run's last numbers reach Prometheus.

Every listener except the hot path is wrapped by :func:`_guarded`: an error in our code is logged once, with
context, and never propagates into Locust (where it would change the exit code or stop the test).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from ._version import __version__
from .collector import LocustCollector
from .dispatch import attach, detach
from .distributed import DistributedSync
from .errors import Health
from .lifecycle import TestLifecycle, wait_for_locust_csv
from .options import Settings, flag, where
from .push import PUSH_TIMEOUT_S, Pusher
from .recorder import RequestRecorder
from .resources import ProcessResources
from .scraping import (
    OWN_ENDPOINT,
    WEB_UI_ENDPOINT,
    MetricsServer,
    ScrapeRenderer,
    ScrapeTracker,
    add_web_ui_route,
    gevent_pause,
)
from .security import web_ui_guard
from .snapshot import Snapshot, take_snapshot
from .threshold_checks import ThresholdChecks, locust_exit_code

logger = logging.getLogger("locust_metrics")

FOLD_INTERVAL_S = 1.0
"""With native histograms on, the exporter folds the recorder this often (seconds), scraped or not: the
listener keeps response times for a fold to bucket in a batch (``bucketing.py``), and a fold's work grows with
what was kept (about 1 ms per second of a Locust process at full speed on this project's VM, in slices of
one endpoint). A scrape folds too."""

FOLD_CHECK_S = 0.25
"""... and this often (seconds) it folds the endpoints that kept :data:`FOLD_AT_TIMES` response times or more
since their last fold: one endpoint's fold is not split, so a very busy endpoint is folded sooner, before its
fold could hold the event loop for long."""

FOLD_AT_TIMES = 5_000
"""An endpoint with this many response times kept is folded at the next :data:`FOLD_CHECK_S` (about 1 ms of
work on this project's VM; 25,000 took 4.4-5.9 ms: ``benchmarks/native_histograms.py --fold``)."""


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a listener so that an exception is logged once (per listener), counted and swallowed."""
    failed: list[bool] = []

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception:
            health = getattr(args[0], "health", None) if args else None
            if health is not None:
                health.error("listener")
            if not failed:
                failed.append(True)
                logger.exception(
                    "locust-metrics: error in %s (the test goes on; further errors here are not logged)",
                    method.__name__,
                )
            return None

    return wrapper


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
        renderer: the :class:`~locust_metrics.scraping.ScrapeRenderer` of our endpoints and push.
        server: our :class:`~locust_metrics.scraping.MetricsServer`, or None (port 0, or a worker).
        scrapes: :class:`~locust_metrics.scraping.ScrapeTracker` of answered scrapes.
        lifecycle: :class:`~locust_metrics.lifecycle.TestLifecycle` of the current run.
        health: our own faults (:class:`~locust_metrics.errors.Health`).
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
        self.sync = DistributedSync(self.recorder)
        self.last_change_time: float | None = None  # last test stop or worker report (unix seconds)
        self.resources = ProcessResources()
        self.health = Health()
        self.lifecycle = TestLifecycle()
        self.scrapes = ScrapeTracker()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(LocustCollector(self.snapshot))
        # our endpoints' fast scrape path (the same bytes as the registry)
        self.renderer = ScrapeRenderer(self.snapshot, self.registry, lambda: self.totals, settings.max_concurrent_renders)
        self.server: MetricsServer | None = None
        self.pusher: Pusher | None = None  # push mode (--metrics-pushgateway), on a local run or a master
        self.web_ui_route = False
        self.fast_dispatch = False  # True while Locust's request event calls recorder.record directly
        self.checks: ThresholdChecks | None = None  # --metrics-threshold, on a local run or a master
        self._started = False
        self._quit_done: Any = None  # set once the first quit event's final push and scrape are over
        self._folder: Any = None  # the greenlet of _fold_loop

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
        events.quitting.add_listener(self._on_quitting)
        events.quit.add_listener(self._on_quit)
        events.usage_monitor.add_listener(self._on_usage_monitor)
        events.report_to_master.add_listener(self._on_report_to_master)
        events.worker_report.add_listener(self._on_worker_report)
        self._started = True
        port, option = self.settings.port, where("port")
        if self.is_worker():
            port, option = self.settings.worker_port, where("worker_port")
            if port:
                port += int(getattr(self.environment.runner, "worker_index", 0) or 0)
                self.totals = self._new_recorder()
                self.sync = DistributedSync(self.recorder, self.totals)
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
                address = f"{self.settings.host or '0.0.0.0'}:{port}"
                raise OSError(
                    exc.errno,
                    f"locust-metrics cannot serve metrics on {address} ({exc.strerror or exc}): choose a free port "
                    f"with {option}, or 0 to turn our HTTP server off",
                ) from exc
            self.server = server
            logger.info("locust-metrics: serving Prometheus metrics on %s (listening on %s)", server.url,
                        server.bind_address)
        if self.settings.thresholds and not self.is_worker():
            lifecycle = self.lifecycle
            self.checks = ThresholdChecks(
                self.settings.thresholds, lambda: self.totals, lambda: lifecycle.start_time, lambda: lifecycle.stop_time
            )
        if self.settings.pushgateway and not self.is_worker():
            s = self.settings
            self.pusher = Pusher(self.registry, s.pushgateway, s.push_job, s.push_interval_s, render=self._push_body)
        self.attach_web_ui(getattr(self.environment, "web_ui", None))
        import gevent

        self._folder = gevent.spawn(self._fold_loop)
        return self

    def _fold_loop(self) -> None:
        """Every :data:`FOLD_INTERVAL_S`, with native histograms on, fold the recorder the listener writes (in
        slices, as a scrape does), so that the response times it keeps are bucketed and freed in batches of
        about a second, scraped or not, unless a scrape folded them less than :data:`FOLD_INTERVAL_S` ago
        (scraped every second or more often, the scrapes' folds are enough, and two folds a second would
        halve the batches, which cost more per response time the smaller they are); every
        :data:`FOLD_CHECK_S` in between, only its endpoints that kept :data:`FOLD_AT_TIMES` or more. Runs
        until :meth:`stop`."""
        import gevent

        checks = max(1, round(FOLD_INTERVAL_S / FOLD_CHECK_S))
        turn = 0
        while True:
            gevent.sleep(FOLD_CHECK_S)
            turn += 1
            due = turn % checks == 0 and time.monotonic() - self.renderer.folded_at >= FOLD_INTERVAL_S
            self._fold_native(everything=due)

    @_guarded
    def _fold_native(self, everything: bool = True) -> None:
        """With native histograms on, fold every endpoint of the recorder (``everything``), or only those that
        kept :data:`FOLD_AT_TIMES` response times or more, in slices (``ScrapeRenderer.fold``)."""
        if self.recorder.native is not None:
            self.renderer.fold(gevent_pause, self.recorder, at_least=0 if everything else FOLD_AT_TIMES)

    def _push_body(self) -> tuple[str, bytes]:
        """What a push sends, ``(content_type, body)``: a scrape rendered in slices that give the loop back.

        Text format 0.0.4; with native histograms on (``--metrics-native-histograms``), delimited protobuf
        holding the classic and the native buckets in one histogram, as a Prometheus with native histograms
        gets from a scrape. The Pushgateway (1.5 and later) stores the native buckets as pushed and serves
        them to a Prometheus that asks for protobuf; a text scrape of the gateway gets the classic buckets.
        It shares a render of the same format in flight only if that render reads its numbers after the push
        began (the final push carries the final numbers), and the bound on concurrent renders never refuses it.
        """
        accept: str | None = None  # text
        if self.totals.native is not None:
            from . import protobuf_scrape  # (with the protobuf library: imported when used)

            accept = protobuf_scrape.CONTENT_TYPE
        headers, body = self.renderer.respond(accept, None, fresh=True, bounded=False)
        return dict(headers)["Content-Type"], b"".join(body)

    def _new_recorder(self) -> RequestRecorder:
        s = self.settings
        return RequestRecorder(s.bounds_ms(), s.slow_threshold_ms, s.slow_thresholds, s.max_names, s.native())

    def attach_web_ui(self, web_ui: Any) -> None:
        """Serve ``/metrics`` on Locust's web UI too (no-op when there is none, or it is off in settings)."""
        if web_ui is not None and self.settings.serve_web_ui and not self.web_ui_route:
            web_config = self.settings.web_config
            auth = web_config.basic_auth() if web_config is not None else None
            guard = web_ui_guard(web_ui, auth)
            if getattr(web_ui, "web_login", False) and auth is None:
                logger.warning(
                    "locust-metrics: --web-login is on and no basic_auth_users are configured (%s): /metrics on "
                    "the web UI answers only browser sessions logged in to the web UI; Prometheus gets 401. "
                    "Configure basic_auth_users, or scrape our own endpoint (%s).", flag("web_config"), flag("port"),
                )
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
            (events.quitting, self._on_quitting),
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
        if self._folder is not None:
            self._folder.kill(block=False)
            self._folder = None
        self._started = False

    # ------------------------------------------------------------------ what the snapshot reads
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

    def snapshot(self, natives: bool = False) -> Snapshot:
        """What a scrape shows now, at one instant (:func:`~locust_metrics.snapshot.take_snapshot`; ``natives``:
        with the native histograms, for a protobuf scrape)."""
        return take_snapshot(self, natives)

    # ------------------------------------------------------------------ listeners
    @_guarded
    def _on_test_start(self, environment: Any = None, **_kwargs: Any) -> None:
        if self.is_worker() and self.from_options:
            listener = self.recorder.on_request
            self.settings = self.sync.follow_master(self.settings, self.environment.parsed_options, self.node_name())
            if self.recorder.on_request is not listener and self._started:  # native histograms turned on or off
                detach(self.environment.events.request, listener)
                self.fast_dispatch = attach(self.environment.events.request, self.recorder.on_request, self.recorder.record)
        if self.is_master():
            self.sync.nodes.forget_gone(getattr(self.environment.runner, "clients", None))
        self.lifecycle.started(self.environment)
        if self.checks is not None:
            self.checks.test_started(self.environment)
        if self.pusher is not None:
            self.pusher.start(run=self.settings.push_run or self.lifecycle.run_id or "")

    @_guarded
    def _push_at_test_stop(self, environment: Any = None, **_kwargs: Any) -> None:
        if self.pusher is not None:
            self.pusher.request_push()

    @_guarded
    def _on_test_stop(self, environment: Any = None, **_kwargs: Any) -> None:
        self.last_change_time = self.lifecycle.stopped()
        if self.checks is not None:
            self.checks.test_stopped()
        self._push_at_test_stop()

    @_guarded
    def _on_report_to_master(self, client_id: str = "", data: dict[str, Any] | None = None, **_kwargs: Any) -> None:
        """Worker: add the deltas since the last report (and our CPU and memory) to Locust's report."""
        if data is not None:
            self.sync.report(data, self.node_name(), self.resources.sample())

    @_guarded
    def _on_worker_report(self, client_id: str = "", data: dict[str, Any] | None = None, **_kwargs: Any) -> None:
        """Master: merge a worker's deltas; remember its CPU and memory under its node name."""
        if self.sync.merge(client_id, data):
            self.last_change_time = self.sync.last_report_time

    @_guarded
    def _on_usage_monitor(self, environment: Any = None, cpu_usage: float = 0.0, **kwargs: Any) -> None:
        self.resources.on_usage_monitor(cpu_usage=cpu_usage)

    @_guarded
    def _on_quitting(self, environment: Any = None, **_kwargs: Any) -> None:
        """Final threshold verdicts: the summary, the JUnit report, and the exit code when one failed."""
        if self.checks is None:
            return
        verdicts = self.checks.quitting(self.environment)
        if self.settings.threshold_junit and verdicts:
            from .threshold_reports import junit_xml

            with open(self.settings.threshold_junit, "w", encoding="utf-8") as handle:
                handle.write(junit_xml(verdicts, duration_s=self.checks.duration_s()))
        current = locust_exit_code(self.environment)
        if current == 0 and any(not v.passed for v in verdicts):
            self.environment.process_exit_code = self.settings.threshold_exit_code

    @_guarded
    def _on_quit(self, exit_code: int = 0, **_kwargs: Any) -> None:
        # On SIGTERM Locust shuts down twice at once (its signal handler, then its main greenlet once the
        # runner is gone), firing ``quit`` twice; either may exit the process first. So the second call
        # waits (bounded) for the first one's final push and final scrape instead of returning at once.
        if self._quit_done is not None:
            self._quit_done.wait(timeout=PUSH_TIMEOUT_S + self.settings.final_scrape_timeout_s + 5)
            return
        if self.checks is not None:
            self.checks.log_summary()
        from gevent.event import Event

        self._quit_done = Event()
        try:
            if self.pusher is not None:
                self.pusher.close(final_push=True)  # the final push (bounded), then the final scrape
            self.wait_for_final_scrape()
            self.renderer.drain()  # scrapes answered with the final one (an HA pair, shared renders) go out too
            if not self.is_worker():
                wait_for_locust_csv(self.environment.parsed_options, self.last_change_time)
        finally:
            self._quit_done.set()

    # ------------------------------------------------------------------ the end of a run
    def wait_for_final_scrape(self, timeout: float | None = None) -> bool:
        """Keep serving until one more scrape has been answered, so the last numbers reach Prometheus: Locust's
        ``quit`` event waits for a periodic scraper of our endpoint or of the web UI's ``/metrics``, as
        :meth:`~locust_metrics.scraping.ScrapeTracker.wait_for_final` says, at most ``timeout`` seconds (default
        ``--metrics-final-scrape-timeout``). True when the final numbers were scraped (or nothing to wait for)."""
        serving = {
            OWN_ENDPOINT: (self.server is not None, self.server.url if self.server is not None else ""),
            WEB_UI_ENDPOINT: (self._web_ui_serving(), "the web UI's /metrics"),
        }
        timeout = self.settings.final_scrape_timeout_s if timeout is None else timeout
        return self.scrapes.wait_for_final(self.last_change_time or time.time(), serving, timeout)

    def _web_ui_serving(self) -> bool:
        """True while our route is on Locust's web UI and its server still serves (``--autoquit`` stops it)."""
        if not self.web_ui_route:
            return False
        server = getattr(getattr(self.environment, "web_ui", None), "server", None)
        return server is not None and not getattr(server, "closed", False)
