"""Scrapes in the protobuf exposition format: what a Prometheus with native histograms on gets.

With ``--metrics-native-histograms``, a scrape whose ``Accept`` header client_golang would answer in
delimited protobuf (:func:`~locust_metrics.protobuf.wants_protobuf`: Prometheus 2.4x with
``--enable-feature=native-histograms``, 3.x with ``scrape_native_histograms``) is answered here: every
family as a ``MetricFamily`` message, the request duration histogram with its classic buckets *and* the
endpoint's native histogram in one message, as client_golang sends them. Every other scrape (text,
OpenMetrics, and every scrape while native histograms are off) is answered as before.

The numbers are the scrape's snapshot's (:class:`~locust_metrics.snapshot.Snapshot` taken with ``natives``:
each :class:`~locust_metrics.snapshot.EndpointSnapshot`'s ``native`` copied in the same instant,
:meth:`~locust_metrics.recorder.EndpointStats.copy_native`), and the per-endpoint families are encoded endpoint
by endpoint by :class:`ProtobufEncoder`, giving the event loop back every
:data:`~locust_metrics.encoders.SLICE_S` seconds, as the text encoder does. The other families (runner, users,
workers, resources, test, versions, thresholds, health) are :mod:`~locust_metrics.collector`'s
prometheus_client families of the same snapshot, converted by
:func:`encode_families`, which is also the fallback encoder over the whole registry (``name[]`` filters;
classic buckets only).

Names as client_golang sends them: a counter's family keeps its ``_total``; a histogram's family is its base
name. Units as Prometheus's: seconds (``sample_sum``, bucket bounds), bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from . import families as F
from . import protobuf as pb
from .collector import other_families, request_families, status_label
from .encoders import SLICE_S

if TYPE_CHECKING:  # pragma: no cover
    from prometheus_client.metrics_core import Metric

    from .snapshot import Snapshot

PROTOBUF = pb.PROTOBUF
"""The format name of a protobuf scrape (beside ``encoders.TEXT`` and ``encoders.OPENMETRICS``)."""

CONTENT_TYPE = pb.CONTENT_TYPE
"""``Content-Type`` of a protobuf scrape: ``application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
encoding=delimited``."""

_TYPES = {"counter": pb.COUNTER, "gauge": pb.GAUGE, "histogram": pb.HISTOGRAM, "info": pb.GAUGE,
          "stateset": pb.GAUGE, "unknown": pb.UNTYPED, "untyped": pb.UNTYPED}


def wants(accept: str | None) -> bool:
    """True when client_golang would answer a scrape with this ``Accept`` header in delimited protobuf (a
    Prometheus with native histograms on). The scrape gets protobuf only while native histograms are recorded
    (``--metrics-native-histograms``): :meth:`~locust_metrics.scraping.ScrapeRenderer.serve` checks that."""
    return pb.wants_protobuf(accept)


def negotiated() -> tuple[str, Callable[[Any], bytes], str]:
    """``(format, encoder, content_type)`` of a protobuf scrape, as :func:`~locust_metrics.encoders.negotiate`
    returns them: :data:`PROTOBUF`, :func:`encode_registry` (prometheus_client's registry: the fallback) and
    :data:`CONTENT_TYPE`."""
    return PROTOBUF, encode_registry, CONTENT_TYPE


def _labels(pairs: Iterable[tuple[str, str]]) -> bytes:
    return pb.metric_labels(sorted(pairs))


def encode_families(families: Iterable[Metric]) -> bytes:
    """prometheus_client metric families as delimited ``MetricFamily`` messages (classic histograms only).

    Counters are sent under their ``_total`` name with the ``_total`` samples (``_created`` samples are left
    out, as client_golang has no such series); gauges, info and stateset families as gauges; histograms as
    one ``Metric`` per label set from their ``_bucket`` (``+Inf`` left out: Prometheus takes it from the
    count), ``_count`` and ``_sum`` samples. Labels sorted by name.
    """
    out: list[bytes] = []
    for family in families:
        kind = _TYPES.get(family.type, pb.UNTYPED)
        if kind == pb.HISTOGRAM:
            series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
            for sample in family.samples:
                labels = dict(sample.labels)
                le = labels.pop("le", None)
                entry = series.setdefault(tuple(sorted(labels.items())), {"bounds": [], "counts": [], "count": 0,
                                                                          "sum": 0.0})
                if sample.name.endswith("_bucket") and le is not None:
                    if le != "+Inf":
                        entry["bounds"].append(float(le))
                        entry["counts"].append(int(sample.value))
                elif sample.name.endswith("_count"):
                    entry["count"] = int(sample.value)
                elif sample.name.endswith("_sum"):
                    entry["sum"] = float(sample.value)
            metrics = [pb.histogram_metric(pb.metric_labels(key), e["count"], e["sum"], e["bounds"], e["counts"])
                       for key, e in series.items()]
            out.append(pb.family(family.name, family.documentation, pb.HISTOGRAM, metrics))
            continue
        name = family.name + ("_total" if kind == pb.COUNTER else "_info" if family.type == "info" else "")
        metrics = []
        for sample in family.samples:
            if sample.name != name:  # a counter's _created
                continue
            label_bytes = _labels(sample.labels.items())
            if kind == pb.COUNTER:
                metrics.append(pb.counter_metric(label_bytes, sample.value))
            elif kind == pb.GAUGE:
                metrics.append(pb.gauge_metric(label_bytes, sample.value))
            else:
                message = pb.Metric()
                message.untyped.value = sample.value
                serialized: bytes = message.SerializeToString()
                metrics.append(label_bytes + serialized)
        out.append(pb.family(name, family.documentation, kind, metrics))
    return b"".join(out)


def encode_registry(registry: Any) -> bytes:
    """:func:`encode_families` of everything ``registry`` collects (prometheus_client's encoder signature)."""
    return encode_families(registry.collect())


class ProtobufEncoder:
    """The protobuf encoder of snapshots (:class:`~locust_metrics.snapshot.Snapshot` taken with ``natives``):
    :meth:`render_pieces` is a function of the snapshot, in slices, like
    :meth:`~locust_metrics.encoders.Encoder.render_pieces`.

    Keeps each endpoint's serialized labels (constant labels, ``method``, ``name``) while the constant labels
    stay the same; the classic bucket bounds come from the snapshot's ``le`` values.
    """

    def __init__(self) -> None:
        self._labels: dict[tuple[str, str], bytes] = {}
        self._labels_key: tuple[tuple[str, str], ...] | None = None
        self._extra: dict[tuple[str, str], bytes] = {}

    def _extra_label(self, name: str, value: str) -> bytes:
        """One serialized label (``status_code`` or ``error``), cached (at most 10,000: 500 names x 20 errors)."""
        key = (name, value)
        label = self._extra.get(key)
        if label is None:
            if len(self._extra) >= 10_000:
                self._extra.clear()
            label = self._extra[key] = pb.metric_labels([key])
        return label

    def render(
        self, snapshot: Snapshot, pause: Callable[[], None] | None = None,
        next_deadline: Callable[[], float] | None = None,
    ) -> bytes:
        """The protobuf exposition of ``snapshot``: :meth:`render_pieces` joined."""
        return b"".join(self.render_pieces(snapshot, pause, next_deadline))

    def render_pieces(
        self, snapshot: Snapshot, pause: Callable[[], None] | None = None,
        next_deadline: Callable[[], float] | None = None,
    ) -> list[bytes]:
        """The protobuf exposition of ``snapshot``: one delimited ``MetricFamily`` per family of
        :func:`~locust_metrics.collector.families`, in its order, as consecutive pieces; the request duration
        histograms with their endpoints' native histograms (:attr:`EndpointSnapshot.native`; classic buckets
        only where it is None). ``pause`` and ``next_deadline`` as for
        :meth:`~locust_metrics.encoders.Encoder.render_pieces`. Raises ``ValueError`` for a per-endpoint family
        it does not know (the caller then serves :func:`encode_registry`)."""
        per_endpoint = self._endpoint_metrics(snapshot, pause, next_deadline)
        if pause is not None:
            pause()
        templates = request_families(snapshot, samples=False)  # the per-endpoint ones without samples
        out: list[bytes] = []
        for index, family in enumerate(templates + other_families(snapshot)):
            if index < len(templates) and not family.samples:
                known = _ROLES.get(family.name)
                if known is None:
                    raise ValueError(f"no protobuf rendering for the per-endpoint family {family.name}")
                role, name, kind = known
                out += _framed_family(name, family.documentation, kind, per_endpoint[role])
            else:
                out.append(encode_families([family]))
        return out

    def _endpoint_metrics(
        self, snapshot: Snapshot, pause: Callable[[], None] | None, next_deadline: Callable[[], float] | None,
    ) -> dict[str, list[bytes]]:
        """Per role, the endpoints' ``Metric`` messages, each framed as field 4 of a ``MetricFamily`` (tag,
        length, message: :func:`_frame`), in pieces of about :data:`PIECE_BYTES`: each message is appended to
        its role's buffer as it is made, and the buffers become pieces when they hold that much. Neither
        thousands of small ``bytes`` nor one of megabytes are alive at once (at 500 names with 20 error labels
        each, the small ones were 3 MB at the scrape's peak, and blocks of megabytes leave the allocator's
        heap large after the scrape)."""
        key = snapshot.labels
        if key != self._labels_key or len(self._labels) > 2 * len(snapshot.endpoints) + 64:
            self._labels, self._labels_key = {}, key
        cache = self._labels
        keep = snapshot.le_keep
        bounds_s = [float(le) for le in snapshot.les[:-1]]
        buffers: dict[str, bytearray] = {role: bytearray() for role, _, _ in _ROLES.values()}
        out: dict[str, list[bytes]] = {role: [] for role in buffers}
        duration, requests, failures = buffers["duration"], buffers["requests"], buffers["failures"]
        slow_metrics, thresholds, sizes = buffers["slow"], buffers["threshold"], buffers["size"]

        def flush() -> None:
            for role, buffer in buffers.items():
                if buffer:
                    out[role].append(bytes(buffer))
                    buffer.clear()

        histogram, labels_of = pb.histogram_metric, pb.metric_labels

        counter, gauge = pb.counter_metric, pb.gauge_metric

        extra_label = self._extra_label
        clock = time.perf_counter
        if next_deadline is None:
            def next_deadline() -> float:
                return clock() + SLICE_S
        deadline = next_deadline() if pause is not None else 0.0
        for endpoint in snapshot.endpoints:
            totals = endpoint.folded() if endpoint.hot else endpoint.totals  # hot: recorded since the last fold
            method, name, native = endpoint.method, endpoint.name, endpoint.native
            base = cache.get((method, name))
            if base is None:
                base = cache[(method, name)] = labels_of(sorted([*key, ("method", method), ("name", name)]))
            cumulative = list(accumulate(totals.buckets))
            if keep is not None:
                cumulative = [cumulative[i] for i in keep]
            duration += _frame(histogram(base, cumulative[-1], totals.sum_ms / 1000.0, bounds_s, cumulative[:-1],
                                         None if native is None else native.total()))
            merged: dict[str, int] = {}
            for status, n in totals.statuses:
                label = status_label(status)
                merged[label] = merged.get(label, 0) + n
            for label, n in merged.items():
                requests += _frame(counter(base + extra_label("status_code", label), n))
            for error, n in endpoint.failures:
                failures += _frame(counter(base + extra_label("error", error), n))
            slow_metrics += _frame(counter(base, totals.slow))
            thresholds += _frame(gauge(base, endpoint.slow_ms / 1000.0))
            sizes += _frame(counter(base, totals.response_bytes))
            if len(duration) + len(requests) + len(failures) >= PIECE_BYTES:
                flush()
            if pause is not None and clock() >= deadline:
                pause()
                deadline = next_deadline()
        flush()
        return out


PIECE_BYTES = 1 << 16
"""About how many bytes of framed metrics a piece of a per-endpoint family holds (:class:`ProtobufEncoder`)."""

_VARINTS = [pb.varint(n) for n in range(1 << 14)]  # lengths of up to 16 KB: one lookup


def _frame(metric: bytes) -> bytes:
    """``metric`` (a serialized ``Metric``) as field 4 of a ``MetricFamily``: tag, length, message."""
    size = len(metric)
    return b"\x22" + (_VARINTS[size] if size < 16384 else pb.varint(size)) + metric


def _framed_family(name: str, help: str, kind: int, framed: list[bytes]) -> list[bytes]:
    """One delimited ``MetricFamily`` from pieces of metrics already framed by :func:`_frame`, as consecutive
    pieces: their join is the same bytes as :func:`locust_metrics.protobuf.family` of the unframed metrics
    (the metrics are not copied into one ``bytes`` with the family's head: a family can be megabytes)."""
    head: bytes = pb.MetricFamily(name=name, help=help, type=kind).SerializeToString()
    return [pb.varint(len(head) + sum(map(len, framed))), head, *framed]


_ROLES: dict[str, tuple[str, str, int]] = {
    F.REQUEST_DURATION.name: ("duration", F.REQUEST_DURATION.name, pb.HISTOGRAM),
    F.REQUESTS.name: ("requests", F.REQUESTS.sample(), pb.COUNTER),
    F.FAILURES.name: ("failures", F.FAILURES.sample(), pb.COUNTER),
    F.SLOW_REQUESTS.name: ("slow", F.SLOW_REQUESTS.sample(), pb.COUNTER),
    F.SLOW_THRESHOLD.name: ("threshold", F.SLOW_THRESHOLD.sample(), pb.GAUGE),
    F.RESPONSE_SIZE.name: ("size", F.RESPONSE_SIZE.sample(), pb.COUNTER),
}
"""Per-endpoint families by the name prometheus_client gives them: (role, protobuf family name, type)."""


__all__ = ["CONTENT_TYPE", "PROTOBUF", "ProtobufEncoder", "encode_families", "encode_registry", "negotiated", "wants"]
