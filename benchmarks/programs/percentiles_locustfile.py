"""The load of ``percentiles.py``: ``FastHttpUser``s with no wait time requesting ``PERCENTILES_PATH`` of the
latency target, with locust-metrics imported, and a side listener that keeps every response time Locust
reports (milliseconds) and writes them, one per line, to ``PERCENTILES_TIMES`` when the test stops: the exact
figures percentiles are compared with.
"""

import os

from locust import FastHttpUser, events, task

import locust_metrics  # noqa: F401

PATH = os.environ["PERCENTILES_PATH"]
TIMES: list[float] = []


@events.request.add_listener
def keep(response_time=None, exception=None, **_kwargs):
    if response_time is not None:
        TIMES.append(response_time)


@events.test_stop.add_listener
def write(**_kwargs):
    with open(os.environ["PERCENTILES_TIMES"], "w") as handle:
        handle.write("\n".join(map(repr, TIMES)))


class Reader(FastHttpUser):
    @task
    def read(self):
        self.client.get(PATH)
