"""The snapshot: what a scrape shows, copied at one instant into immutable records with named fields.

Every output is a function of a :class:`Snapshot`: the prometheus_client collector (``collector.py``: library
use, ``name[]`` filters, fallbacks), the fast text/OpenMetrics encoder (``encoders.py``) and push (a text render
served by ``scraping.py``). :func:`take_snapshot` copies one from a :class:`Source` (the exporter) without
yielding: gevent being cooperative, no request event runs in between, so the copy is one consistent instant.
Its per-endpoint part is a scrape's only stall, about 1 µs per endpoint: the accumulators are copied with the
hot records not folded (:meth:`~locust_metrics.recorder.EndpointStats.copy_unfolded`), and readers fold the
copies (:meth:`EndpointSnapshot.folded`), in slices. A part that cannot be read (psutil denied, a runner
without an attribute) is None: counted in :attr:`Snapshot.health`, logged once, and the other parts are served.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

from prometheus_client.utils import floatToGoString

from .recorder import NativeCopy, RequestRecorder, Totals, fold_records

if TYPE_CHECKING:  # pragma: no cover
    from .distributed import DistributedSync
    from .errors import Health
    from .lifecycle import TestLifecycle
    from .options import Settings
    from .push import Pusher
    from .resources import NodeResources, ProcessResources
    from .threshold_checks import ThresholdChecks

logger = logging.getLogger(__name__)

T = TypeVar("T")


class EndpointSnapshot(NamedTuple):
    """One ``(method, name)`` entry. Times in **milliseconds**.

    Attributes:
        method, name: Locust's request type and name (the labels ``method`` and ``name``).
        slow_ms: the endpoint's slow threshold; ``slow_index``: its bucket index (see
            :class:`~locust_metrics.recorder.EndpointStats`).
        failures: ``(error label, failures)`` pairs.
        totals: :class:`~locust_metrics.recorder.Totals` without the hot records (``buckets`` a tuple,
            not cumulative; ``statuses`` ``(status code, requests)`` pairs).
        hot: ``(status, record)`` pairs of the hot records not folded yet (usually none).
        native: the native histogram (:class:`~locust_metrics.recorder.NativeCopy`, read only; its
            :meth:`~locust_metrics.recorder.NativeCopy.total` adds what is not folded yet), copied in the same
            instant; None unless the snapshot was taken with ``natives`` (a protobuf scrape) and native
            histograms are on (``--metrics-native-histograms``).
    """

    method: str
    name: str
    slow_ms: float
    slow_index: int
    failures: tuple[tuple[str, int], ...]
    totals: Totals
    hot: Sequence[tuple[int, Sequence[Any]]]
    native: NativeCopy | None = None

    def folded(self) -> Totals:
        """The totals with the hot records added (``statuses`` as ``(status, requests)`` pairs)."""
        totals = self.totals
        if not self.hot:
            return totals
        added = fold_records(self.hot, totals.buckets, dict(totals.statuses), self.slow_index)
        return Totals(added.buckets, totals.sum_ms + added.sum_ms, totals.slow + added.slow,
                      totals.response_bytes + added.response_bytes, tuple(added.statuses.items()))


class RunnerSnapshot(NamedTuple):
    """The runner: ``users`` by user class (every class of the test, sorted), ``target_users`` and ``state``
    (None without a runner), ``workers`` as ``(state, workers)`` pairs on a master (None elsewhere)."""

    users: tuple[tuple[str, int], ...]
    target_users: float | None
    state: str | None
    workers: tuple[tuple[str, int], ...] | None


class RunSnapshot(NamedTuple):
    """The test run (``run_id`` None before the first test; unix seconds) and the versions."""

    run_id: str | None
    host: str
    locustfile: str
    start_time: float | None
    stop_time: float | None
    version: str
    locust_version: str


class VerdictSnapshot(NamedTuple):
    """One exported threshold verdict: the threshold's text, its endpoint (``""`` unless ``each``), the exact
    verdict, and the observed value in base units."""

    threshold: str
    method: str
    name: str
    passed: bool
    observed: float


class HealthSnapshot(NamedTuple):
    """Our own faults: ``errors`` as ``(source, count)`` pairs (``recorder`` included), scrapes served by
    prometheus_client instead of the fast path, the fast dispatch, failed pushes (None without push)."""

    errors: tuple[tuple[str, int], ...]
    fallbacks: int
    fast_dispatch: bool
    push_failures: int | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a scrape shows, at one instant. Made by :func:`take_snapshot`.

    Attributes:
        time: unix seconds when it was taken.
        labels: the constant labels (``--metrics-label``) as ``(name, value)`` pairs, not escaped.
        les: the ``le`` values of the exported buckets (``+Inf`` last); ``le_keep``: the indices of the
            cumulative counts they show (None: all; see :func:`exported_les`).
        endpoints: one :class:`EndpointSnapshot` per entry, in the recorder's order.
        dropped: requests counted under ``__overflow__`` (``--metrics-max-names``).
        runner, nodes, test, thresholds: the parts besides the endpoints; None when left out (a part that
            failed; ``thresholds`` also without ``--metrics-threshold``). ``nodes``: ``(node, NodeResources)``
            pairs sorted by node.
        health: :class:`HealthSnapshot`, read after the other parts (their failures included).
        natives: True when the endpoints' native histograms were copied (:attr:`EndpointSnapshot.native`;
            ``take_snapshot(source, natives=True)``, for a protobuf scrape).
    """

    time: float
    labels: tuple[tuple[str, str], ...]
    les: tuple[str, ...]
    le_keep: tuple[int, ...] | None
    endpoints: tuple[EndpointSnapshot, ...]
    dropped: int
    runner: RunnerSnapshot | None
    nodes: tuple[tuple[str, NodeResources], ...] | None
    test: RunSnapshot | None
    thresholds: tuple[VerdictSnapshot, ...] | None
    health: HealthSnapshot
    natives: bool = False


class _Counted(Protocol):
    @property
    def fallbacks(self) -> int: ...


class Source(Protocol):
    """What a snapshot is read from (read only): :class:`~locust_metrics.exporter.MetricsExporter`."""

    environment: Any  # Locust's Environment: runner, user classes
    settings: Settings
    recorder: RequestRecorder
    totals: RequestRecorder  # the exported one
    resources: ProcessResources
    sync: DistributedSync
    lifecycle: TestLifecycle
    checks: ThresholdChecks | None
    health: Health
    pusher: Pusher | None
    fast_dispatch: bool
    version: str
    locust_version: str

    @property
    def renderer(self) -> _Counted: ...
    def is_master(self) -> bool: ...
    def node_name(self) -> str: ...


def exported_les(bounds_ms: Sequence[float], hidden: frozenset[float] = frozenset()) -> tuple[list[str], list[int] | None]:
    """The ``le`` values of the exported buckets (``+Inf`` last), and the indices of the recorder's cumulative
    counts they show (None: all). Hidden bounds (:meth:`~locust_metrics.options.Settings.hidden_bounds_ms`)
    are recorded, not exported: leaving a cumulative count out changes no other one."""
    les = [floatToGoString(ms / 1000.0) for ms in bounds_ms if ms not in hidden] + ["+Inf"]
    if not hidden or len(les) == len(bounds_ms) + 1:
        return les, None
    return les, [i for i, ms in enumerate(bounds_ms) if ms not in hidden] + [len(bounds_ms)]


def take_snapshot(source: Source, natives: bool = False) -> Snapshot:
    """Copy what a scrape shows from ``source``, at one instant (no yielding): about 1 µs per endpoint that
    changed since the last snapshot, a fraction of that for the others (their last record is reused:
    :attr:`~locust_metrics.recorder.EndpointStats.snapshot`). With ``natives`` (a protobuf scrape), each
    endpoint's native histogram too (:attr:`EndpointSnapshot.native`: shared copy on write, a few µs more per
    endpoint that changed; None where native histograms are off), and the records reused are those of the last
    snapshot with ``natives`` (:attr:`~locust_metrics.recorder.EndpointStats.native_snapshot`)."""
    recorder = source.totals
    new = tuple.__new__  # a NamedTuple without its Python-level __new__: as cheap as a plain tuple
    records = []
    for e in list(recorder.endpoints.values()):
        # the record of an entry that has not changed since (text and OpenMetrics scrapes neither read nor
        # share the native histograms: their records have none)
        record = e.native_snapshot if natives else e.snapshot
        if record is None or any(map(any, e.hot.values())):
            unfolded = e.copy_unfolded()
            record = new(EndpointSnapshot, (e.method, e.name, e.slow_ms, e.slow_index, tuple(e.failures.items()),
                                            *unfolded, e.copy_native() if natives else None))
            kept = None if unfolded.hot else record
            if natives:
                e.native_snapshot = kept
            else:
                e.snapshot = kept
        records.append(record)
    endpoints = tuple(records)
    les, keep = exported_les(recorder.bounds_ms, source.settings.hidden_bounds_ms())
    labels = tuple((str(k), str(v)) for k, v in source.settings.labels.items())
    runner, nodes = _part(source, "runner", _runner), _part(source, "nodes", _nodes)
    test, thresholds = _part(source, "test", _test), _part(source, "thresholds", _thresholds)
    return Snapshot(time.time(), labels, tuple(les), None if keep is None else tuple(keep), endpoints,
                    recorder.dropped, runner, nodes, test, thresholds, _health(source), natives)


def _part(source: Source, name: str, read: Callable[[Source], T]) -> T | None:
    """``read(source)``, or None when it fails: a scrape never fails for one part. The error is counted (as
    ``source=name``) and logged once per part and exporter, with its traceback."""
    try:
        return read(source)
    except Exception:
        first = name not in source.health.errors
        source.health.error(name)
        if first:
            logger.exception("locust-metrics: could not export the %s metrics; the others are served (further errors "
                             "here are not logged)", name)
        return None


def _runner(source: Source) -> RunnerSnapshot:
    environment = source.environment
    runner = environment.runner
    counts: dict[str, int] = {cls.__name__: 0 for cls in (environment.user_classes or [])}
    if runner is None:
        return RunnerSnapshot(tuple(sorted(counts.items())), None, None, None)
    workers: dict[str, int] | None = None
    if source.is_master():  # users summed over the workers' reports
        summed: dict[str, int] = {}
        workers = {}
        for client in runner.clients.values():
            for user_class, n in (client.user_classes_count or {}).items():
                summed[user_class] = summed.get(user_class, 0) + n
            workers[client.state] = workers.get(client.state, 0) + 1
        counts.update(summed)
    else:
        counts.update(runner.user_classes_count)
    state = str(getattr(runner, "state", "")) or None
    return RunnerSnapshot(tuple(sorted(counts.items())), float(getattr(runner, "target_user_count", 0) or 0), state,
                          None if workers is None else tuple(workers.items()))


def _nodes(source: Source) -> tuple[tuple[str, NodeResources], ...]:
    """This process's CPU and memory and, on a master, every worker's that Locust still knows (see
    :class:`~locust_metrics.distributed.WorkerNodes`)."""
    figures = {source.node_name(): source.resources.sample()}
    if source.is_master():
        figures.update(source.sync.nodes.figures(getattr(source.environment.runner, "clients", None)))
    return tuple(sorted(figures.items(), key=lambda item: item[0]))


def _test(source: Source) -> RunSnapshot:
    run = source.lifecycle
    return RunSnapshot(run.run_id, run.host, run.locustfile, run.start_time, run.stop_time, source.version,
                       source.locust_version)


def _thresholds(source: Source) -> tuple[VerdictSnapshot, ...] | None:
    checks = source.checks
    if checks is None:
        return None
    return tuple(VerdictSnapshot(v.threshold.text, v.method or "", v.name or "", v.passed, v.observed)
                 for v in checks.exported())


def _health(source: Source) -> HealthSnapshot:
    errors = dict(source.health.errors)
    recorder, totals = source.recorder, source.totals
    errors["recorder"] = recorder.errors + (totals.errors if totals is not recorder else 0)
    pusher = source.pusher
    return HealthSnapshot(tuple(errors.items()), source.renderer.fallbacks, source.fast_dispatch,
                          None if pusher is None else pusher.failures)


__all__ = ["EndpointSnapshot", "HealthSnapshot", "RunSnapshot", "RunnerSnapshot", "Snapshot", "Source",
           "VerdictSnapshot", "exported_les", "take_snapshot"]
