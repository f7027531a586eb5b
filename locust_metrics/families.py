"""Every metric family locust-metrics exports, declared once: name, type, help, label names (after the
constant labels of ``--metrics-label``).

The prometheus_client collector (``collector.py``), the fast text/OpenMetrics encoder (``encoders.py``), push
(a text render of the same snapshot) and the README's metrics table (kept equal by a test) read names from here.
Names follow prometheus_client's convention: a counter's family name has no ``_total`` (its sample has).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from .options import flag

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"


@dataclass(frozen=True)
class Family:
    """One exported metric family.

    Attributes:
        name: the family name (a counter's without ``_total``).
        type: :data:`COUNTER`, :data:`GAUGE` or :data:`HISTOGRAM`.
        help: the HELP text (units, where a number comes from).
        labels: label names after the constant labels.
    """

    name: str
    type: str
    help: str
    labels: tuple[str, ...] = ()

    def sample(self, suffix: str = "") -> str:
        """A sample name: ``_total`` for a counter; ``_bucket``/``_count``/``_sum`` (``suffix``) of a histogram."""
        if self.type == COUNTER:
            return self.name + "_total"
        return self.name + suffix

    def series_names(self) -> tuple[str, ...]:
        """Every series name Prometheus may store for this family: a histogram's classic ``_bucket``, ``_count``
        and ``_sum``, and its own name (where Prometheus ingests it as a native histogram)."""
        if self.type == HISTOGRAM:
            return (*(self.name + s for s in ("_bucket", "_count", "_sum")), self.name)
        return (self.sample(),)

    def metric(self, const_labels: list[str]) -> Any:
        """An empty prometheus_client metric family with the constant labels first."""
        names = [*const_labels, *self.labels]
        if self.type == COUNTER:
            return CounterMetricFamily(self.name, self.help, labels=names)
        if self.type == HISTOGRAM:
            return HistogramMetricFamily(self.name, self.help, labels=names)
        return GaugeMetricFamily(self.name, self.help, labels=names)


ENDPOINT = ("method", "name")

# -------------------------------------------------------------------------------- per endpoint (the recorder)
REQUEST_DURATION = Family("locust_request_duration_seconds", HISTOGRAM,
                          "Response time of every request that has one (success or failure), seconds.", ENDPOINT)
REQUESTS = Family("locust_requests", COUNTER,
                  "Completed requests by status code (\"0\": no response or no numeric status).",
                  (*ENDPOINT, "status_code"))
FAILURES = Family("locust_request_failures", COUNTER, "Failed requests by error class.", (*ENDPOINT, "error"))
SLOW_REQUESTS = Family("locust_slow_requests", COUNTER, "Requests slower than the endpoint's slow threshold.",
                       ENDPOINT)
SLOW_THRESHOLD = Family("locust_slow_request_threshold_seconds", GAUGE,
                        "Slow threshold in force for the endpoint, seconds.", ENDPOINT)
RESPONSE_SIZE = Family("locust_response_size_bytes", COUNTER,
                       "Sum of response sizes (Locust's response_length), bytes.", ENDPOINT)
DROPPED_NAMES = Family("locust_metrics_dropped_names", COUNTER,
                       f"Requests counted under name=\"__overflow__\" because of {flag('max_names')}.")

# -------------------------------------------------------------------------------- runner, users, workers
USERS = Family("locust_users", GAUGE, "Running users by user class.", ("user_class",))
USERS_TARGET = Family("locust_users_target", GAUGE, "Target user count of the test.")
RUNNER_STATE = Family("locust_runner_state", GAUGE, "1 for the runner's current state, 0 for the others.",
                      ("state",))
WORKERS = Family("locust_workers", GAUGE, "Workers connected to the master, by state.", ("state",))

# -------------------------------------------------------------------------------- load generators
CPU_SECONDS = Family("locust_process_cpu_seconds", COUNTER,
                     "User + system CPU time of the Locust process, seconds.", ("node",))
CPU_RATIO = Family("locust_process_cpu_usage_ratio", GAUGE,
                   "CPU use of the Locust process; 1.0 = one core (Locust warns at 0.9).", ("node",))
MEMORY = Family("locust_process_resident_memory_bytes", GAUGE, "Resident memory of the Locust process, bytes.",
                ("node",))

# -------------------------------------------------------------------------------- the test, versions
TEST_INFO = Family("locust_test_info", GAUGE, "1; labels describe the current test run.",
                   ("run_id", "host", "locustfile"))
TEST_START = Family("locust_test_start_time_seconds", GAUGE, "Unix time the current test started, seconds.")
TEST_STOP = Family("locust_test_stop_time_seconds", GAUGE, "Unix time the last test stopped, seconds.")
INFO = Family("locust_metrics_info", GAUGE, "1; versions of locust-metrics and Locust.", ("version", "locust_version"))

# -------------------------------------------------------------------------------- thresholds
THRESHOLD_PASSED = Family(
    "locust_threshold_passed", GAUGE,
    "1 when the threshold holds on the data so far (final once the test stopped), else 0. Exact: counted from the "
    "histogram, never interpolated. method/name: the endpoint of an each: threshold.", ("threshold", *ENDPOINT))
THRESHOLD_VALUE = Family(
    "locust_threshold_value", GAUGE,
    "The threshold's observed value in base units (seconds, ratio, requests/s, requests); a percentile here is "
    "interpolated within its bucket (the verdict is not).", ("threshold", *ENDPOINT))

# -------------------------------------------------------------------------------- our own health
ERRORS = Family(
    "locust_metrics_errors", COUNTER,
    "Faults of locust-metrics itself by source: listener (one of our Locust event listeners raised), recorder (a "
    "request it could not record, or a worker's native histogram delta left out as malformed), runner, nodes, test, thresholds (a part of the scrape left out). The test goes "
    "on; each is logged once.", ("source",))
FALLBACKS = Family(
    "locust_metrics_fallbacks", COUNTER,
    "Scrapes served by prometheus_client's encoder because the fast renderer failed or cannot render them exactly "
    "(slower, same bytes).", ("path",))
FAST_DISPATCH = Family(
    "locust_metrics_fast_dispatch", GAUGE,
    "1 while Locust's request event reaches our hot path directly, 0 while our listener is called the ordinary "
    "way (an EventHook we do not know; slower, same counts).")
PUSH_FAILURES = Family("locust_metrics_push_failures", COUNTER,
                       "Pushes to the Pushgateway that failed (retried with backoff).")

ENDPOINT_FAMILIES = (REQUEST_DURATION, REQUESTS, FAILURES, SLOW_REQUESTS, SLOW_THRESHOLD, RESPONSE_SIZE)
"""The per-endpoint families, in exposition order (the fast renderer writes their samples itself)."""

FAMILIES = (*ENDPOINT_FAMILIES, DROPPED_NAMES, USERS, USERS_TARGET, RUNNER_STATE, WORKERS, CPU_SECONDS, CPU_RATIO,
            MEMORY, TEST_INFO, TEST_START, TEST_STOP, INFO, THRESHOLD_PASSED, THRESHOLD_VALUE, ERRORS, FALLBACKS,
            FAST_DISPATCH, PUSH_FAILURES)
"""Every family, in exposition order."""


def series_names() -> frozenset[str]:
    """Every sample name we export (what a Prometheus query may name)."""
    return frozenset(name for family in FAMILIES for name in family.series_names())
