"""The test's lifecycle as exported by ``locust_test_*``: the current run, its start and stop times."""

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
