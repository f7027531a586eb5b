"""The prometheus_client collector: metric families as pure functions of a snapshot.

:func:`families` turns a :class:`~locust_metrics.snapshot.Snapshot` into prometheus_client metric families
(names, types, help and label names from ``families.py``): what ``generate_latest(exporter.registry)``, a
``name[]``-filtered scrape, a fallback of our fast path and an application serving its own registry get.
:class:`LocustCollector` takes a snapshot at each ``collect()``. The fast encoder (``encoders.py``) writes the
per-endpoint samples itself and takes everything else from here, so both give the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import accumulate
from typing import Any

from prometheus_client.metrics_core import Metric

from . import families as F
from .families import Family
from .snapshot import RunSnapshot, Snapshot

RUNNER_STATES = ("ready", "spawning", "running", "cleanup", "stopping", "stopped", "missing")
"""Locust's runner states (``locust.runners.STATE_*``), all exported by ``locust_runner_state``."""

WORKER_STATES = ("ready", "spawning", "running", "missing")
"""Worker states counted by ``locust_workers`` on a master."""

HEALTH_SOURCES = ("listener", "recorder", "runner", "nodes", "test", "thresholds")
"""The ``source`` label values of ``locust_metrics_errors_total`` (all exported, 0 until a fault)."""


class FamilyList(list[Metric]):
    """A list of metric families with the ``collect()`` method prometheus_client's encoders call."""

    def collect(self) -> Iterator[Metric]:
        return iter(self)


class _Labels:
    """Makes metric families whose samples all carry the constant labels first."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.names = [name for name, _ in snapshot.labels]
        self.values = [value for _, value in snapshot.labels]

    def make(self, family: Family) -> Any:
        """An empty prometheus_client metric family of ``family`` (see :mod:`locust_metrics.families`)."""
        return family.metric(self.names)

    def __call__(self, *values: str) -> list[str]:
        return self.values + list(values)


def status_label(status: int) -> str:
    """The ``status_code`` label of a status: the number, or ``"0"`` outside 100-999 (no numeric status)."""
    return str(status) if 100 <= status <= 999 else "0"


def families(snapshot: Snapshot) -> list[Metric]:
    """Every family of ``snapshot``, in exposition order."""
    return request_families(snapshot) + other_families(snapshot)


def request_families(snapshot: Snapshot, samples: bool = True) -> list[Metric]:
    """The per-endpoint families and the dropped names; with ``samples=False`` the per-endpoint ones are empty
    (templates: HELP, TYPE and label names for the fast encoder)."""
    labels = _Labels(snapshot)
    duration, requests, failures, slow, threshold, size = (labels.make(f) for f in F.ENDPOINT_FAMILIES)
    les, keep = snapshot.les, snapshot.le_keep
    for endpoint in snapshot.endpoints if samples else ():
        names = labels(endpoint.method, endpoint.name)
        totals = endpoint.folded()
        cumulative = list(accumulate(totals.buckets))
        if keep is not None:
            cumulative = [cumulative[i] for i in keep]
        duration.add_metric(names, list(zip(les, cumulative)), totals.sum_ms / 1000.0)
        statuses: dict[str, int] = {}
        for status, n in totals.statuses:
            label = status_label(status)
            statuses[label] = statuses.get(label, 0) + n
        for label, n in statuses.items():
            requests.add_metric(names + [label], n)
        for error, n in endpoint.failures:
            failures.add_metric(names + [error], n)
        slow.add_metric(names, totals.slow)
        threshold.add_metric(names, endpoint.slow_ms / 1000.0)
        size.add_metric(names, totals.response_bytes)
    dropped = labels.make(F.DROPPED_NAMES)
    dropped.add_metric(labels(), snapshot.dropped)
    return [duration, requests, failures, slow, threshold, size, dropped]


def other_families(snapshot: Snapshot) -> list[Metric]:
    """The families besides the recorder's: runner, users, workers, resources, test, versions, thresholds, health.
    A few dozen series; a part the snapshot left out (None) has none."""
    labels = _Labels(snapshot)
    out: list[Metric] = []
    if snapshot.runner is not None:
        runner = snapshot.runner
        users, target, state = labels.make(F.USERS), labels.make(F.USERS_TARGET), labels.make(F.RUNNER_STATE)
        if runner.target_users is not None:
            target.add_metric(labels(), runner.target_users)
        for user_class, n in runner.users:
            users.add_metric(labels(user_class), n)
        current = runner.state
        states = RUNNER_STATES if current in RUNNER_STATES or current is None else (*RUNNER_STATES, current)
        for name in states:
            state.add_metric(labels(name), 1.0 if name == current else 0.0)
        out += [users, target, state]
        if runner.workers is not None:
            workers, counts = labels.make(F.WORKERS), dict(runner.workers)
            for name in WORKER_STATES:
                workers.add_metric(labels(name), counts.get(name, 0))
            out.append(workers)
    if snapshot.nodes is not None:
        cpu, ratio, memory = labels.make(F.CPU_SECONDS), labels.make(F.CPU_RATIO), labels.make(F.MEMORY)
        for node, figures in snapshot.nodes:
            cpu.add_metric(labels(node), figures.cpu_seconds)
            ratio.add_metric(labels(node), figures.cpu_usage_ratio)
            memory.add_metric(labels(node), figures.resident_memory_bytes)
        out += [cpu, ratio, memory]
    if snapshot.test is not None:
        out += _test(snapshot.test, labels)
    if snapshot.thresholds is not None:
        passed, value = labels.make(F.THRESHOLD_PASSED), labels.make(F.THRESHOLD_VALUE)
        for verdict in snapshot.thresholds:
            names = labels(verdict.threshold, verdict.method, verdict.name)
            passed.add_metric(names, 1.0 if verdict.passed else 0.0)
            value.add_metric(names, verdict.observed)
        out += [passed, value]
    return out + _health(snapshot, labels)


def _test(run: RunSnapshot, labels: _Labels) -> list[Metric]:
    out = []
    if run.run_id is not None:
        info = labels.make(F.TEST_INFO)
        info.add_metric(labels(run.run_id, run.host, run.locustfile), 1.0)
        start = labels.make(F.TEST_START)
        start.add_metric(labels(), run.start_time or 0.0)
        out += [info, start]
    if run.stop_time is not None:
        stop = labels.make(F.TEST_STOP)
        stop.add_metric(labels(), run.stop_time)
        out.append(stop)
    info = labels.make(F.INFO)
    info.add_metric(labels(run.version, run.locust_version), 1.0)
    return out + [info]


def _health(snapshot: Snapshot, labels: _Labels) -> list[Metric]:
    health = snapshot.health
    errors, counts = labels.make(F.ERRORS), dict(health.errors)
    for source in HEALTH_SOURCES:
        errors.add_metric(labels(source), counts.get(source, 0))
    fallbacks = labels.make(F.FALLBACKS)
    fallbacks.add_metric(labels("render"), health.fallbacks)
    fast = labels.make(F.FAST_DISPATCH)
    fast.add_metric(labels(), 1.0 if health.fast_dispatch else 0.0)
    out = [errors, fallbacks, fast]
    if health.push_failures is not None:
        push = labels.make(F.PUSH_FAILURES)
        push.add_metric(labels(), health.push_failures)
        out.append(push)
    return out


class LocustCollector:
    """prometheus_client collector of one exporter: everything in the README's metrics table.

    Args:
        snapshot: takes a :class:`~locust_metrics.snapshot.Snapshot` (the exporter's ``snapshot``).
            ``collect()`` runs at scrape time, on the gevent loop: one snapshot, one consistent instant.
    """

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def describe(self) -> list[Metric]:
        """Every family we export, without samples (no snapshot: registering must not render): the names by
        which a registry finds this collector, for a ``name[]``-filtered scrape among others."""
        return [family.metric([]) for family in F.FAMILIES]

    def collect(self) -> Iterator[Metric]:
        return iter(families(self.snapshot()))


__all__ = ["HEALTH_SOURCES", "RUNNER_STATES", "WORKER_STATES", "FamilyList", "LocustCollector", "families",
           "other_families", "request_families", "status_label"]
