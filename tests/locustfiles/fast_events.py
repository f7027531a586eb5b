"""Request events as fast as Locust runs them, no network: push, lifecycle, security and soak tests.

Knobs (environment variables, read at import):

* ``FAST_EVENTS_NAMES`` (default 20): distinct request names, ``/e/0`` ... (methods GET and POST).
* ``FAST_EVENTS_BATCH`` (default 10): request events per task run.
* ``FAST_EVENTS_WAIT`` (default 0.01): seconds between task runs of one user (0: full speed).
* ``FAST_EVENTS_FAILURES`` (default 0): 1 = 2% failures (HTTP 500 and ``response.failure`` messages), so
  Locust's exit code is 1; 0 = no failures, exit code 0.
* ``FAST_EVENTS_MEMORY_LOG`` (default none): a file to which, every 5 s, a line ``<unix time> <bytes>
  <objects>`` is appended: the memory held by locust-metrics' own objects (the exporter and everything it
  owns, but not Locust's environment, runner or statistics, nor the HTTP server's connections), from
  ``sys.getsizeof`` over the object graph. It separates our memory from Locust's in the soak test.

``Response`` comes from ``tests/support/fakes.py``: ``tests/`` must be on PYTHONPATH, as the tests' ``child_env()``
puts it (by hand: ``PYTHONPATH=.:tests locust -f tests/locustfiles/fast_events.py``).
"""

import gc
import os
import random
import sys
import time
import types

import gevent
from locust import User, constant, events, task
from support.fakes import Response

import locust_metrics  # noqa: F401
from locust_metrics import recorder as _recorder_module

NAMES = int(os.environ.get("FAST_EVENTS_NAMES", "20"))
BATCH = int(os.environ.get("FAST_EVENTS_BATCH", "10"))
WAIT = float(os.environ.get("FAST_EVENTS_WAIT", "0.01"))
FAILURES = os.environ.get("FAST_EVENTS_FAILURES", "0") == "1"


OK, ERROR = Response(200), Response(500)


class EventUser(User):
    wait_time = constant(WAIT)

    def on_start(self):
        self.rng = random.Random()

    @task
    def fire(self):
        fire = self.environment.events.request.fire
        rng = self.rng
        for _ in range(BATCH):
            i = rng.randrange(NAMES)
            response, exception = OK, None
            if FAILURES:
                roll = rng.random()
                if roll < 0.01:
                    response, exception = ERROR, Exception("500 Server Error")
                elif roll < 0.02:
                    exception = "payment declined"
            fire(
                request_type="POST" if i % 5 == 0 else "GET",
                name=f"/e/{i}",
                response_time=rng.lognormvariate(3.0, 1.0),
                response_length=100 + i,
                response=response,
                context={},
                exception=exception,
            )


def owned_memory(exporter):
    """(bytes, objects) reachable from ``exporter`` without passing through Locust's objects or our server, nor
    the records the snapshot keeps of unchanged entries (``EndpointStats.snapshot`` and ``native_snapshot``: at most
    two per entry, so bounded by the entries; they fill up when requests stop, which is no growth of the recorded data),
    nor the snapshot the renders in flight read (``ScrapeRenderer._snapshot``: about 130 KiB at 100 names while a
    scrape is being rendered or sent, none between scrapes)."""
    env = exporter.environment
    stop = {id(env), id(env.runner), id(env.events), id(getattr(env, "stats", None)), id(exporter.server),
            id(getattr(env, "web_ui", None)), id(env.parsed_options)}
    stop |= {id(record) for e in list(exporter.totals.endpoints.values()) for record in (e.snapshot, e.native_snapshot)
             if record is not None}
    snapshot = getattr(exporter.renderer, "_snapshot", None)  # read by the renders in flight, dropped after them
    if snapshot is not None:
        stop.add(id(snapshot))
    seen, stack, total = set(stop), [exporter, _recorder_module._HTTP_LABELS], 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (type, types.ModuleType, types.CodeType, types.BuiltinFunctionType)):
            continue
        total += sys.getsizeof(obj)
        if isinstance(obj, types.FunctionType):  # its closure is ours, its globals are the module's
            stack.extend(cell.cell_contents for cell in obj.__closure__ or () if cell.cell_contents is not None)
        elif isinstance(obj, types.MethodType):
            stack.append(obj.__self__)
        else:
            stack.extend(gc.get_referents(obj))
    return total, len(seen) - len(stop)


MEMORY_LOG = os.environ.get("FAST_EVENTS_MEMORY_LOG")

if MEMORY_LOG:

    @events.init.add_listener
    def _log_memory(environment, **_kwargs):
        exporter = environment._locust_metrics_exporter

        def loop():
            while True:
                size, count = owned_memory(exporter)
                with open(MEMORY_LOG, "a") as handle:
                    handle.write(f"{time.time():.3f} {size} {count}\n")
                gevent.sleep(5)

        gevent.spawn(loop)
