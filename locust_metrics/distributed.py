"""Distributed runs: workers ship what they recorded to the master, which merges it exactly.

Locust workers send a report to the master every few seconds (``report_to_master``) and once more when
they stop or quit. We add our own key, :data:`PAYLOAD_KEY`, to that report (Locust's keys untouched):
the *delta* of every accumulator since the worker's previous report, plus the worker's CPU and memory.
The master adds the deltas to its own :class:`~locust_metrics.recorder.RequestRecorder` in
``worker_report``. Counts are integers added once each, so the master's totals equal the sum of what
the workers recorded, exactly, and they never go backwards, whatever happens to a worker.

Wire format (msgpack-safe: lists, ints, floats, strings; map keys are strings)::

    {"v": 1,
     "node": "worker-0",                     # Locust's worker index
     "bounds": [5.0, 10.0, ...],             # bucket upper bounds, milliseconds
     "dropped": 0,                           # requests the worker folded into "__overflow__"
     "resources": [cpu_seconds, cpu_usage_ratio, resident_memory_bytes, unix_time],
     "entries": [[method, name, [bucket counts...], sum_ms, slow, response_bytes,
                  [[status_code, n], ...], [[error, n], ...]], ...]}
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from typing import Any

from .options import flag
from .recorder import OVERFLOW, EndpointStats, RequestRecorder
from .resources import NodeResources

logger = logging.getLogger(__name__)

PAYLOAD_KEY = "locust_metrics"
"""Our key inside Locust's worker report ``data``."""

WIRE_VERSION = 1


def take_payload(recorder: RequestRecorder, node: str, resources: NodeResources | None) -> dict[str, Any]:
    """Everything ``recorder`` accumulated since the last call, as a wire payload; resets the recorder.

    The recorder starts over empty (endpoints are re-created on their next request), so each request is
    shipped exactly once.
    """
    endpoints = dict(recorder.endpoints)
    dropped = recorder.dropped
    recorder.clear()
    entries = []
    for e in endpoints.values():
        buckets, sum_ms, slow, response_bytes, statuses = e.folded()
        entries.append([
            e.method, e.name, buckets, sum_ms, slow, response_bytes,
            [[status, n] for status, n in statuses.items()],
            [[error, n] for error, n in e.failures.items()],
        ])
    return {
        "v": WIRE_VERSION,
        "node": node,
        "bounds": list(recorder.bounds_ms),
        "dropped": dropped,
        "resources": resources.to_wire() if resources is not None else None,
        "entries": entries,
    }


class PayloadMerger:
    """Adds worker payloads to a recorder (the master's). Malformed payloads are logged once and skipped.

    When a worker used other bucket bounds than the master (a misconfiguration: Locust forwards the
    master's options to workers on spawn), each worker bucket is added to the master's smallest bound
    that is >= its own; counts, sums and slow counts stay exact, bucket placement may coarsen.
    """

    def __init__(self, recorder: RequestRecorder) -> None:
        self.recorder = recorder
        self._bucket_maps: dict[tuple[float, ...], list[int]] = {}
        self._warned = False

    def merge(self, payload: dict[str, Any]) -> int:
        """Add one payload; returns the number of requests it held. Raises ``ValueError`` if malformed."""
        if not isinstance(payload, dict) or payload.get("v") != WIRE_VERSION:
            raise ValueError(f"unknown locust-metrics payload version: {payload.get('v') if isinstance(payload, dict) else payload!r}")
        recorder = self.recorder
        bounds = tuple(payload["bounds"])
        bucket_map = None if bounds == recorder.bounds_ms else self._bucket_map(bounds)
        merged = 0
        for method, name, buckets, sum_ms, slow, response_bytes, statuses, failures in payload["entries"]:
            endpoint: EndpointStats = recorder.endpoint(method, name)
            requests = endpoint.add_totals(buckets, sum_ms, slow, response_bytes, statuses, bucket_map)
            if endpoint.name != name:
                recorder.dropped += requests  # folded into the overflow entry by the master's cap
            for error, n in failures:
                endpoint.add_failure(error, n)
            merged += requests
        recorder.dropped += int(payload.get("dropped") or 0)
        return merged

    def _bucket_map(self, bounds: tuple[float, ...]) -> list[int]:
        """Index in the master's buckets for each of a worker's buckets (the last one is +Inf)."""
        mapping = self._bucket_maps.get(bounds)
        if mapping is None:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "locust-metrics: a worker uses other histogram buckets than the master; its counts are "
                    "re-binned to the master's buckets (totals stay exact). Use the same %s "
                    "and slow thresholds everywhere.", flag("buckets"),
                )
            own = self.recorder.bounds_ms
            mapping = [bisect_left(own, bound) for bound in bounds] + [len(own)]
            self._bucket_maps[bounds] = mapping
        return mapping


__all__ = ["PAYLOAD_KEY", "PayloadMerger", "take_payload", "OVERFLOW"]
