"""Request events with chosen response times, for the threshold tests; a side listener keeps what Locust reported.

Each user, at its start, fires :data:`TIMES` once on ``GET /t`` (and a few on ``GET /api/a``, ``POST /api/b``,
``GET /other``), then idles until the run ends: the totals are exactly ``users x`` these lists. Around
``T_MS`` (100 ms) the list puts the 190th smallest of 200 times (the nearest-rank p95) exactly at T, the one
below at the float just below T and the one above at the float just above, so ``p95<100``, ``p95<=100``,
``p95>100`` and ``p95>=100`` all fall on the boundary. One in 50 ``/t`` requests fails.

``THRESHOLD_SIDE_DIR``: every process writes ``<pid>.json`` there when its test stops: ``{"METHOD NAME":
[response times...], "METHOD NAME failures": n}`` from its own listener on Locust's ``request`` event.

``Response`` comes from ``tests/support/fakes.py``: ``tests/`` must be on PYTHONPATH, as the tests' ``child_env()``
puts it.
"""

import json
import math
import os
import random

from locust import User, constant, events, task
from support.fakes import Response

import locust_metrics  # noqa: F401

T_MS = 100.0
_rng = random.Random(7)
_below = sorted(_rng.uniform(1, 99) for _ in range(188))
_above = sorted(_rng.uniform(101, 900) for _ in range(9))
TIMES = [*_below, math.nextafter(T_MS, 0), T_MS, math.nextafter(T_MS, math.inf), *_above]
_rng.shuffle(TIMES)
OTHER = {("GET", "/api/a"): [10.0, 20.0, 30.0, 250.0], ("POST", "/api/b"): [5.0, 2000.0], ("GET", "/other"): [1.0]}


class TimedUser(User):
    wait_time = constant(3600)

    def on_start(self):
        fire = self.environment.events.request.fire
        for index, t in enumerate(TIMES):
            failed = index % 50 == 0
            fire(request_type="GET", name="/t", response_time=t, response_length=10,
                 response=Response(500 if failed else 200), exception=RuntimeError("boom") if failed else None,
                 context={})
        for (method, name), times in OTHER.items():
            for t in times:
                fire(request_type=method, name=name, response_time=t, response_length=1, response=Response(200),
                     exception=None, context={})

    @task
    def idle(self):
        pass


_seen: dict = {}


@events.request.add_listener
def _side_listener(request_type, name, response_time, exception=None, **_kwargs):
    _seen.setdefault(f"{request_type} {name}", []).append(response_time)
    if exception:
        key = f"{request_type} {name} failures"
        _seen[key] = _seen.get(key, 0) + 1


@events.test_stop.add_listener
def _write_side_list(**_kwargs):
    folder = os.environ.get("THRESHOLD_SIDE_DIR")
    if folder and _seen:
        with open(os.path.join(folder, f"{os.getpid()}.json"), "w") as handle:
            json.dump(_seen, handle)
