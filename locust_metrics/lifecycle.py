"""The test's lifecycle as exported by ``locust_test_*``: the current run, its start and stop times; the wait for
Locust's CSV files at exit."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from .recorder import label_text


def locustfile_label(parsed_options: Any) -> str:
    """The locustfile(s) of ``parsed_options`` as a label: base names, comma-separated; ``""`` when none."""
    value = getattr(parsed_options, "locustfile", None) if parsed_options is not None else None
    if not value:
        return ""
    files = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return ",".join(os.path.basename(str(f).strip()) for f in files)


class TestLifecycle:
    """The current run and its start/stop times (unix seconds), from Locust's ``test_start``/``test_stop``.

    Attributes:
        run_id: 12 hex digits, new at each test start; None before the first test.
        host, locustfile: labels of ``locust_test_info`` (label-safe text).
        start_time, stop_time: unix seconds; ``stop_time`` is None while the test runs.
    """

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.host = ""
        self.locustfile = ""
        self.start_time: float | None = None
        self.stop_time: float | None = None

    def started(self, environment: Any) -> None:
        """A test starts: a new ``run_id``, the host and locustfile of ``environment``, the start time."""
        self.run_id = uuid.uuid4().hex[:12]
        self.host = label_text(environment.host or "")
        self.locustfile = label_text(locustfile_label(environment.parsed_options))
        self.start_time = time.time()
        self.stop_time = None

    def stopped(self) -> float:
        """The test stopped: sets and returns the stop time."""
        self.stop_time = time.time()
        return self.stop_time


def wait_for_locust_csv(parsed_options: Any, last_change_time: float | None) -> None:
    """With ``--csv``, stay up until Locust's CSV writer has rewritten its files after the last change (unix
    seconds: test stop, worker report; None: nothing to wait for).

    Locust rewrites its CSV files once a second (``locust.stats.CSV_STATS_INTERVAL_SEC``) and not again
    at exit, so a process that exits right after the test stops leaves CSV files up to a second old,
    which then disagree with what we exported. Waiting at most that second makes Locust's CSV final.
    """
    if not getattr(parsed_options, "csv_prefix", None) or last_change_time is None:
        return
    import gevent
    from locust.stats import CSV_STATS_INTERVAL_SEC

    remaining = last_change_time + CSV_STATS_INTERVAL_SEC + 0.2 - time.time()
    if remaining > 0:
        gevent.sleep(remaining)
