"""Prometheus's protobuf exposition format: content negotiation and the ``MetricFamily`` wire format.

Prometheus scrapes native histograms only in this format (``--enable-feature=native-histograms`` makes it
ask for it first); the text formats have no way to carry them. A scrape answered in this format is a
sequence of ``io.prometheus.client.MetricFamily`` messages (client_model's ``metrics.proto``), each
preceded by its length as a varint ("delimited"), with the content type :data:`CONTENT_TYPE`.

What this module provides (the wiring into a scrape is the caller's):

* :func:`negotiate_format` / :func:`wants_protobuf`: the format client_golang (``expfmt``) chooses for an
  ``Accept`` header: :data:`PROTOBUF`, :data:`OPENMETRICS` or :data:`TEXT`.
* The message classes (:data:`MetricFamily`, :data:`Metric`, :data:`Histogram`, ...), built at import time
  by the ``protobuf`` library from the declaration in :data:`_MESSAGES` (a transcription of
  ``metrics.proto``: same package, names, numbers, types and labels), in a private descriptor pool: no
  generated code, no ``protoc`` at build time, no clash with another package that registers
  ``io.prometheus.client``.
* Encoders that build those messages and serialize them: :func:`counter_metric`, :func:`gauge_metric`,
  :func:`histogram_metric` (one ``Metric`` each: a histogram carries the classic buckets *and* the native
  ones in one message, as client_golang does) and :func:`family` (one delimited ``MetricFamily`` from
  already-serialized metrics). Per-metric serialization lets a caller build a scrape in slices and give the
  event loop back between endpoints: a message's serialization is the concatenation of its fields', so
  joining serialized ``Metric`` messages as field 4 of a family is exactly the library's own output for the
  whole family (``tests/test_native_histograms.py`` checks byte equality).

Units: Prometheus's. Histogram sums and bucket bounds in **seconds**; counts are integers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

from .native import NativeHistogram

PROTOBUF = "protobuf"
"""Delimited protobuf ``MetricFamily`` messages (:data:`CONTENT_TYPE`)."""

OPENMETRICS = "openmetrics"
"""OpenMetrics text (``application/openmetrics-text``); served as today (prometheus_client's negotiation)."""

TEXT = "text"
"""Prometheus text format 0.0.4 (``text/plain``); served as today, and the default."""

PROTO_TYPE = "application/vnd.google.protobuf"
PROTO_PROTOCOL = "io.prometheus.client.MetricFamily"

CONTENT_TYPE = f"{PROTO_TYPE}; proto={PROTO_PROTOCOL}; encoding=delimited"
"""``Content-Type`` of a protobuf scrape response, as client_golang sends it."""

# ------------------------------------------------------------------------------------------------ negotiation


def parse_accept(header: str | None) -> list[tuple[str, str, float, dict[str, str]]]:
    """The clauses of an ``Accept`` header as ``(type, subtype, q, params)``, most preferred first.

    Parsed as client_golang's ``goautoneg.ParseAccept`` does: clauses split at ``,``, parameters at ``;``,
    ``q`` (default 1.0) taken out of the parameters, a clause without ``/`` skipped unless it is ``*``;
    an unparsable ``q`` counts as 0. Sorted by ``q`` (highest first), then concrete types before wildcards;
    ties keep the header's order. Types and parameter names are compared in lower case (HTTP says they are
    case-insensitive; Go compares them as sent, which only matters for a header in upper case). Never raises.
    """
    clauses: list[tuple[str, str, float, dict[str, str]]] = []
    for part in (header or "").split(","):
        media_range, *params = part.strip().split(";")
        pieces = media_range.split("/")
        main = pieces[0].strip().lower()
        if len(pieces) == 1 and main == "*":
            sub = "*"
        elif len(pieces) == 2:
            sub = pieces[1].strip().lower()
        else:
            continue
        q = 1.0
        values: dict[str, str] = {}
        for param in params:
            key, sep, value = param.partition("=")
            if not sep:
                continue
            key = key.strip().lower()
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
                if q != q:  # NaN
                    q = 0.0
            else:
                values[key] = value.strip()
        clauses.append((main, sub, q, values))
    clauses.sort(key=lambda c: (-c[2], c[0] == "*", c[1] == "*"))
    return clauses


def negotiate_format(accept_header: str | None) -> str:
    """The exposition format client_golang would serve for this ``Accept`` header.

    The first clause (in :func:`parse_accept`'s order) that names a format we serve decides:
    ``application/vnd.google.protobuf`` with ``proto=io.prometheus.client.MetricFamily`` and
    ``encoding=delimited`` gives :data:`PROTOBUF`; ``text/plain`` without a version or with ``version=0.0.4``
    gives :data:`TEXT`; ``application/openmetrics-text`` without a version or with 0.0.1 / 1.0.0 gives
    :data:`OPENMETRICS`. Anything else (wildcards, other types, protobuf's debugging encodings ``text`` and
    ``compact-text``, which we do not serve) is skipped; when nothing matches: :data:`TEXT`. Never raises.

    For :data:`TEXT` and :data:`OPENMETRICS` the caller keeps its own negotiation of the exact variant
    (prometheus_client's ``choose_encoder``): this function only tells whether to answer in protobuf.
    """
    for main, sub, _q, params in parse_accept(accept_header):
        if f"{main}/{sub}" == PROTO_TYPE and params.get("proto") == PROTO_PROTOCOL:
            if params.get("encoding") == "delimited":
                return PROTOBUF
            continue
        version = params.get("version", "")
        if main == "text" and sub == "plain" and version in ("", "0.0.4"):
            return TEXT
        if f"{main}/{sub}" == "application/openmetrics-text" and version in ("", "0.0.1", "1.0.0"):
            return OPENMETRICS
    return TEXT


def wants_protobuf(accept_header: str | None) -> bool:
    """True when client_golang would answer this ``Accept`` header in delimited protobuf (:func:`negotiate_format`)."""
    return negotiate_format(accept_header) == PROTOBUF


# ------------------------------------------------------------------------------------------------ messages
_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_SCALARS = {
    "string": _F.TYPE_STRING, "double": _F.TYPE_DOUBLE, "uint64": _F.TYPE_UINT64, "int64": _F.TYPE_INT64,
    "sint32": _F.TYPE_SINT32, "sint64": _F.TYPE_SINT64, "uint32": _F.TYPE_UINT32,
}
_PACKAGE = "io.prometheus.client"

_MESSAGES: dict[str, list[tuple[str, str, int, str]]] = {
    # message: [(label, type, number, name)], transcribed from client_model's io/prometheus/client/metrics.proto
    # (proto2). Message and enum types are given by name; ".google.protobuf.Timestamp" is the well-known type.
    "LabelPair": [("optional", "string", 1, "name"), ("optional", "string", 2, "value")],
    "Gauge": [("optional", "double", 1, "value")],
    "Counter": [
        ("optional", "double", 1, "value"), ("optional", "Exemplar", 2, "exemplar"),
        ("optional", ".google.protobuf.Timestamp", 3, "created_timestamp"),
    ],
    "Quantile": [("optional", "double", 1, "quantile"), ("optional", "double", 2, "value")],
    "Summary": [
        ("optional", "uint64", 1, "sample_count"), ("optional", "double", 2, "sample_sum"),
        ("repeated", "Quantile", 3, "quantile"), ("optional", ".google.protobuf.Timestamp", 4, "created_timestamp"),
    ],
    "Untyped": [("optional", "double", 1, "value")],
    "Histogram": [
        ("optional", "uint64", 1, "sample_count"), ("optional", "double", 4, "sample_count_float"),
        ("optional", "double", 2, "sample_sum"), ("repeated", "Bucket", 3, "bucket"),
        ("optional", ".google.protobuf.Timestamp", 15, "created_timestamp"),
        ("optional", "sint32", 5, "schema"), ("optional", "double", 6, "zero_threshold"),
        ("optional", "uint64", 7, "zero_count"), ("optional", "double", 8, "zero_count_float"),
        ("repeated", "BucketSpan", 9, "negative_span"), ("repeated", "sint64", 10, "negative_delta"),
        ("repeated", "double", 11, "negative_count"), ("repeated", "BucketSpan", 12, "positive_span"),
        ("repeated", "sint64", 13, "positive_delta"), ("repeated", "double", 14, "positive_count"),
        ("repeated", "Exemplar", 16, "exemplars"),
    ],
    "Bucket": [
        ("optional", "uint64", 1, "cumulative_count"), ("optional", "double", 4, "cumulative_count_float"),
        ("optional", "double", 2, "upper_bound"), ("optional", "Exemplar", 3, "exemplar"),
    ],
    "BucketSpan": [("optional", "sint32", 1, "offset"), ("optional", "uint32", 2, "length")],
    "Exemplar": [
        ("repeated", "LabelPair", 1, "label"), ("optional", "double", 2, "value"),
        ("optional", ".google.protobuf.Timestamp", 3, "timestamp"),
    ],
    "Metric": [
        ("repeated", "LabelPair", 1, "label"), ("optional", "Gauge", 2, "gauge"), ("optional", "Counter", 3, "counter"),
        ("optional", "Summary", 4, "summary"), ("optional", "Untyped", 5, "untyped"),
        ("optional", "Histogram", 7, "histogram"), ("optional", "int64", 6, "timestamp_ms"),
    ],
    "MetricFamily": [
        ("optional", "string", 1, "name"), ("optional", "string", 2, "help"), ("optional", "MetricType", 3, "type"),
        ("repeated", "Metric", 4, "metric"), ("optional", "string", 5, "unit"),
    ],
}
_ENUMS = {"MetricType": [("COUNTER", 0), ("GAUGE", 1), ("SUMMARY", 2), ("UNTYPED", 3), ("HISTOGRAM", 4), ("GAUGE_HISTOGRAM", 5)]}

COUNTER, GAUGE, SUMMARY, UNTYPED, HISTOGRAM, GAUGE_HISTOGRAM = 0, 1, 2, 3, 4, 5
"""``MetricType`` values (a family's ``type``)."""


def _build_pool() -> descriptor_pool.DescriptorPool:
    """A private descriptor pool holding ``google/protobuf/timestamp.proto`` and our ``metrics.proto``."""
    pool = descriptor_pool.DescriptorPool()
    timestamp = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(timestamp)
    pool.Add(timestamp)
    file = descriptor_pb2.FileDescriptorProto(
        name="io/prometheus/client/metrics.proto", package=_PACKAGE, syntax="proto2",
        dependency=["google/protobuf/timestamp.proto"],
    )
    for enum_name, values in _ENUMS.items():
        enum = file.enum_type.add(name=enum_name)
        for value_name, number in values:
            enum.value.add(name=value_name, number=number)
    for message_name, fields in _MESSAGES.items():
        message = file.message_type.add(name=message_name)
        for label, type_name, number, field_name in fields:
            field = message.field.add(name=field_name, number=number, label=_OPTIONAL if label == "optional" else _REPEATED)
            if type_name in _SCALARS:
                field.type = _SCALARS[type_name]
            elif type_name in _ENUMS:
                field.type, field.type_name = _F.TYPE_ENUM, f".{_PACKAGE}.{type_name}"
            else:
                field.type = _F.TYPE_MESSAGE
                field.type_name = type_name if type_name.startswith(".") else f".{_PACKAGE}.{type_name}"
    pool.Add(file)
    return pool


_POOL = _build_pool()


def _message_class(name: str) -> Any:
    # Any: the class is made at run time from the descriptor, and google.protobuf has no type stubs here; the
    # encoders below give what they get from it (``SerializeToString()``: bytes) a declared type.
    descriptor = _POOL.FindMessageTypeByName(f"{_PACKAGE}.{name}")
    get_class = getattr(message_factory, "GetMessageClass", None)
    if get_class is not None:  # protobuf >= 4.22
        return get_class(descriptor)
    return message_factory.MessageFactory(_POOL).GetPrototype(descriptor)  # protobuf 4.21


MetricFamily = _message_class("MetricFamily")
Metric = _message_class("Metric")
Histogram = _message_class("Histogram")
Bucket = _message_class("Bucket")
BucketSpan = _message_class("BucketSpan")
LabelPair = _message_class("LabelPair")
Counter = _message_class("Counter")
Gauge = _message_class("Gauge")


# ------------------------------------------------------------------------------------------------ encoding
def varint(value: int) -> bytes:
    """``value`` (an int >= 0) as a protobuf base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


Labels = bytes | Iterable[tuple[str, str]]
"""A metric's labels: ``(name, value)`` pairs in the order to send (Prometheus sorts them; client_golang sends
them sorted by name), or those pairs already serialized by :func:`metric_labels` (cache them per endpoint:
labels are about a third of the work of a small metric)."""


def metric_labels(labels: Iterable[tuple[str, str]]) -> bytes:
    """The ``label`` fields of a ``Metric``, serialized. A ``Metric``'s serialization is its fields' in field
    order, and ``label`` is field 1, so these bytes followed by the serialization of a ``Metric`` without
    labels are exactly the serialization of the ``Metric`` with them (what the ``*_metric`` functions do)."""
    serialized: bytes = Metric(label=[LabelPair(name=name, value=value) for name, value in labels]).SerializeToString()
    return serialized


def _prefix(labels: Labels) -> bytes:
    return labels if isinstance(labels, bytes) else metric_labels(labels)


def counter_metric(labels: Labels, value: float) -> bytes:
    """One serialized ``Metric`` of a counter: its labels (see :data:`Labels`) and value."""
    metric = Metric()
    metric.counter.value = value
    serialized: bytes = metric.SerializeToString()
    return _prefix(labels) + serialized


def gauge_metric(labels: Labels, value: float) -> bytes:
    """One serialized ``Metric`` of a gauge: its labels (see :data:`Labels`) and value."""
    metric = Metric()
    metric.gauge.value = value
    serialized: bytes = metric.SerializeToString()
    return _prefix(labels) + serialized


_BUCKET_TEMPLATES: dict[tuple[float, ...], Any] = {}


def _bucket_template(upper_bounds_s: Sequence[float]) -> Any:
    """A ``Histogram`` holding only the classic buckets' upper bounds (counts 0), cached per set of bounds:
    copying it and setting the counts is cheaper than making the ``Bucket`` messages anew."""
    key = tuple(upper_bounds_s)
    template = _BUCKET_TEMPLATES.get(key)
    if template is None:
        if len(_BUCKET_TEMPLATES) >= 16:
            _BUCKET_TEMPLATES.clear()
        template = _BUCKET_TEMPLATES[key] = Histogram(
            bucket=[Bucket(cumulative_count=0, upper_bound=bound) for bound in key])
    return template


def histogram_metric(
    labels: Labels,
    count: int,
    sum_s: float,
    upper_bounds_s: Sequence[float] = (),
    cumulative_counts: Sequence[int] = (),
    native: NativeHistogram | None = None,
) -> bytes:
    """One serialized ``Metric`` of a histogram, with classic and native buckets in one message.

    Args:
        labels: see :data:`Labels` (no ``le``).
        count: observations (``sample_count``): the classic ``_count``, and the native histogram's count,
            which must equal ``native.count`` (zero bucket plus buckets; Prometheus does not check).
        sum_s: sum of the observations in **seconds** (``sample_sum``).
        upper_bounds_s: the classic buckets' upper bounds in seconds, ascending, without ``+Inf``
            (Prometheus adds the ``+Inf`` bucket from ``count``; client_golang leaves it out too).
        cumulative_counts: the classic buckets' cumulative counts, one per bound (``le``).
        native: the native histogram, or None for a classic-only histogram. Sent: its ``schema``,
            ``zero_threshold``, ``zero_count`` and positive buckets as spans and deltas
            (:meth:`NativeHistogram.spans_and_deltas`); an empty one gets a no-op span (offset 0, length 0),
            as client_golang sends, so that it is still read as a native histogram.

    Raises:
        ValueError: ``cumulative_counts`` and ``upper_bounds_s`` differ in length.
    """
    if len(cumulative_counts) != len(upper_bounds_s):
        raise ValueError(f"{len(upper_bounds_s)} bucket bounds but {len(cumulative_counts)} counts")
    metric = Metric()
    histogram = metric.histogram
    if upper_bounds_s:
        histogram.CopyFrom(_bucket_template(upper_bounds_s))
        for bucket, n in zip(histogram.bucket, cumulative_counts):
            bucket.cumulative_count = n
    histogram.sample_count = count
    histogram.sample_sum = sum_s
    if native is not None:
        histogram.schema = native.schema
        histogram.zero_threshold = native.zero_threshold
        histogram.zero_count = native.zero_count
        spans, deltas = native.spans_and_deltas()
        if spans:
            for offset, length in spans:
                histogram.positive_span.add(offset=offset, length=length)
            histogram.positive_delta.extend(deltas)
        else:
            histogram.positive_span.add(offset=0, length=0)
    serialized: bytes = metric.SerializeToString()
    return _prefix(labels) + serialized


def family(name: str, help: str, type: int, metrics: Iterable[bytes]) -> bytes:
    """One ``MetricFamily``, delimited (its length as a varint first), from serialized ``Metric`` messages.

    ``name`` is the name Prometheus stores: the text format's name of every sample but a histogram's
    ``_bucket``/``_count``/``_sum`` and a summary's, so a counter keeps its ``_total`` (client_golang sends
    ``locust_requests_total``). ``help`` is the HELP text, ``type`` a ``MetricType`` (:data:`COUNTER`,
    :data:`GAUGE`, :data:`HISTOGRAM`, ...). The result is byte for byte the library's
    ``MetricFamily(name=..., help=..., type=..., metric=[...]).SerializeToString()`` after its length.
    """
    head: bytes = MetricFamily(name=name, help=help, type=type).SerializeToString()
    parts = [head]
    for metric in metrics:
        parts.append(b"\x22")  # field 4 (metric), wire type 2 (length-delimited)
        parts.append(varint(len(metric)))
        parts.append(metric)
    body = b"".join(parts)
    return varint(len(body)) + body


__all__ = [
    "CONTENT_TYPE",
    "COUNTER",
    "GAUGE",
    "HISTOGRAM",
    "Labels",
    "OPENMETRICS",
    "PROTOBUF",
    "TEXT",
    "Bucket",
    "BucketSpan",
    "Histogram",
    "LabelPair",
    "Metric",
    "MetricFamily",
    "counter_metric",
    "family",
    "gauge_metric",
    "histogram_metric",
    "metric_labels",
    "negotiate_format",
    "parse_accept",
    "varint",
    "wants_protobuf",
]
