"""The data model: per-endpoint accumulators filled by Locust's ``request`` event (the hot path).

One :class:`EndpointStats` holds everything we export for one Locust statistics entry, i.e. one
``(method, name)`` pair: a non-cumulative histogram of response times, their sum, the slow count, the
response bytes, completed requests by status code and failures by error label.

The hot path, :meth:`RequestRecorder.on_request`, is a plain function called by Locust for every request:
one dict lookup, one ``bisect``, a handful of integer additions. It takes no lock (gevent is cooperative:
nothing else runs while it runs), touches no prometheus_client object and formats no string. Everything
that is rare (a new endpoint, a new status code, a failure, bad input) is moved to slow paths. Rendering
(``exposition.py``) reads these objects at scrape time; distributed mode (``distributed.py``) ships and
merges them.

Units: Locust reports response times in **milliseconds** (float or ``None``); we keep milliseconds here and
convert to seconds only when rendering.
"""

from __future__ import annotations

import logging
import math
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

from .options import SlowThreshold

logger = logging.getLogger(__name__)

OVERFLOW = "__overflow__"
"""Name (and error label) under which requests beyond the caps are counted."""

MAX_ERRORS_PER_ENDPOINT = 20
"""Most distinct ``error`` label values kept per endpoint; further ones count under :data:`OVERFLOW`."""

MAX_FAILURE_MESSAGE = 120
"""Failure messages are trimmed to this many characters in the ``error`` label."""

NO_STATUS = 0
"""Status key for requests with no response or no numeric status code (exported as ``"0"``)."""

try:  # Locust's exception for ``response.failure(...)`` in ``catch_response`` blocks
    from locust.exception import CatchResponseError
except ImportError:  # pragma: no cover - Locust always has it
    CatchResponseError = ()  # type: ignore[assignment,misc]


class EndpointStats:
    """Accumulators of one ``(method, name)`` statistics entry.

    Attributes:
        method, name: Locust's request type and request name (the labels ``method`` and ``name``).
        buckets: list of ints, one per bucket upper bound plus the ``+Inf`` bucket; **not** cumulative:
            ``buckets[i]`` counts response times ``t`` with ``bounds[i-1] < t <= bounds[i]`` (ms).
        sum_ms: sum of response times, milliseconds.
        slow: requests with a response time greater than ``slow_ms``.
        slow_ms: this endpoint's slow threshold, milliseconds.
        response_bytes: sum of Locust's ``response_length``.
        statuses: ``{status code (int): completed requests}``; :data:`NO_STATUS` (0) = no numeric status.
        failures: ``{error label (str): failures}``.
    """

    __slots__ = ("method", "name", "buckets", "sum_ms", "slow", "slow_ms", "response_bytes", "statuses", "failures")

    def __init__(self, method: str, name: str, n_buckets: int, slow_ms: float) -> None:
        self.method = method
        self.name = name
        self.buckets = [0] * n_buckets
        self.sum_ms = 0.0
        self.slow = 0
        self.slow_ms = slow_ms
        self.response_bytes = 0
        self.statuses: dict[int, int] = {}
        self.failures: dict[str, int] = {}

    @property
    def count(self) -> int:
        """Requests with a response time (the histogram's ``_count``)."""
        return sum(self.buckets)

    @property
    def requests(self) -> int:
        """Completed requests, all statuses (Locust's "Request Count")."""
        return sum(self.statuses.values())

    def add_failure(self, label: str, n: int = 1) -> None:
        """Count ``n`` failures under ``label``, folding into :data:`OVERFLOW` past the per-endpoint cap."""
        failures = self.failures
        if label in failures:
            failures[label] += n
        elif len(failures) < MAX_ERRORS_PER_ENDPOINT or label == OVERFLOW:
            failures[label] = n
        else:
            failures[OVERFLOW] = failures.get(OVERFLOW, 0) + n


_HTTP_LABELS: dict[int, str] = {}


def error_label(status: Any, exception: Any) -> str:
    """The ``error`` label of a failed request.

    ``"HTTP <code>"`` when the response has a numeric status >= 400; else the ``response.failure(...)``
    message (or a string exception), trimmed to :data:`MAX_FAILURE_MESSAGE` characters; else the
    exception's class name (e.g. ``"ConnectionRefusedError"``). Never the exception's full text, which
    often holds a URL.
    """
    if type(status) is int and status >= 400:
        label = _HTTP_LABELS.get(status)
        if label is None:
            label = f"HTTP {status}"
            if len(_HTTP_LABELS) < 1000:  # cache the common ones; bounded against odd status codes
                _HTTP_LABELS[status] = label
        return label
    if isinstance(exception, str):
        message = exception
    elif CatchResponseError and isinstance(exception, CatchResponseError):
        message = str(exception)
    else:
        return type(exception).__name__
    message = " ".join(message.split())  # one line: no newlines or runs of white space in a label
    return message[:MAX_FAILURE_MESSAGE] if message else type(exception).__name__


class RequestRecorder:
    """Accumulates Locust ``request`` events per ``(method, name)``; bounded by ``max_names``.

    Args:
        bounds_ms: histogram bucket upper bounds in milliseconds, ascending (``+Inf`` implicit).
        default_slow_ms: slow threshold in milliseconds for names without a per-endpoint one.
        slow_thresholds: per-endpoint thresholds (exact names win over regexes, regexes in order).
        max_names: most distinct ``(method, name)`` entries; further ones count under
            ``name="__overflow__"`` (same method) and in :attr:`dropped`.

    Attributes:
        endpoints: ``{(method, name): EndpointStats}``, the exported entries plus overflow entries.
        dropped: requests folded into an overflow entry.
        on_request: the ``request`` event listener (a closure; add it with
            ``environment.events.request.add_listener(recorder.on_request)``).
    """

    def __init__(
        self,
        bounds_ms: Iterable[float],
        default_slow_ms: float,
        slow_thresholds: Iterable[SlowThreshold] = (),
        max_names: int = 500,
    ) -> None:
        self.configure(bounds_ms, default_slow_ms, slow_thresholds, max_names)
        self.endpoints: dict[tuple[str, str], EndpointStats] = {}
        # the hot path's index of the same entries, {name: {method: EndpointStats}}: two lookups with
        # str keys (hashes cached) are cheaper than building and hashing a (method, name) tuple
        self._by_name: dict[str, dict[str, EndpointStats]] = {}
        self.named = 0  # entries counted against max_names (overflow entries are not)
        self.dropped = 0
        self._warned: set[str] = set()
        self.on_request = self._make_listener()

    def configure(
        self, bounds_ms: Iterable[float], default_slow_ms: float, slow_thresholds: Iterable[SlowThreshold], max_names: int
    ) -> None:
        """Set bucket bounds (ms), thresholds (ms) and the name cap. Only valid while no endpoint exists."""
        if getattr(self, "endpoints", None):
            raise RuntimeError("configure() needs an empty recorder")
        self.bounds_ms = tuple(float(b) for b in bounds_ms)
        if not hasattr(self, "_bounds"):
            self._bounds: list[float] = []
        self._bounds[:] = self.bounds_ms  # in place: the listener holds this list
        self.default_slow_ms = float(default_slow_ms)
        thresholds = list(slow_thresholds)
        self._exact_thresholds = {t.pattern: t.ms for t in thresholds if not t.regex}
        self._regex_thresholds = [(re.compile(t.pattern), t.ms) for t in thresholds if t.regex]
        self.max_names = int(max_names)

    # ------------------------------------------------------------------ the hot path
    def _make_listener(self) -> Callable[..., None]:
        """Build the ``request`` listener: a closure over the endpoint index and the bounds list.

        Both are mutated in place, never rebound (:meth:`clear` empties the dict, :meth:`configure`
        refills the list), so the listener stays valid for the recorder's life. Locals instead of
        attribute lookups keep it at a few hundred nanoseconds per request.
        """
        by_name = self._by_name
        bounds = self._bounds
        careful = self._record_carefully
        bisect = bisect_left
        label_of = error_label

        def on_request(
            request_type: Any = None,
            name: Any = None,
            response_time: Any = None,
            response_length: Any = 0,
            *,
            response: Any = None,
            context: Any = None,
            exception: Any = None,
            start_time: Any = None,
            url: Any = None,
            **_kwargs: Any,
        ) -> None:
            """Locust ``request`` event listener (locust-metrics). Never raises.

            ``response_time`` is Locust's, in milliseconds (``None``: counted in requests, not in the
            histogram, as in Locust's statistics). A request is a failure when ``exception`` is truthy, as
            in Locust. The status code is ``response.status_code`` (0 when there is no response).
            """
            try:
                endpoint = by_name[name][request_type]
                status = 0 if response is None else response.status_code
                response_bytes = endpoint.response_bytes + response_length
                if response_time is None:
                    endpoint.statuses[status] += 1  # KeyError (new status): nothing changed yet
                    endpoint.response_bytes = response_bytes
                else:
                    index = bisect(bounds, response_time)
                    sum_ms = endpoint.sum_ms + response_time
                    slow = response_time > endpoint.slow_ms
                    if sum_ms - sum_ms:  # NaN or infinite: leave it to the careful path
                        raise ValueError
                    # nothing below raises, but a status seen for the first time (KeyError) or an
                    # unhashable one (TypeError), and then nothing has changed yet
                    endpoint.statuses[status] += 1
                    endpoint.response_bytes = response_bytes
                    endpoint.buckets[index] += 1
                    endpoint.sum_ms = sum_ms
                    if slow:
                        endpoint.slow += 1
                if exception:
                    endpoint.add_failure(label_of(status, exception))
            except Exception:
                careful(request_type, name, response_time, response_length, response, exception)

        return on_request

    # ------------------------------------------------------------------ slow paths
    def _record_carefully(
        self, request_type: Any, name: Any, response_time: Any, response_length: Any, response: Any, exception: Any
    ) -> None:
        """Record one request whose fast path did not complete (nothing of it was recorded yet).

        Handles first sightings (new endpoint, new status code) and sanitizes bad input: non-string
        names, response times that are not finite numbers, missing or non-numeric status codes, a
        non-numeric ``response_length``. Logs a warning once per kind of bad input. Never raises.
        """
        try:
            method = request_type if type(request_type) is str else str(request_type)
            request_name = name if type(name) is str else str(name)
            endpoint = self.endpoint(method, request_name)
            if endpoint.name != request_name:
                self.dropped += 1

            status = NO_STATUS
            if response is not None:
                status = getattr(response, "status_code", NO_STATUS)
                if type(status) is not int:
                    try:
                        status = int(status) if isinstance(status, (int, str)) and str(status).isdigit() else NO_STATUS
                    except (TypeError, ValueError):
                        status = NO_STATUS
                if not 0 < status < 1000:
                    status = NO_STATUS

            if isinstance(response_length, bool) or not isinstance(response_length, (int, float)):
                self._warn_once("response_length", f"non-numeric response_length {response_length!r} on {request_name!r}; counted as 0")
                response_length = 0
            elif not math.isfinite(response_length):
                response_length = 0

            if response_time is not None:
                if isinstance(response_time, bool) or not isinstance(response_time, (int, float)):
                    self._warn_once("response_time", f"non-numeric response_time {response_time!r} on {request_name!r}; not put in the histogram")
                    response_time = None
                elif not math.isfinite(response_time):
                    self._warn_once("response_time_nan", f"response_time {response_time!r} on {request_name!r}; not put in the histogram")
                    response_time = None

            statuses = endpoint.statuses
            statuses[status] = statuses.get(status, 0) + 1
            endpoint.response_bytes += int(response_length)
            if response_time is not None:
                endpoint.buckets[bisect_left(self.bounds_ms, response_time)] += 1
                endpoint.sum_ms += response_time
                if response_time > endpoint.slow_ms:
                    endpoint.slow += 1
            if exception:
                endpoint.add_failure(error_label(status, exception))
        except Exception:  # a bug of ours: never break the user's test
            logger.exception("locust-metrics: could not record a request (name %r); further errors are not logged", name)

    def endpoint(self, method: str, name: str) -> EndpointStats:
        """The entry of ``(method, name)``, created on first sight; past ``max_names`` the overflow entry.

        An overflowed name is not stored (memory stays bounded), so each of its requests takes the careful
        path, which adds it to :attr:`dropped`.
        """
        key = (method, name)
        endpoint = self.endpoints.get(key)
        if endpoint is not None:
            return endpoint
        if self.named >= self.max_names and name != OVERFLOW:
            if "max_names" not in self._warned:
                self._warn_once(
                    "max_names",
                    f"more than {self.max_names} distinct request names (--metrics-max-names); "
                    f"further names, starting with {name!r}, are counted under name={OVERFLOW!r}",
                )
            return self.endpoint(method, OVERFLOW)
        endpoint = EndpointStats(method, name, len(self.bounds_ms) + 1, self.slow_threshold_for(name))
        self.endpoints[key] = endpoint
        self._by_name.setdefault(name, {})[method] = endpoint
        if name != OVERFLOW:
            self.named += 1
        return endpoint

    def clear(self) -> None:
        """Forget every entry and the dropped count (a worker, after shipping them to the master).

        The containers are emptied in place: the request listener holds them.
        """
        self.endpoints.clear()
        self._by_name.clear()
        self.named = 0
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
            "slow": sum(e.slow for e in self.endpoints.values()),
        }

