"""The locustfile of ``bench.py``'s end-to-end runs: a ``FastHttpUser`` with no wait time, and the figures of the
run's steady state written as JSON to ``$BENCH_RESULT``.

Environment (set by ``bench.py``'s ``_LocustRun``):

* ``BENCH_RESULT``: where to write the figures; ``BENCH_WARMUP`` / ``BENCH_WINDOW``: seconds after the start
  when the measurement starts, and its length;
* ``BENCH_WITH_PLUGIN=1``: ``import locust_metrics`` (else bare Locust; its options, e.g. native histograms, come
  from ``LOCUST_METRICS_*`` variables);
* ``BENCH_ACCEPT``: the ``Accept`` header of the toggled run's scrapes (Prometheus', as ``bench.py`` scrapes);
* ``BENCH_TOGGLE=seconds``: switch the plugin's listener and a scrape per second on and off in phases of that
  length (ABBA), and write ``{"on": ..., "off": ..., "phases": ...}``; ``BENCH_TOGGLE_PARTS`` (diagnosis):
  which of ``listener,scrape`` to switch on;
* ``BENCH_TIME_LISTENER=1``: time the plugin's listener in place on every request, and every fold of its
  entries (``EndpointStats.fold_hot``: the deferred part of the listener's work, done by scrapes);
* ``BENCH_NO_LISTENER=1`` (diagnosis): the plugin minus its request listener;
* ``BENCH_NAMES=n``: spread the requests over ``n`` request names (``/api/endpoint/0`` ... , the same URL), as
  a locustfile with many endpoints does (default 1: one name).
"""

import itertools
import json
import os
import time

if os.environ.get("BENCH_WITH_PLUGIN") == "1":
    import locust_metrics  # noqa: F401
import gevent  # noqa: E402
import gevent.event  # noqa: E402
from locust import FastHttpUser, events, task  # noqa: E402

_NAMES = int(os.environ.get("BENCH_NAMES", "1"))
_NAME_LIST = [f"/api/endpoint/{i}" for i in range(_NAMES)]  # made once, as a locustfile's literal names are
_next = itertools.count().__next__


class NoWaitUser(FastHttpUser):
    # no wait_time: Locust's default is constant(0), back-to-back requests

    @task
    def index(self):
        if _NAMES > 1:
            self.client.get("/index.html", name=_NAME_LIST[_next() % _NAMES])
        else:
            self.client.get("/index.html")


_stopped = gevent.event.Event()
_measurer = []
_timed = {"ns": 0, "calls": 0, "fold_ns": 0}


def _clock_call_ns(clock):
    # the fastest of many clock calls, in ns: what a timed span minus it cannot make negative (a span holds
    # one whole call); subtracting each span's own neighbouring call instead went below zero when the
    # process was preempted between the two calls (a smoke run on a loaded machine: -32 ns per request)
    fastest = None
    for _ in range(2000):
        start = clock()
        took = clock() - start
        fastest = took if fastest is None or took < fastest else fastest
    return fastest


@events.init.add_listener
def _time_listener(environment, **_kwargs):
    # BENCH_TIME_LISTENER: time the plugin's hot path in place, on every request of a real run
    from locust_metrics.dispatch import attach, detach

    exporter = getattr(environment, "_locust_metrics_exporter", None)
    if exporter is not None and os.environ.get("BENCH_NO_LISTENER"):  # for diagnosis: the plugin minus its listener
        detach(environment.events.request, exporter.recorder.on_request)
    if not os.environ.get("BENCH_TIME_LISTENER") or exporter is None:
        return
    hook, listener, clock = environment.events.request, exporter.recorder.on_request, time.perf_counter_ns
    clock_ns = _clock_call_ns(clock)
    record = exporter.recorder.record

    from locust_metrics.recorder import EndpointStats

    fold_hot = EndpointStats.fold_hot

    def timed_fold(self):
        start = clock()
        fold_hot(self)
        _timed["fold_ns"] += clock() - start - clock_ns  # minus one clock call

    EndpointStats.fold_hot = timed_fold  # every fold of this process: scrapes, snapshots, the careful path

    def timed(request_type, name, response_time, response_length, response, exception):
        start = clock()
        record(request_type, name, response_time, response_length, response, exception)  # as dispatch calls it
        _timed["ns"] += clock() - start - clock_ns  # minus one clock call
        _timed["calls"] += 1

    if not attach(hook, listener, timed):  # an EventHook we do not know: the ordinary listener, timed

        def timed(**kwargs):  # noqa: F811
            start = clock()
            listener(**kwargs)  # the same keyword binding as Locust's fire() does
            _timed["ns"] += clock() - start - clock_ns
            _timed["calls"] += 1

        hook.remove_listener(listener)
        hook.add_listener(timed)


def _native(environment):
    # whether the plugin records native histograms (None without the plugin)
    exporter = getattr(environment, "_locust_metrics_exporter", None)
    return None if exporter is None else exporter.recorder.native is not None


def _measure(environment, warmup, window):
    # steady state only: from `warmup` seconds after the start, for `window` seconds (or until the stop)
    stats = environment.stats.total
    _stopped.wait(warmup)
    requests, wall, cpu = stats.num_requests, time.perf_counter(), time.process_time()
    timed_ns, timed_calls, fold_ns = _timed["ns"], _timed["calls"], _timed["fold_ns"]
    _stopped.wait(window)
    figures = {
        "requests": stats.num_requests - requests,
        "failures": stats.num_failures,
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "listener_ns": _timed["ns"] - timed_ns,
        "listener_calls": _timed["calls"] - timed_calls,
        "fold_ns": _timed["fold_ns"] - fold_ns,
        "native_histograms": _native(environment),
    }
    with open(os.environ["BENCH_RESULT"], "w") as handle:
        json.dump(figures, handle)


def _toggle(environment, warmup, window, phase):
    # one process, the plugin's work switched on and off in phases of `phase` seconds (ABBA order, so
    # that a linear drift cancels): on = the request listener attached and one scrape rendered (as the
    # endpoint serves it to Prometheus: OpenMetrics or, native histograms on, protobuf; + gzip) per second;
    # off = the listener detached, no scrape
    from locust_metrics.dispatch import attach, detach

    exporter = environment._locust_metrics_exporter
    hook, listener = environment.events.request, exporter.recorder.on_request
    parts = os.environ.get("BENCH_TOGGLE_PARTS", "listener,scrape").split(",")  # for diagnosis
    accept = os.environ["BENCH_ACCEPT"]  # Prometheus' (bench.py's scrape_accept)
    stats = environment.stats.total
    _stopped.wait(warmup)
    totals = {True: [0, 0.0, 0.0], False: [0, 0.0, 0.0]}
    per_phase = []  # [on, requests, wall_s, cpu_s] of every phase, in order
    phases = max(4, int(window / phase) // 4 * 4)
    for index in range(phases):
        on = index % 4 in (0, 3)
        if on and listener not in hook._handlers and "listener" in parts:
            attach(hook, listener, exporter.recorder.record)  # as install() does it
        elif not on and listener in hook._handlers:
            detach(hook, listener)  # Locust's own fire again
        requests, wall, cpu = stats.num_requests, time.perf_counter(), time.process_time()
        end = wall + phase
        while time.perf_counter() < end and not _stopped.is_set():
            if on and "scrape" in parts:
                exporter.renderer.respond(accept, "gzip")
            _stopped.wait(min(1.0, max(0.0, end - time.perf_counter())))
        figures = [stats.num_requests - requests, time.perf_counter() - wall, time.process_time() - cpu]
        per_phase.append([on, *figures])
        total = totals[on]
        for i, value in enumerate(figures):
            total[i] += value
        if _stopped.is_set():
            break
    figures = {
        ("on" if on else "off"): {"requests": r, "wall_s": w, "cpu_s": c} for on, (r, w, c) in totals.items()
    }
    figures["phases"] = per_phase
    figures["native_histograms"] = _native(environment)
    with open(os.environ["BENCH_RESULT"], "w") as handle:
        json.dump(figures, handle)


@events.test_start.add_listener
def _started(environment, **_kwargs):
    warmup, window = float(os.environ["BENCH_WARMUP"]), float(os.environ["BENCH_WINDOW"])
    if os.environ.get("BENCH_TOGGLE"):
        _measurer.append(gevent.spawn(_toggle, environment, warmup, window, float(os.environ["BENCH_TOGGLE"])))
    else:
        _measurer.append(gevent.spawn(_measure, environment, warmup, window))


@events.test_stop.add_listener
def _test_stopped(environment, **_kwargs):
    _stopped.set()
    for greenlet in _measurer:
        greenlet.join(timeout=5)
