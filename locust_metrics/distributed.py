"""Distributed runs: workers ship what they recorded to the master, which merges it exactly.

:class:`DistributedSync` is the exporter's part in a distributed run: on a worker it adds the payload to
Locust's report (and adopts the master's recording options); on the master it merges payloads and keeps
each worker's CPU and memory (:class:`WorkerNodes`).

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
                  [[status_code, n], ...], [[error, n], ...]], ...],
     "native": [[schema, zero_count, [index, n, ...]] or None, ...]}  # native histograms on: one per entry

``native`` (only with ``--metrics-native-histograms``) holds each entry's native histogram delta
(:meth:`~locust_metrics.native.NativeHistogram.to_wire`), at the worker's schema; the master adds it to its
own at its schema (a finer one is reduced on the way: exact, see ``native.py``).
"""

from __future__ import annotations

import dataclasses
import logging
from bisect import bisect_left
from typing import Any

from .options import OPTIONS, Settings, flag
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
    natives: list[Any] = []
    for e in endpoints.values():
        totals = e.folded()
        natives.append(None if e.native is None else e.native.to_wire())
        entries.append([
            e.method, e.name, totals.buckets, totals.sum_ms, totals.slow, totals.response_bytes,
            [[status, n] for status, n in totals.statuses.items()],
            [[error, n] for error, n in e.failures.items()],
        ])
    payload = {
        "v": WIRE_VERSION,
        "node": node,
        "bounds": list(recorder.bounds_ms),
        "dropped": dropped,
        "resources": resources.to_wire() if resources is not None else None,
        "entries": entries,
    }
    if any(wire is not None for wire in natives):
        payload["native"] = natives
    return payload


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
        self._warned_native = False

    def merge(self, payload: dict[str, Any]) -> int:
        """Add one payload; returns the number of requests it held. Raises ``ValueError`` if malformed."""
        if not isinstance(payload, dict) or payload.get("v") != WIRE_VERSION:
            raise ValueError(f"unknown locust-metrics payload version: {payload.get('v') if isinstance(payload, dict) else payload!r}")
        recorder = self.recorder
        bounds = tuple(payload["bounds"])
        bucket_map = None if bounds == recorder.bounds_ms else self._bucket_map(bounds)
        merged = 0
        natives = payload.get("native") or ()
        for position, (method, name, buckets, sum_ms, slow, response_bytes, statuses, failures) in enumerate(
            payload["entries"]
        ):
            endpoint: EndpointStats = recorder.endpoint(method, name)
            requests = endpoint.add_totals(buckets, sum_ms, slow, response_bytes, statuses, bucket_map)
            if endpoint.native is not None:
                wire = natives[position] if position < len(natives) else None
                if wire is not None:
                    endpoint.add_native_wire(wire)
                elif any(buckets):
                    self._warn_native()
            if endpoint.name != name:
                recorder.dropped += requests  # folded into the overflow entry by the master's cap
            for error, n in failures:
                endpoint.add_failure(error, n)
            merged += requests
        recorder.dropped += int(payload.get("dropped") or 0)
        return merged

    def _warn_native(self) -> None:
        if not self._warned_native:
            self._warned_native = True
            logger.warning(
                "locust-metrics: a worker sent no native histograms while the master records them (%s): "
                "native counts miss its requests; classic counts stay exact", flag("native_histograms"),
            )

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


class WorkerNodes:
    """The master's view of each worker's CPU and memory: the figures of its latest report, by node name.

    A worker that quit normally (Locust removed it while it was not ``missing``) keeps its last figures
    until the next test starts (:meth:`forget_gone`), so the final scrape of a headless run has every
    node; a worker that Locust dropped after marking it ``missing`` disappears with it.
    """

    def __init__(self) -> None:
        self._workers: dict[str, list[Any]] = {}  # client id -> [node, NodeResources, seen missing]

    def reported(self, client_id: str, node: str, figures: NodeResources) -> None:
        """A report of ``client_id`` (node name ``node``) with its figures."""
        self._workers[client_id] = [node, figures, False]

    def figures(self, clients: Any) -> dict[str, NodeResources]:
        """``{node: figures}`` of the workers to export, given Locust's ``runner.clients``."""
        result = {}
        for client_id, entry in list(self._workers.items()):
            client = clients.get(client_id) if clients is not None else None
            if client is not None:
                entry[2] = getattr(client, "state", None) == "missing"
            elif entry[2]:  # dropped by Locust after it went missing
                del self._workers[client_id]
                continue
            result[entry[0]] = entry[1]
        return result

    def forget_gone(self, clients: Any) -> None:
        """A test starts: forget the workers Locust no longer knows."""
        for client_id in list(self._workers):
            if clients is None or clients.get(client_id) is None:
                del self._workers[client_id]


class DistributedSync:
    """Ships a worker's deltas inside Locust's reports, and merges them on the master.

    Args:
        recorder: the recorder the hot path fills (a worker empties it at every report; the master merges
            into it).
        totals: what a worker's own endpoint exports (``--metrics-worker-port``): a cumulative copy of
            what it shipped, or None when it serves nothing.

    Attributes:
        nodes: :class:`WorkerNodes` (master).
        last_report_time: unix time of the master's latest merged report, or None.
    """

    def __init__(self, recorder: RequestRecorder, totals: RequestRecorder | None = None) -> None:
        self.recorder = recorder
        self.totals = totals
        self._merger = PayloadMerger(recorder)
        self._totals_merger = PayloadMerger(totals) if totals is not None else None
        self._pending: list[dict[str, Any]] = []
        self.nodes = WorkerNodes()
        self.last_report_time: float | None = None

    def report(self, data: dict[str, Any], node: str, figures: NodeResources) -> None:
        """Worker: add the deltas since the last report (and CPU and memory) to Locust's report ``data``."""
        payloads = [*self._pending, take_payload(self.recorder, node, figures)]
        self._pending = []
        if self._totals_merger is not None:
            for payload in payloads:
                self._totals_merger.merge(payload)
        data[PAYLOAD_KEY] = payloads

    def merge(self, client_id: str, data: dict[str, Any] | None) -> bool:
        """Master: merge a worker's report; returns True when it held our payload."""
        import time

        payloads = (data or {}).get(PAYLOAD_KEY)
        if not payloads:
            return False
        for payload in payloads:
            self._merger.merge(payload)
            if payload.get("resources"):
                self.nodes.reported(client_id, str(payload["node"]), NodeResources.from_wire(payload["resources"]))
        self.last_report_time = time.time()
        return True

    def follow_master(self, settings: Settings, parsed_options: Any, node: str) -> Settings:
        """Worker: Locust copies the master's custom options to workers on spawn; returns ``settings`` with every
        recording option (:attr:`~locust_metrics.options.Option.recording`: buckets, slow thresholds, name cap,
        labels, thresholds) of ``parsed_options``, and reconfigures the recorder when they change how it records.

        Data recorded under the old settings is kept and shipped as it is with the next report. When native
        histograms turn on or off (``--metrics-native-histograms``), the recorder's ``record`` / ``on_request``
        are made anew: the caller attaches the new listener (:class:`~locust_metrics.exporter.MetricsExporter`).
        """
        master = Settings.from_options(parsed_options, recording_only=True)
        adopted = dataclasses.replace(settings, **{o.field: getattr(master, o.field) for o in OPTIONS if o.recording})

        def recording(s: Settings) -> tuple[Any, ...]:
            return s.bounds_ms(), s.slow_threshold_ms, s.slow_thresholds, s.max_names, s.native()

        if adopted != settings and recording(adopted) != recording(settings):
            self.reconfigure(node, lambda recorder: recorder.configure(*recording(adopted)))
        return adopted

    def reconfigure(self, node: str, configure: Any) -> None:
        """Worker: the recording settings change; what was recorded under the old ones is shipped as it is
        with the next report, then ``configure(recorder)`` applies the new ones."""
        if self.recorder.endpoints or self.recorder.dropped:
            self._pending.append(take_payload(self.recorder, node, None))
        configure(self.recorder)
        if self.totals is not None:
            if not self.totals.endpoints and not self.totals.dropped:  # nothing shipped yet: the new settings
                configure(self.totals)  # too (native histograms on the worker's own endpoint)
            self._totals_merger = PayloadMerger(self.totals)
