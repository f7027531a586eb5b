"""Request events with known latency distributions, no network: the accuracy test of native histograms.

Two endpoints, their response times drawn by each user from a seeded generator:

* ``GET /lognormal``: lognormal, median 120 ms, p99 about 500 ms (the issue's realistic endpoint);
* ``GET /bimodal``: 90% cache hits (lognormal, median 5 ms) and 10% misses (lognormal, median 300 ms).

Every response time fired is also kept, in order, by a side listener, and written at exit (``quitting``) to
the JSON file named by ``LATENCY_LOG`` (``{name: [ms, ...]}``), so that the test computes the exact quantiles
of the very times Locust reported. ``LATENCY_BATCH`` (default 50) events per task run, no wait.

``Response`` comes from ``tests/support/fakes.py``: ``tests/`` must be on PYTHONPATH (the tests' ``child_env()``).
"""

import json
import math
import os
import random

from locust import User, constant, events, task
from support.fakes import Response

import locust_metrics  # noqa: F401

BATCH = int(os.environ.get("LATENCY_BATCH", "50"))
LOG = os.environ.get("LATENCY_LOG", "")
OK = Response(200)
SEEN: dict[str, list[float]] = {"/lognormal": [], "/bimodal": []}

LOGNORMAL_MU, LOGNORMAL_SIGMA = math.log(120.0), math.log(500.0 / 120.0) / 2.3263  # p99 = 500 ms


def draw(name: str, rng: random.Random) -> float:
    if name == "/lognormal":
        return rng.lognormvariate(LOGNORMAL_MU, LOGNORMAL_SIGMA)
    if rng.random() < 0.9:
        return rng.lognormvariate(math.log(5.0), 0.3)
    return rng.lognormvariate(math.log(300.0), 0.3)


class LatencyUser(User):
    wait_time = constant(0)
    seeds = iter(range(1, 1_000_000))

    def on_start(self):
        self.rng = random.Random(next(self.seeds))

    @task
    def fire(self):
        fire = self.environment.events.request.fire
        rng = self.rng
        for index in range(BATCH):
            name = "/lognormal" if index % 2 else "/bimodal"
            fire(request_type="GET", name=name, response_time=draw(name, rng), response_length=100, response=OK,
                 context={}, exception=None)


@events.request.add_listener
def _keep(name=None, response_time=None, **_kwargs):
    if name in SEEN and response_time is not None:
        SEEN[name].append(response_time)


@events.quitting.add_listener
def _write(**_kwargs):
    if LOG:
        with open(LOG, "w") as handle:
            json.dump(SEEN, handle)
