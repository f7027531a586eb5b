"""Hostile request data, as custom clients fire it: names, times, lengths, responses and exceptions that
break naive exporters. Only values Locust's own statistics survive (so Locust's exit code is 1, from the
failures, and any exception of ours would show as exit code 2).

``HOSTILE_PLUGIN=0`` runs the same test without locust-metrics (the baseline exit code).
``HOSTILE_MODE=cardinality`` fires a new name and a new error message with (nearly) every request instead,
:data:`CARDINALITY_REQUESTS` of them in all.

The data is ``tests/support/hostile.py``'s (shared with the in-process tests); ``tests/`` must be on PYTHONPATH,
as the tests' ``child_env()`` puts it. By hand: ``PYTHONPATH=.:tests locust -f tests/locustfiles/hostile.py``.
"""

import itertools
import os
import random

from locust import User, constant, task
from locust.exception import CatchResponseError, StopUser
from support.fakes import Response
from support.hostile import EXCEPTIONS, HUGE_ERRORS, LENGTHS, METHODS, NAMES, RESPONSES, TIMES

if os.environ.get("HOSTILE_PLUGIN", "1") == "1":
    import locust_metrics  # noqa: F401

CARDINALITY = os.environ.get("HOSTILE_MODE") == "cardinality"
CARDINALITY_REQUESTS = 8_000
"""Requests fired in cardinality mode (each of a new name), 20 per task run: a fixed number, however fast the machine."""


class HostileUser(User):
    wait_time = constant(0.005)
    counter = itertools.count()

    @task
    def fire(self):
        fire = self.environment.events.request.fire
        if CARDINALITY:
            for _ in range(20):
                n = next(self.counter)
                if n >= CARDINALITY_REQUESTS:  # all fired: the users stop, the run time ends the test
                    raise StopUser()
                fire(request_type="GET", name=f"/item/{n}", response_time=random.random() * 100, response_length=10,
                     response=Response(500 if n % 3 == 0 else 200), context={},
                     exception=CatchResponseError(f"error number {n}") if n % 3 == 0 else None)
            return
        if random.random() < 0.05:
            fire(request_type="GET", name="huge-error", response_time=1.0, response_length=0, response=None,
                 context={}, exception=random.choice(HUGE_ERRORS))
        fire(
            request_type=random.choice(METHODS),
            name=random.choice(NAMES),
            response_time=random.choice(TIMES),
            response_length=random.choice(LENGTHS),
            response=random.choice(RESPONSES),
            context={},
            exception=random.choice(EXCEPTIONS),
        )
