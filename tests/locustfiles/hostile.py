"""Hostile request data, as custom clients fire it: names, times, lengths, responses and exceptions that
break naive exporters. Only values Locust's own statistics survive (so Locust's exit code is 1, from the
failures, and any exception of ours would show as exit code 2).

``HOSTILE_PLUGIN=0`` runs the same test without locust-metrics (the baseline exit code).
``HOSTILE_MODE=cardinality`` fires a new name and a new error message with (nearly) every request instead.
"""

import itertools
import os
import random

from locust import User, constant, task
from locust.exception import CatchResponseError

if os.environ.get("HOSTILE_PLUGIN", "1") == "1":
    import locust_metrics  # noqa: F401

CARDINALITY = os.environ.get("HOSTILE_MODE") == "cardinality"

NAMES = [
    'q"uote', "back\\slash", "new\nline", "tab\tand\rreturn", "ünïcødé ✓ 🚀", "", " ", "x" * 3000,
    "y" * 1000, "nul\x00byte", "{}[]=,", 'le="0.1"', "__overflow__",
]  # only strings: Locust's own statistics table sorts names and fails on anything else
METHODS = ["GET", "post", 'M"E\\T\nH', "", "ü" * 5]


class Response:
    def __init__(self, status_code):
        self.status_code = status_code


class NoStatus:
    pass


class RaisingStatus:
    @property
    def status_code(self):
        raise RuntimeError("no status for you")


RESPONSES = [None, Response(200), Response(404), Response("abc"), Response("200"), Response(None), Response(-1),
             Response(10**6), Response(200.0), NoStatus(), RaisingStatus()]
TIMES = [None, 0, 1.5, -1.0, -1e9, 1e300, 10**30, 250]
LENGTHS = [0, 512, -5, 1e300, float("nan"), float("inf"), 10**30, 3.7]
HUGE = "boom " * 40_000  # a 200 kB message (on one name only: Locust prints every distinct error at exit)
HUGE_ERRORS = [Exception(HUGE), CatchResponseError(HUGE), CatchResponseError("\n" * 5000 + HUGE)]
EXCEPTIONS = [None, None, None, CatchResponseError('a "quoted"\nmessage'), "a string failure \\ with backslash",
              CatchResponseError(""), ConnectionRefusedError("[Errno 111] http://x")]


class HostileUser(User):
    wait_time = constant(0.005)
    counter = itertools.count()

    @task
    def fire(self):
        fire = self.environment.events.request.fire
        if CARDINALITY:
            n = next(self.counter)
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
