"""Push mode: send the metrics to a Prometheus Pushgateway, for runs that no Prometheus scrapes (CI jobs).

With ``--metrics-pushgateway URL`` the exporter of a local run or of a master pushes everything it serves
(prometheus_client's ``push_to_gateway``: HTTP PUT, which replaces the group; the body rendered by the
scrape's sliced renderer, so a push stalls the load test no more than a scrape does: text format 0.0.4, or
delimited protobuf with the native buckets when native histograms are on) every
``--metrics-push-interval`` seconds from the first test start on, when a test stops, and a last time when
Locust quits (also on SIGTERM or Ctrl-C), so the Pushgateway ends up with the final numbers. Workers never
push: the master has everything.

The group is ``job=<--metrics-push-job>`` (default ``locust``) and ``run=<--metrics-push-run>`` (default: the
``run_id`` of the first test of the process, as in ``locust_test_info``). Counters are cumulative over the
process, so one process is one group; a new process (a new CI run) is a new group.

Faults never touch the test: pushes run in their own greenlet (Locust's gevent patches the sockets
``urllib`` uses), each with a timeout of :data:`PUSH_TIMEOUT_S`. A gateway that is down or answers an
error gives **one** warning; pushes are then retried with exponential backoff (:func:`backoff_delay`)
until one succeeds (logged at info level), then the regular interval resumes. The final push at quit is
tried even during a backoff, bounded by the same timeout.

Credentials: ``https://user:password@host:9091`` uses HTTP basic auth (prometheus_client's
``basic_auth_handler``); the URL is logged without them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import basic_auth_handler, default_handler, push_to_gateway

logger = logging.getLogger(__name__)

_NOTHING = CollectorRegistry(auto_describe=False)
"""An empty registry: what prometheus_client renders when the pusher brings its own body."""

PUSH_TIMEOUT_S = 5.0
"""Timeout of one push, **seconds** (connect, send, answer)."""

MAX_BACKOFF_S = 120.0
"""Longest wait between two retries while the gateway fails, **seconds** (or the interval, if longer)."""


def backoff_delay(interval_s: float, failures: int) -> float:
    """Seconds to wait before the next push after ``failures`` consecutive failed pushes.

    0 failures: ``interval_s``. Then ``interval_s``, 2x, 4x, ... capped at ``max(interval_s, MAX_BACKOFF_S)``.
    """
    if failures <= 0:
        return interval_s
    return float(min(interval_s * 2 ** (failures - 1), max(interval_s, MAX_BACKOFF_S)))


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``(url without user info, user or None, password or None)`` of a Pushgateway URL."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, unquote(parts.username or ""), unquote(parts.password or "")


class Pusher:
    """Pushes ``registry`` to a Pushgateway: periodically from a greenlet, and once more at the end.

    Args:
        registry: what to push (the exporter's registry).
        url: the Pushgateway's base URL, e.g. ``http://pushgateway:9091`` (user info = basic auth).
        job: the ``job`` grouping label.
        interval_s: seconds between pushes (> 0).
        timeout_s: timeout of one push, seconds.
        push_function: for tests; default prometheus_client's ``push_to_gateway``.
        render: returns ``(content_type, body)`` to push, e.g. the exporter's sliced scrape renderer (text
            format 0.0.4, what ``generate_latest(registry)`` gives, or delimited protobuf with native
            histograms), so a push never holds the gevent loop for a whole rendering (``generate_latest`` at
            500 names: about 90 ms); its ``Content-Type`` replaces prometheus_client's. None:
            prometheus_client renders the registry (text).

    Attributes:
        url: the URL without credentials (safe to log).
        grouping_key: ``{"run": ...}`` once :meth:`start` was called.
        pushes, failures: successful and failed pushes so far; ``consecutive_failures``: current streak.
        last_success_time: unix time of the last successful push, or None.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        url: str,
        job: str,
        interval_s: float,
        timeout_s: float = PUSH_TIMEOUT_S,
        push_function: Callable[..., Any] = push_to_gateway,
        render: Callable[[], tuple[str, bytes]] | None = None,
    ) -> None:
        self.registry = registry
        self._render = render
        self.url, user, password = split_credentials(url)
        self.job = job
        self.interval_s = float(interval_s)
        self.timeout_s = float(timeout_s)
        self._push_function = push_function
        if user is not None:

            def handler(url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes) -> Callable[[], None]:
                return basic_auth_handler(url, method, timeout, headers, data, user, password)

            self._handler: Callable[..., Any] = handler
        else:
            self._handler = default_handler
        self.grouping_key: Mapping[str, str] | None = None
        self.pushes = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.last_success_time: float | None = None
        self._warned = False
        self._greenlet: Any = None
        self._wake: Any = None
        self._lock: Any = None
        self._closed = False

    @property
    def started(self) -> bool:
        """True once :meth:`start` was called (a group is known)."""
        return self.grouping_key is not None

    def start(self, run: str) -> None:
        """Start pushing for group ``run`` (first call only; later calls ask for a push now)."""
        import gevent
        from gevent.event import Event
        from gevent.lock import BoundedSemaphore

        if self._closed:
            return
        if self.grouping_key is not None:
            self.request_push()
            return
        self.grouping_key = {"run": run}
        self._wake = Event()
        self._lock = BoundedSemaphore(1)
        self._greenlet = gevent.spawn(self._loop)
        logger.info(
            "locust-metrics: pushing to the Pushgateway at %s every %gs (job=%r, run=%r)",
            self.url, self.interval_s, self.job, run,
        )

    def request_push(self) -> None:
        """Push soon, from the push greenlet (e.g. when a test stops); never blocks. No-op before start."""
        if self._wake is not None and not self._closed and self.consecutive_failures == 0:
            self._wake.set()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(timeout=backoff_delay(self.interval_s, self.consecutive_failures))
            self._wake.clear()
            if self._closed:
                break
            self.push()

    def push(self, final: bool = False) -> bool:
        """Push once now (in the calling greenlet, bounded by the timeout); returns True on success.

        Never raises: a failure is counted, logged as described in the module documentation, and
        retried by the push greenlet after :func:`backoff_delay`.
        """
        if self.grouping_key is None:
            return False
        with self._lock:
            try:
                registry, handler = self.registry, self._handler
                if self._render is not None:
                    # prometheus_client still builds the URL, the grouping key's path and the request (and its
                    # auth); it renders an empty registry, and the handler sends our body and type in its place
                    (content_type, body), send = self._render(), self._handler

                    def handler(url: str, method: str, timeout: float | None, headers: list[tuple[str, str]],
                                data: bytes) -> Callable[[], None]:
                        ours = [(k, v) for k, v in headers if k.lower() != "content-type"]
                        ours.append(("Content-Type", content_type))
                        return send(url, method, timeout, ours, body)  # type: ignore[no-any-return]

                    registry = _NOTHING
                self._push_function(
                    self.url, job=self.job, registry=registry, grouping_key=dict(self.grouping_key),
                    timeout=self.timeout_s, handler=handler,
                )
            except Exception as exc:  # URLError, HTTPError, timeouts, a bug: the test goes on
                self.failures += 1
                self.consecutive_failures += 1
                self._log_failure(exc, final)
                return False
            self.pushes += 1
            self.last_success_time = time.time()
            if self.consecutive_failures:
                logger.info(
                    "locust-metrics: pushing to the Pushgateway at %s works again (after %d failed attempt%s)",
                    self.url, self.consecutive_failures, "s" if self.consecutive_failures > 1 else "",
                )
                self._warned = False
            self.consecutive_failures = 0
            return True

    def _log_failure(self, exc: BaseException, final: bool) -> None:
        reason = _describe(exc)
        if final:
            if self._warned:
                logger.info("locust-metrics: the final push to %s failed as well (%s)", self.url, reason)
            else:
                logger.warning(
                    "locust-metrics: the final push to the Pushgateway at %s failed (%s); "
                    "the Pushgateway does not have this run's last numbers", self.url, reason,
                )
            return
        if not self._warned:
            self._warned = True
            logger.warning(
                "locust-metrics: cannot push to the Pushgateway at %s (%s); the test goes on, retrying with "
                "backoff (next in %gs); further failures are not logged until a push succeeds",
                self.url, reason, backoff_delay(self.interval_s, self.consecutive_failures),
            )
        else:
            logger.debug("locust-metrics: push to %s failed again (%s)", self.url, reason)

    def close(self, final_push: bool = True) -> bool:
        """Stop the push greenlet and, with ``final_push``, push one last time (blocking, bounded).

        Idempotent. Returns True when the final push succeeded (False when none was made or it failed).
        """
        if self._closed:
            return False
        self._closed = True
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=self.timeout_s)
            self._greenlet = None
        if not final_push or self.grouping_key is None:
            return False
        ok = self.push(final=True)
        if ok:
            logger.info("locust-metrics: final push to the Pushgateway at %s done", self.url)
        return ok


def _describe(exc: BaseException) -> str:
    """A one-line reason for a failed push (no credentials: the URL we pushed to holds none)."""
    reason = getattr(exc, "reason", None)
    code = getattr(exc, "code", None)
    if code is not None:  # an HTTPError: the Pushgateway says why in the body (e.g. inconsistent metrics)
        try:
            body = " ".join(exc.read(300).decode("utf-8", "replace").split())  # type: ignore[attr-defined]
        except Exception:
            body = ""
        return f"HTTP {code} {reason or ''}{': ' + body if body else ''}".strip()
    text = str(reason if reason is not None else exc) or type(exc).__name__
    text = " ".join(text.split())
    return text[:300]


__all__ = ["MAX_BACKOFF_S", "PUSH_TIMEOUT_S", "Pusher", "backoff_delay", "split_credentials"]
