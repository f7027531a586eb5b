"""Errors: the error of a bad option value and its message; the count of our own faults (:class:`Health`).

Kept apart from :mod:`locust_metrics.options` so that every module that validates a value (the options,
the web configuration in :mod:`locust_metrics.security`) can raise it without importing the option table.
"""

from __future__ import annotations

from typing import Any


class OptionError(ValueError):
    """A locust-metrics option has an invalid value.

    The message names the option (flag and environment variable) and the offending value.
    Subclass of :class:`ValueError`.
    """


def env_var(flag: str) -> str:
    """The environment variable of a Locust option: ``--metrics-port`` -> ``LOCUST_METRICS_PORT``."""
    return "LOCUST_" + flag.lstrip("-").upper().replace("-", "_")


def invalid(flag: str, value: Any, why: str) -> OptionError:
    """``OptionError("invalid value for --flag (LOCUST_FLAG): 'value': why")``; ``flag`` may be ``""``."""
    where = f"{flag} ({env_var(flag)})" if flag else "option"
    return OptionError(f"invalid value for {where}: {value!r}: {why}")


class Health:
    """locust-metrics' own faults, exported as ``locust_metrics_errors_total{source}`` (like node_exporter's
    ``node_scrape_collector_success``): a listener of ours that raised (``listener``), a part of a scrape that
    could not be exported (``runner``, ``nodes``, ``test``, ``thresholds``); the recorder's own count of
    requests it could not record (``recorder``) and the renderer's and pusher's counts are read beside it."""

    def __init__(self) -> None:
        self.errors: dict[str, int] = {}

    def error(self, source: str) -> None:
        """Count one fault of ``source``."""
        self.errors[source] = self.errors.get(source, 0) + 1
