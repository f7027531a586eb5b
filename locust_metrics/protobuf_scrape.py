"""Scrapes in the protobuf exposition format: what a Prometheus with native histograms on gets.

With ``--metrics-native-histograms``, a scrape whose ``Accept`` header client_golang would answer in
delimited protobuf (:func:`~locust_metrics.protobuf.wants_protobuf`: Prometheus 2.4x with
``--enable-feature=native-histograms``, 3.x with ``scrape_native_histograms``) is answered here: every
family as a ``MetricFamily`` message, the request duration histogram with its classic buckets *and* the
endpoint's native histogram in one message, as client_golang sends them. Every other scrape (text,
OpenMetrics, and every scrape while native histograms are off) is answered as before.

The numbers are the scrape's snapshot's (:class:`~locust_metrics.rendering.Snapshot`, with the native
histograms copied in the same instant: :meth:`~locust_metrics.recorder.EndpointStats.copy_native`), and the
per-endpoint families are encoded endpoint by endpoint, giving the event loop back every
:data:`~locust_metrics.rendering.SLICE_S` seconds, as the text path does. The other families (runner,
users, workers, resources, test, versions) are the collector's prometheus_client families, converted by
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
from .exposition import _status_label
from .recorder import fold_records

if TYPE_CHECKING:  # pragma: no cover
    from prometheus_client.metrics_core import Metric

    from .rendering import ScrapeRenderer, Snapshot

PROTOBUF = pb.PROTOBUF
"""The format name of a protobuf scrape (beside ``rendering.TEXT`` and ``rendering.OPENMETRICS``)."""

CONTENT_TYPE = pb.CONTENT_TYPE
"""``Content-Type`` of a protobuf scrape: ``application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
encoding=delimited``."""

_TYPES = {"counter": pb.COUNTER, "gauge": pb.GAUGE, "histogram": pb.HISTOGRAM, "info": pb.GAUGE,
          "stateset": pb.GAUGE, "unknown": pb.UNTYPED, "untyped": pb.UNTYPED}


def wanted(settings: Any, accept: str | None) -> bool:
    """True when a scrape with this ``Accept`` header gets protobuf: native histograms on
    (``--metrics-native-histograms``) and client_golang would answer the header in delimited protobuf."""
    return bool(getattr(settings, "native_histograms", False)) and pb.wants_protobuf(accept)


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


class ProtobufRenderer:
    """Renders a :class:`~locust_metrics.rendering.Snapshot` (with ``natives``) in the protobuf format, in slices.

    Keeps each endpoint's serialized labels (constant labels, ``method``, ``name``) while the constant labels
    stay the same; the classic bucket bounds come from the snapshot's ``le`` values.
    """

    def __init__(self) -> None:
        self._labels: dict[tuple[str, str], bytes] = {}
        self._labels_key: Any = None
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

    def render_pieces(
        self, renderer: ScrapeRenderer, snapshot: Snapshot, const_labels: dict[str, str],
        pause: Callable[[], None] | None = None,
    ) -> list[bytes]:
        """The protobuf exposition of ``snapshot``: one delimited ``MetricFamily`` per family, in the
        snapshot's order, as consecutive pieces. ``const_labels`` are the raw constant labels (the snapshot
        holds them escaped for text). ``pause`` as for the text path (:meth:`ScrapeRenderer.render_pieces`)."""
        per_endpoint = self._endpoint_metrics(renderer, snapshot, const_labels, pause)
        if pause is not None:
            pause()
        out: list[bytes] = []
        for index, family in enumerate(snapshot.families):
            if index < snapshot.request_families and not family.samples:
                known = _ROLES.get(family.name)
                if known is None:
                    raise ValueError(f"no protobuf rendering for the per-endpoint family {family.name}")
                role, name, kind = known
                out.append(_framed_family(name, family.documentation, kind, per_endpoint[role]))
            else:
                out.append(encode_families([family]))
        return out

    def _endpoint_metrics(
        self, renderer: ScrapeRenderer, snapshot: Snapshot, const_labels: dict[str, str],
        pause: Callable[[], None] | None,
    ) -> dict[str, list[bytes]]:
        """Per role, the endpoints' ``Metric`` messages, each already framed as field 4 of a ``MetricFamily``
        (tag, length, message: :func:`_frame`), so that only a join is left after the last slice."""
        key = tuple(sorted(const_labels.items()))
        if key != self._labels_key or len(self._labels) > 2 * len(snapshot.endpoints) + 64:
            self._labels, self._labels_key = {}, key
        cache = self._labels
        les, keep = snapshot.les, snapshot.le_keep
        bounds_s = [float(le) for le in les[:-1]]
        natives = snapshot.natives or [None] * len(snapshot.endpoints)
        out: dict[str, list[bytes]] = {role: [] for role, _, _ in _ROLES.values()}
        duration, requests, failures = out["duration"], out["requests"], out["failures"]
        slow_metrics, thresholds, sizes = out["slow"], out["threshold"], out["size"]
        histogram, labels_of = pb.histogram_metric, pb.metric_labels

        def counter(labels: bytes, value: float) -> bytes:
            return _frame(pb.counter_metric(labels, value))

        def gauge(labels: bytes, value: float) -> bytes:
            return _frame(pb.gauge_metric(labels, value))

        status_label, extra_label = _status_label, self._extra_label
        clock, next_deadline = time.perf_counter, renderer.pacer.deadline
        deadline = next_deadline() if pause is not None else 0.0
        for (method, name, slow_ms, slow_index, errors, buckets, sum_ms, slow, size, statuses, hot), native in zip(
            snapshot.endpoints, natives
        ):
            if hot:  # what the fast path recorded since the last fold
                by_status = dict(statuses)
                added = fold_records(hot, buckets, by_status, slow_index)
                buckets, sum_ms, size = added.buckets, sum_ms + added.sum_ms, size + added.response_bytes
                slow, statuses = slow + added.slow, by_status.items()
            base = cache.get((method, name))
            if base is None:
                base = cache[(method, name)] = labels_of(sorted([*key, ("method", method), ("name", name)]))
            cumulative = list(accumulate(buckets))
            if keep is not None:
                cumulative = [cumulative[i] for i in keep]
            duration.append(_frame(histogram(base, cumulative[-1], sum_ms / 1000.0, bounds_s, cumulative[:-1],
                                             None if native is None else native.total())))
            merged: dict[str, Any] = {}
            for status, n in statuses:
                label = status_label(status)
                merged[label] = merged.get(label, 0) + n
            for label, n in merged.items():
                requests.append(counter(base + extra_label("status_code", label), n))
            for error, n in errors:
                failures.append(counter(base + extra_label("error", error), n))
            slow_metrics.append(counter(base, slow))
            thresholds.append(gauge(base, slow_ms / 1000.0))
            sizes.append(counter(base, size))
            if pause is not None and clock() >= deadline:
                pause()
                deadline = next_deadline()
        return out


_VARINTS = [pb.varint(n) for n in range(1 << 14)]  # lengths of up to 16 KB: one lookup


def _frame(metric: bytes) -> bytes:
    """``metric`` (a serialized ``Metric``) as field 4 of a ``MetricFamily``: tag, length, message."""
    size = len(metric)
    return b"\x22" + (_VARINTS[size] if size < 16384 else pb.varint(size)) + metric


def _framed_family(name: str, help: str, kind: int, framed: list[bytes]) -> bytes:
    """One delimited ``MetricFamily`` from metrics already framed by :func:`_frame`: the same bytes as
    :func:`locust_metrics.protobuf.family` of the unframed metrics."""
    head: bytes = pb.MetricFamily(name=name, help=help, type=kind).SerializeToString()
    body = head + b"".join(framed)
    return pb.varint(len(body)) + body


_ROLES: dict[str, tuple[str, str, int]] = {
    F.REQUEST_DURATION.name: ("duration", F.REQUEST_DURATION.name, pb.HISTOGRAM),
    F.REQUESTS.name: ("requests", F.REQUESTS.sample(), pb.COUNTER),
    F.FAILURES.name: ("failures", F.FAILURES.sample(), pb.COUNTER),
    F.SLOW_REQUESTS.name: ("slow", F.SLOW_REQUESTS.sample(), pb.COUNTER),
    F.SLOW_THRESHOLD.name: ("threshold", F.SLOW_THRESHOLD.sample(), pb.GAUGE),
    F.RESPONSE_SIZE.name: ("size", F.RESPONSE_SIZE.sample(), pb.COUNTER),
}
"""Per-endpoint families by the name prometheus_client gives them: (role, protobuf family name, type)."""


__all__ = ["CONTENT_TYPE", "PROTOBUF", "ProtobufRenderer", "encode_families", "encode_registry", "wanted"]
