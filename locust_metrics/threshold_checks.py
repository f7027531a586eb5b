"""Thresholds at run time: live verdicts that can abort the test, final verdicts that set the exit code.

:class:`ThresholdChecks` evaluates the ``--metrics-threshold`` thresholds (:mod:`locust_metrics.thresholds`)
on what the exporter has recorded (on a master: the workers' merged data):

* while a test runs, every :data:`EVALUATION_INTERVAL_S` seconds, in slices that give the gevent loop back
  every :data:`SLICE_S` seconds; a failed ``abort`` threshold stops the test (``runner.quit()`` in a
  headless run, ``runner.stop()`` with the web UI) and says which threshold did;
* when the test stops, once more (what a scrape or push shows from then on);
* at ``quitting`` (after the workers' final reports, before Locust decides its exit code), the final verdicts:
  the JUnit report (``--metrics-threshold-junit``) and, when any failed and Locust's own exit code would be
  0, ``environment.process_exit_code`` = ``--metrics-threshold-exit-code`` (default 3); at ``quit``, after
  Locust's own statistics, a k6-like summary in Locust's output.

Workers record (with the thresholds' bucket bounds) but never evaluate: the master decides.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent

from .thresholds import EndpointData, Threshold, Verdict, abort_message, abort_verdict, iter_verdicts, summary

logger = logging.getLogger(__name__)

EVALUATION_INTERVAL_S = 2.0
"""Seconds between two live evaluations (so ``abort`` acts within ``after`` plus this)."""

SLICE_S = 0.001
"""Longest stretch, in **seconds**, of evaluation work before the gevent loop gets a turn."""


def _pause() -> None:
    gevent.sleep(0.000001)  # one turn of the loop (a timer; see rendering.gevent_pause)


class ThresholdChecks:
    """Live and final verdicts of one exporter's thresholds.

    Args:
        thresholds: the parsed thresholds (:attr:`Settings.thresholds`).
        recorder: returns the recorder whose totals are judged (the exporter's ``totals``).
        started: returns the test's start (unix seconds) or None; ``stopped`` its stop or None (for ``rps``).

    Attributes:
        verdicts: the latest verdicts (empty before the first evaluation); ``final`` tells whether they are
            the test's final ones (taken after the test stopped).
        aborted: the verdict that aborted the test, or None.
    """

    def __init__(self, thresholds: tuple[Threshold, ...], recorder: Callable[[], Any],
                 started: Callable[[], float | None], stopped: Callable[[], float | None]) -> None:
        self.thresholds = thresholds
        self._recorder = recorder
        self._started = started
        self._stopped = stopped
        self.verdicts: list[Verdict] = []
        self.final = False
        self.aborted: Verdict | None = None
        self._loop: Any = None

    # ------------------------------------------------------------------ evaluation
    def duration_s(self) -> float:
        """Seconds from the test's start to its stop (or to now while it runs); 0 before a test."""
        start = self._started()
        if start is None:
            return 0.0
        return max((self._stopped() or time.time()) - start, 0.0)

    def _endpoints(self, pause: Callable[[], None] | None) -> list[EndpointData]:
        recorder = self._recorder()
        bounds = recorder.bounds_ms
        data = []
        clock = time.perf_counter
        deadline = clock() + SLICE_S
        for stats in list(recorder.endpoints.values()):
            data.append(EndpointData.from_stats(stats, bounds))
            if pause is not None and clock() >= deadline:
                pause()
                deadline = clock() + SLICE_S
        return data

    def evaluate(self, pause: Callable[[], None] | None = None) -> list[Verdict]:
        """Verdicts of every threshold on the data so far; with ``pause``, it is called between slices of
        work (what runs meanwhile changes nothing already read: at worst a verdict is a few requests old)."""
        endpoints = self._endpoints(pause)
        duration = self.duration_s()
        verdicts: list[Verdict] = []
        clock = time.perf_counter
        deadline = clock() + SLICE_S
        for threshold in self.thresholds:
            for verdict in iter_verdicts(threshold, endpoints, duration):
                verdicts.append(verdict)
                if pause is not None and clock() >= deadline:
                    pause()
                    deadline = clock() + SLICE_S
        return verdicts

    def exported(self) -> Iterator[Verdict]:
        """The verdicts to export: all after the test stopped; while it runs, those with data (a threshold
        over no requests yet is not failing yet)."""
        return iter(self.verdicts if self.final else [v for v in self.verdicts if not v.no_data])

    # ------------------------------------------------------------------ the test
    def test_started(self, environment: Any) -> None:
        """Start the live evaluations (once per test)."""
        self.final = False
        self.aborted = None
        self.verdicts = []
        self._stop_loop()
        self._loop = gevent.spawn(self._run, environment)

    def test_stopped(self) -> None:
        """The test stopped: evaluate once more, in one go (nothing runs any more that it could delay much)."""
        self._stop_loop()
        self.verdicts = self.evaluate()
        self.final = True

    def quitting(self, environment: Any) -> list[Verdict]:
        """Final verdicts (the workers' last reports are in): summary in the output, exit code. Returns them."""
        self._stop_loop()
        if self._started() is None:
            return []
        self.verdicts = self.evaluate()
        self.final = True
        return self.verdicts

    def log_summary(self) -> None:
        """Log the final verdicts, k6-like, one line each (after Locust's own statistics, at ``quit``)."""
        if self.final and self.verdicts:
            logger.info("locust-metrics: %s", summary(self.verdicts, marks=("PASS", "FAIL")).replace("\n", "\n  "))
        if self.aborted is not None:
            logger.info("locust-metrics: the test was aborted by threshold %r", self.aborted.label)

    def _stop_loop(self) -> None:
        if self._loop is not None:
            self._loop.kill(block=False)
            self._loop = None

    def _run(self, environment: Any) -> None:
        while True:
            gevent.sleep(EVALUATION_INTERVAL_S)
            try:
                self.verdicts = self.evaluate(_pause)
                start = self._started()
                verdict = abort_verdict(self.verdicts, time.time() - start) if start is not None else None
            except Exception:
                logger.exception("locust-metrics: could not evaluate the thresholds; live verdicts stop here")
                return
            if verdict is not None:
                self.aborted = verdict
                logger.error("locust-metrics: %s", abort_message(verdict, time.time() - (start or time.time())))
                runner = environment.runner
                headless = bool(getattr(environment.parsed_options, "headless", False))
                gevent.spawn(runner.quit if headless else runner.stop)
                return


def locust_exit_code(environment: Any) -> int:
    """The exit code Locust is about to choose (``main.shutdown``'s rule) when ``quitting`` fires."""
    if environment.process_exit_code is not None:
        return int(environment.process_exit_code)
    runner = environment.runner
    if runner is not None and (len(runner.errors) or len(runner.exceptions)):
        return int(getattr(environment.parsed_options, "exit_code_on_error", 1))
    from locust import log

    return 2 if getattr(log, "unhandled_greenlet_exception", False) else 0
