"""Recorders for unit tests: one built from options as the exporter builds it, and one that counts the requests
its hot path leaves to the careful path."""

from __future__ import annotations

from typing import Any

from locust_metrics.options import Settings
from locust_metrics.recorder import RequestRecorder


def make_recorder(**options: Any) -> RequestRecorder:
    """A :class:`~locust_metrics.recorder.RequestRecorder` with the bounds, thresholds, cap and native histograms of
    ``Settings.from_kwargs(**options)`` (as :class:`~locust_metrics.exporter.MetricsExporter` makes its own)."""
    settings = Settings.from_kwargs(**options)
    return RequestRecorder(settings.bounds_ms(), settings.slow_threshold_ms, settings.slow_thresholds,
                           settings.max_names, settings.native())


class CountingRecorder(RequestRecorder):
    """Counts the requests that the hot path leaves to the careful path (``careful_calls``)."""

    careful_calls = 0

    def _record_carefully(self, *args: Any) -> None:
        self.careful_calls += 1
        super()._record_carefully(*args)
