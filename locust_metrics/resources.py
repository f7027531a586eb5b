"""CPU and memory of the load generator: one collector per concern, as node_exporter does.

A Locust process that runs at 100% of a core distorts its own measurements (Locust itself warns at 90%),
so every load generator's CPU and memory are part of the test's results. Figures come from psutil for
*this* process; the CPU usage ratio is Locust's own figure from its ``usage_monitor`` event (psutil
``cpu_percent`` over Locust's monitor interval, 5 s) once that event has fired, so it agrees with Locust's
"CPU usage above 90%" warning.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import psutil


@dataclass(frozen=True)
class NodeResources:
    """Resource figures of one Locust process ("node").

    Attributes:
        cpu_seconds: user + system CPU time of the process since it started, seconds (a counter).
        cpu_usage_ratio: recent CPU use; 1.0 = one full core.
        resident_memory_bytes: resident set size (RSS), bytes.
        timestamp: unix time of the sample, seconds.
    """

    cpu_seconds: float
    cpu_usage_ratio: float
    resident_memory_bytes: int
    timestamp: float

    def to_wire(self) -> list[float]:
        """msgpack-safe form ``[cpu_seconds, cpu_usage_ratio, resident_memory_bytes, timestamp]``."""
        return [self.cpu_seconds, self.cpu_usage_ratio, self.resident_memory_bytes, self.timestamp]

    @classmethod
    def from_wire(cls, data: Any) -> NodeResources:
        """Inverse of :meth:`to_wire`; raises ``ValueError``/``TypeError`` on a malformed list."""
        cpu_seconds, ratio, rss, timestamp = data
        return cls(float(cpu_seconds), float(ratio), int(rss), float(timestamp))


class ProcessResources:
    """Samples CPU and memory of the current process.

    Safe across ``fork`` (``--processes``): the psutil handle is made lazily and remade when the pid
    changes, so a forked worker measures itself, not its parent.
    """

    def __init__(self) -> None:
        self._process: psutil.Process | None = None
        self._pid: int | None = None
        self._locust_cpu_percent: float | None = None

    def _handle(self) -> psutil.Process:
        pid = os.getpid()
        if self._process is None or self._pid != pid:
            self._process = psutil.Process(pid)
            self._pid = pid
            self._process.cpu_percent(None)  # prime the interval-less measurement
            self._locust_cpu_percent = None
        return self._process

    def on_usage_monitor(self, cpu_usage: float = 0.0, **_kwargs: Any) -> None:
        """Locust ``usage_monitor`` listener: keep Locust's CPU usage (percent of one core)."""
        self._locust_cpu_percent = cpu_usage

    def sample(self) -> NodeResources:
        """Current figures of this process (a few tens of microseconds; psutil reads /proc)."""
        process = self._handle()
        with process.oneshot():
            times = process.cpu_times()
            rss = process.memory_info().rss
            own_percent = process.cpu_percent(None)
        percent = self._locust_cpu_percent if self._locust_cpu_percent is not None else own_percent
        return NodeResources(
            cpu_seconds=float(times.user + times.system),
            cpu_usage_ratio=float(percent) / 100.0,
            resident_memory_bytes=int(rss),
            timestamp=time.time(),
        )
