"""fast_events.py with parts of locust-metrics broken on purpose (an "injected bug" in each):

* the process figures (psutil) raise, so every scrape's node section fails;
* ``uuid.uuid4`` as used by our test_start listener (lifecycle.py) raises.

Our errors must be logged once each, with context, the rest of the metrics served exactly, and Locust's
exit code unchanged (0: this test has no failures).
"""

from fast_events import EventUser  # noqa: F401  (the users; it imports locust_metrics)
from locust import events

from locust_metrics import lifecycle


class _BrokenUUID:
    @staticmethod
    def uuid4():
        raise RuntimeError("injected bug in uuid4")


@events.init.add_listener
def break_things(environment, **_kwargs):
    exporter = environment._locust_metrics_exporter

    def sample():
        raise PermissionError("injected: psutil access denied")

    exporter.resources.sample = sample
    lifecycle.uuid = _BrokenUUID()
