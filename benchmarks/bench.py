"""locust-metrics benchmarks: what the plugin costs the load generator, measured side by side in one run.

Run from the repository root::

    python benchmarks/bench.py              # full sizes, prints one table (about 6 minutes)
    python benchmarks/bench.py --smoke      # every section once at tiny sizes, for the test suite (~10 s, no figures)
    python benchmarks/bench.py --json out.json --repeats 9 --pairs 5 --e2e-seconds 10
    python benchmarks/bench.py --only concurrent_scrapes,scrape_stall   # some sections only
    python benchmarks/bench.py --native-histograms   # every section with native histograms on (see below)

Every figure is the median of ``--repeats`` measurements (end to end: of ``--pairs`` paired runs), and
every comparison is measured side by side in the same run, variants interleaved, so that they see the
same machine state. Sections:

* **hot path**: the time Locust's ``request`` event takes per request, with (a) no listener at all,
  (b) Locust's own statistics listener (bare Locust), (c) locust-metrics, attached as ``install()``
  does it (``dispatch.attach``: the event hands the recorder the six values it reads), (d) a naive
  prometheus_client listener (``Histogram.labels(...).observe()`` plus counters), each alone,
  (e) Locust's + ours together, as in a real run, and (f) locust-metrics as an ordinary listener (the
  fallback for an ``EventHook`` we do not know). The events carry real ``FastResponse`` objects over
  real geventhttpclient responses. Rounds of 2,048 events over 50 names through every variant (``25 x
  --repeats`` rounds, the order rotating), ours each followed by a fold of every entry (what a scrape or a
  report does first: with native histograms, counting the response times the listener kept, about 40 per
  entry here, a harsher batch than a real run's); "added" = the median over rounds of variant - (a) in the
  same round.
  Budgets: ours <= 1 µs and <= 25% of the naive listener's added cost.
* **end to end**: a ``FastHttpUser`` with no wait time against nginx (Debian's, on 127.0.0.1, a 13-byte
  static file; a tiny gevent server when nginx is missing and in ``--smoke``), bare Locust vs Locust
  with ``import locust_metrics`` (scraped once a second with Prometheus' headers), measured inside each
  Locust process over its steady state (1 s after the start to 1 s before the stop), Locust pinned to
  one core and the target to the other. Paired designs, each the median of its per-pair ratios:
  *sequential* pairs (order alternating), as requests/s and as requests per CPU-second of Locust;
  *toggled*: one process whose listener and scrapes are switched on and off in 1 s phases (ABBA);
  *concurrent* pairs: a bare and a plugin process at the same time on the same core, so that both see
  the same machine noise (an A/A control of this design measured 99.9%, pairs 99.2-101.6%; harsher than a real
  run, as the processes evict each other's caches). And the listener timed in place on every request
  of a real run, with every fold of its entries (the deferred part of its work: with native histograms on,
  the bucketing of the kept response times), against Locust's CPU per request; the same again with the
  requests spread over 50 request names (smaller batches per fold). Budget: >= 99%.
* **scrape**: at 10, 100 and 500 endpoint names with the default buckets, (1) the CPU time of a scrape
  (snapshot + rendering, thread CPU time) against prometheus_client's ``generate_latest`` of the same
  registry, text format, and the same for what Prometheus asks for (OpenMetrics + gzip) against
  prometheus_client's WSGI app (OpenMetrics + ``gzip.compress``); (2) the longest stall of the gevent
  loop while one scrape is served over HTTP by the real ``MetricsServer`` to a client in another
  process (Prometheus' ``Accept`` and ``Accept-Encoding`` headers): a ticker greenlet sleeps 1 ms in a
  loop and records its gaps, and each scrape's figure is the longest gap overlapping it (it includes the
  1 ms sleep itself). prometheus_client's own WSGI app over the same registry is measured alongside.
  Budgets at 500 names: stall <= 5 ms, CPU <= 50% of ``generate_latest``.
* **concurrent scrapes**: N scrapers at once (1, 2, 10, 50; keep-alive connections from one client
  process, all sending at the same instant, Prometheus' headers) against a Locust-like process serving
  500 names with the real ``MetricsServer``: per round, the longest loop stall (a 1 ms ticker greenlet,
  as above; also in CPU time, which preemption by other processes does not inflate) and the process's
  CPU; and the same with the four formats in turn (OpenMetrics or text, gzip or not). Budgets at 500
  names: stall <= 5 ms with 2, 10 and 50 scrapers, CPU of 50 scrapers <= 3x one scraper's.
* **merge**: on a master, the time to merge one worker report holding 500 endpoint names, and the
  report's size in bytes (msgpack, as Locust sends it). Budget: <= 5 ms.
* **memory**: at the default name cap (500 names, 3 status codes and 5 error labels each), the resident
  memory a fresh Locust process gains from ``import locust_metrics`` + ``install()`` + the recorded data +
  a scrape of each format (RSS delta), and tracemalloc's view of the data alone (retained recorder and
  caches; peak while rendering); and the RSS delta in the worst case, every name at the cap of 20
  error labels of 120+ characters. Budget: <= 20 MB.

The programs run in processes of their own (the locustfile, clients, children, the gevent target) are
in ``benchmarks/programs/``.

``--native-histograms`` runs every section with native histograms on, as a user has them and as a Prometheus
with native histograms scrapes them (the budgets to turn them on by default, issue 12): recorders and exporters
built with ``Settings.from_kwargs(native_histograms=True)`` (default schema and bucket bound), the end-to-end
Locust processes with ``LOCUST_METRICS_NATIVE_HISTOGRAMS=true``, the memory children with
``install(native_histograms=True)``; every scrape sends the ``Accept`` header of Prometheus 2.42 with
``--enable-feature=native-histograms`` (:data:`PROMETHEUS_NATIVE_ACCEPT`), so ours answer protobuf with the
classic and the native buckets (prometheus_client's app, which has no protobuf, OpenMetrics). What changes:
the hot path's locust-metrics variants record native histograms too (and the ratio to the naive listener also
gets the 10% budget of native histograms by default); the scrape CPU section adds our protobuf render (a snapshot
with the native histograms + encoding) against ``generate_latest`` of the classic series (budget at 500 names:
<= 50%), and its "what Prometheus asks for" row is protobuf + gzip; the stall and concurrent-scrape sections
scrape protobuf (the mixed formats: protobuf or text, gzip or not); the merge's worker report carries the native
deltas, and the time the master's next scrape takes to add them (its fold, in slices: CPU, no stall) is
reported apart. The same functions run, with the flag passed down. The table's column "native histograms"
says on or off on every row; ``--json``: ``native_histograms``.

``--smoke`` runs every section end to end at tiny sizes, once, so that the benchmark cannot rot unnoticed
(``tests/test_benchmarks.py``): 1 repeat; 10 names for the scrape sections, 20 elsewhere; a bare, a timed
and a toggled end-to-end run at the same time, each measured over 0.5 s and then stopped; the three memory
children at the same time; and the processes of those two sections beside the others from the start,
no process pinned to a core. Its figures mean nothing and get no verdict. The test runs it with native
histograms off and on.

Exit status 0 whatever the figures (budgets are reported in the table, not asserted); 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from typing import Any

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PROGRAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "programs")
"""The programs this benchmark runs in processes of their own (clients, children, the locustfile, the target)."""
sys.path.insert(0, REPO)

import gevent  # noqa: E402
import locust  # noqa: E402,F401  (gevent monkey-patching first, as in a real run)
import msgpack  # noqa: E402
from locust import User, task  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.exception import CatchResponseError  # noqa: E402
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest  # noqa: E402
from prometheus_client.exposition import choose_encoder  # noqa: E402

from locust_metrics.dispatch import attach  # noqa: E402
from locust_metrics.distributed import PayloadMerger, take_payload  # noqa: E402
from locust_metrics.encoders import OPENMETRICS, TEXT, compress  # noqa: E402
from locust_metrics.exporter import MetricsExporter  # noqa: E402
from locust_metrics.options import Settings  # noqa: E402
from locust_metrics.recorder import RequestRecorder  # noqa: E402
from locust_metrics.scraping import MetricsServer, ScrapeTracker  # noqa: E402

SECTIONS = ("hot_path", "scrape_cpu", "scrape_stall", "concurrent_scrapes", "merge", "memory", "end_to_end")
"""The benchmark's sections, in the order they run (``--only``)."""

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
"""The ``Accept`` header of Prometheus 2.x scrapes (OpenMetrics first)."""

PROMETHEUS_NATIVE_ACCEPT = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,"
    "application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
"""The ``Accept`` header of Prometheus 2.42 with ``--enable-feature=native-histograms`` (protobuf first; the
benchmarks' one copy, ``benchmarks/native_histograms.py`` uses it too; tests/test_native_histograms.py checks its
own against what a real Prometheus sends)."""


MANY_NAMES = 50
"""The end-to-end section's second set of runs timed in place spreads the requests over this many request names
(``BENCH_NAMES``), as the hot path's events do: the folds' batches are then each name's requests of about a
second, instead of all of them."""


def scrape_accept(native: bool) -> str:
    """The ``Accept`` header of the Prometheus scrapes measured: with ``native`` (``--native-histograms``), a
    Prometheus with native histograms on (protobuf: classic + native buckets), else OpenMetrics."""
    return PROMETHEUS_NATIVE_ACCEPT if native else PROMETHEUS_ACCEPT


class _BenchUser(User):
    @task
    def nothing(self) -> None:  # pragma: no cover - never runs
        pass


def _Response(status_code: int) -> Any:
    """A real ``FastResponse`` (what a ``FastHttpUser`` request event carries), status code ``status_code``.

    It wraps a real geventhttpclient response, parsed from a real response head, so its ``status_code``
    is Locust's property over geventhttpclient's (C) ``get_code()``, as in a real run.
    """
    from geventhttpclient.response import HTTPResponse
    from locust.contrib.fasthttp import FastResponse

    parsed = HTTPResponse()
    parsed.feed(f"HTTP/1.1 {status_code} Whatever\r\nContent-Length: 0\r\n\r\n".encode())
    response = FastResponse(parsed)
    assert response.status_code == status_code
    return response


def _events(n: int, names: int, seed: int = 1) -> list[dict[str, Any]]:
    """``n`` realistic request events over ``names`` entries (method, name): 2% failures, latencies 1..1500 ms."""
    rng = random.Random(seed)
    ok, not_found, error = _Response(200), _Response(404), _Response(500)
    result = []
    for i in range(n):
        roll = rng.random()
        response, exception = ok, None
        if roll < 0.01:
            response, exception = not_found, Exception("404 Client Error")
        elif roll < 0.02:
            response, exception = error, CatchResponseError("payment failed")
        result.append(
            {
                "request_type": "POST" if i % names % 4 == 0 else "GET",
                "name": f"/api/endpoint/{i % names}",
                "response_time": rng.lognormvariate(3.5, 0.8) % 1500,
                "response_length": 512,
                "response": response,
                "context": {},
                "exception": exception,
                "start_time": 0.0,
                "url": None,
            }
        )
    return result


def naive_listener(registry: CollectorRegistry) -> Callable[..., None]:
    """What a straightforward prometheus_client exporter does per request."""
    buckets = Settings.from_kwargs().buckets_s
    duration = Histogram("naive_request_duration_seconds", "d", ["method", "name"], buckets=buckets, registry=registry)
    requests = Counter("naive_requests_total", "r", ["method", "name", "status_code"], registry=registry)
    failures = Counter("naive_request_failures_total", "f", ["method", "name", "error"], registry=registry)
    slow = Counter("naive_slow_requests_total", "s", ["method", "name"], registry=registry)
    size = Counter("naive_response_size_bytes_total", "b", ["method", "name"], registry=registry)

    def on_request(request_type, name, response_time, response_length, response=None, exception=None, **_kw):
        if response_time is not None:
            duration.labels(request_type, name).observe(response_time / 1000.0)
            if response_time > 1000:
                slow.labels(request_type, name).inc()
        requests.labels(request_type, name, str(getattr(response, "status_code", 0))).inc()
        size.labels(request_type, name).inc(response_length)
        if exception:
            failures.labels(request_type, name, type(exception).__name__).inc()

    return on_request


def _settings(native: bool) -> Settings:
    """The plugin's settings in every section: the defaults, native histograms on or off (``--native-histograms``)."""
    return Settings.from_kwargs(port=0, native_histograms=native)


def _recorder(settings: Settings, max_names: int | None = None) -> RequestRecorder:
    """A recorder as the exporter builds it from ``settings`` (native histograms included when on)."""
    return RequestRecorder(settings.bounds_ms(), settings.slow_threshold_ms, (),
                           settings.max_names if max_names is None else max_names, settings.native())


def _environment(variant: str, native: bool = False) -> tuple[Environment, RequestRecorder | None]:
    """A Locust environment with the hot path's ``variant`` attached, and our recorder in it (or None)."""
    env = Environment(user_classes=[_BenchUser])
    recorder = None
    if variant == "empty":
        return env, None
    if variant in ("bare", "both"):
        env.create_local_runner()  # registers Locust's own statistics listener
    if variant in ("plugin", "both", "listener"):
        recorder = _recorder(_settings(native))
        if variant == "listener":  # the fallback for an EventHook we do not know: an ordinary listener
            env.events.request.add_listener(recorder.on_request)
        else:  # as install() does it
            assert attach(env.events.request, recorder.on_request, recorder.record)
    elif variant == "naive":
        env.events.request.add_listener(naive_listener(CollectorRegistry()))
    return env, recorder


def warmed_fires(
    environments: dict[str, tuple[Environment, RequestRecorder | None]], events: list[dict[str, Any]]
) -> list[tuple[str, Callable[..., None], list[Callable[[], None]]]]:
    """``(variant, its event's fire, the folds of its recorder's entries)`` per variant, each variant's
    ``events`` fired once first (first sightings of every name and status: the warm-up)."""
    fires = []
    for variant, (env, recorder) in environments.items():
        fire = env.events.request.fire
        for kwargs in events:
            fire(**kwargs)
        fires.append((variant, fire, [] if recorder is None else [e.fold for e in recorder.endpoints.values()]))
    return fires


def paired_rounds(
    fires: list[tuple[str, Callable[..., None], list[Callable[[], None]]]], events: list[dict[str, Any]], rounds: int
) -> dict[str, list[float]]:
    """Nanoseconds per event of each variant in ``rounds`` paired rounds: every round fires ``events`` through
    each variant, in an order that rotates (and reverses) from round to round, each followed by the folds of
    its entries (what a scrape does first: our deferred work is part of the cost). ``{variant: [ns per event,
    one per round]}``."""
    per_event: dict[str, list[float]] = {variant: [] for variant, _, _ in fires}
    for index in range(rounds):
        order = fires[index % len(fires):] + fires[: index % len(fires)]
        for variant, fire, fold_all in order if index % 2 == 0 else reversed(order):
            start = time.perf_counter_ns()
            for kwargs in events:
                fire(**kwargs)
            for fold in fold_all:
                fold()
            per_event[variant].append((time.perf_counter_ns() - start) / len(events))
    return per_event


def bench_hot_path(chunk: int, names: int, rounds: int, native: bool = False) -> dict[str, float]:
    """Nanoseconds per ``request`` event for each variant (see module docstring), in paired rounds; locust-metrics
    with native histograms when ``native``.

    Every round fires the same ``chunk`` events (over ``names`` entries) through each variant, in an
    order that rotates from round to round (:func:`paired_rounds`), ours each followed by a fold of every
    entry. A variant's added cost is the median over rounds of its time
    minus the no-listener time of the same round: rounds last tens of milliseconds, so each difference
    is taken on one machine state, and bursts of noise on this shared VM (which slow everything by up
    to 40% for seconds) cancel out instead of landing on one variant.
    """
    # a small working set, fired again and again: a real event's kwargs are freshly made and in cache,
    # so a huge list of pre-made events would measure memory traffic instead of listeners
    events = _events(chunk, names)
    variants = ("empty", "bare", "plugin", "naive", "both", "listener")
    per_event = paired_rounds(warmed_fires({v: _environment(v, native) for v in variants}, events), events, rounds)
    empty = per_event["empty"]
    added = {variant: [t - e for t, e in zip(per_event[variant], empty)] for variant in variants if variant != "empty"}
    result = {"chunk": chunk, "rounds": rounds, "empty_ns": statistics.median(empty)}
    for variant, key in (("bare", "locust"), ("plugin", "plugin"), ("naive", "naive"), ("both", "both"), ("listener", "listener")):
        result[f"{key}_added_ns"] = statistics.median(added[variant])
        result[f"{variant}_ns"] = statistics.median(per_event[variant])
    result["plugin_vs_naive"] = statistics.median(p / n for p, n in zip(added["plugin"], added["naive"]) if n > 0)
    result["plugin_vs_locust"] = statistics.median(p / b for p, b in zip(added["plugin"], added["bare"]) if b > 0)
    return result


def bench_merge(names: int, repeats: int, native: bool = False) -> dict[str, float]:
    """Master merge time (median ms) and msgpack bytes of one worker report holding ``names`` names (20 requests
    each). With ``native``, worker and master record native histograms: the report carries each entry's native
    delta, which the merge checks and keeps, and the master's next scrape adds, in slices
    (:meth:`~locust_metrics.recorder.EndpointStats.add_native_wire`); that fold is timed apart
    (``native_fold_ms``, after each merge, as a scrape between two reports does it: no stall, CPU only)."""
    settings = _settings(native)
    worker = _recorder(settings, max(names, 1))
    for kwargs in _events(names * 20, names):
        worker.on_request(**kwargs)
    payload = take_payload(worker, "worker-0", None)
    assert ("native" in payload) == native
    wire = msgpack.packb(payload)
    received = msgpack.unpackb(wire, raw=False)
    master = _recorder(settings)
    merger = PayloadMerger(master)

    def fold() -> None:  # what the master's next scrape does first (renderer.fold, sliced there)
        for endpoint in master.endpoints.values():
            endpoint.fold()

    merger.merge(received)  # first sightings
    fold()
    times, folds = [], []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        merger.merge(received)
        times.append((time.perf_counter_ns() - start) / 1e6)
        start = time.perf_counter_ns()
        fold()
        folds.append((time.perf_counter_ns() - start) / 1e6)
    result = {"names": names, "merge_ms": statistics.median(times), "payload_bytes": len(wire)}
    if native:
        result["native_fold_ms"] = statistics.median(folds)
    return result



# ---------------------------------------------------------------------------------------------- scrape
def _filled_exporter(names: int, native: bool = False) -> MetricsExporter:
    """An exporter (not started: no listeners, no server) whose recorder holds ``names`` endpoints, with native
    histograms when ``native``."""
    env = Environment(user_classes=[_BenchUser])
    exporter = MetricsExporter(env, _settings(native))
    for kwargs in _events(names * 40, names):
        exporter.recorder.on_request(**kwargs)
    return exporter


def _thread_ms(function: Callable[[], Any]) -> float:
    """CPU time of this thread while ``function()`` runs, milliseconds (robust against preemption)."""
    start = time.thread_time_ns()
    function()
    return (time.thread_time_ns() - start) / 1e6


def bench_render_cpu(names: int, repeats: int, native: bool = False) -> dict[str, float]:
    """Median CPU milliseconds of one scrape's rendering: ours vs prometheus_client, for ``names`` names.

    ``ours_text_ms``: snapshot + render, text 0.0.4, no pauses; ``library_text_ms``: ``generate_latest``
    of the exporter's registry (the same series). ``ours_prometheus_ms`` / ``library_prometheus_ms``:
    what a Prometheus scrape costs: OpenMetrics + gzip (ours: level 1 in slices; prometheus_client's WSGI
    app: ``gzip.compress``, level 9).

    With ``native`` (native histograms on; Prometheus asks for protobuf, :data:`PROMETHEUS_NATIVE_ACCEPT`):
    ``ours_protobuf_ms``: a snapshot with the native histograms + the protobuf render (classic and native
    buckets), against ``library_text_ms``, ``generate_latest`` of the classic series (the budget's reference);
    ``ours_prometheus_ms``: the same + gzip, against prometheus_client's app, which answers that ``Accept``
    with OpenMetrics (it has no protobuf) + gzip.
    """
    exporter = _filled_exporter(names, native)
    renderer, registry = exporter.renderer, exporter.registry
    library_encoder, _ = choose_encoder(scrape_accept(native))
    import gzip

    def ours_prometheus() -> bytes:  # the format Prometheus' Accept header gets from us, not compressed
        if native:
            return renderer.protobuf.render(exporter.snapshot(natives=True))
        return renderer.encoder.render(exporter.snapshot(), OPENMETRICS)

    variants: dict[str, Callable[[], Any]] = {
        "ours_text_ms": lambda: renderer.encoder.render(exporter.snapshot(), TEXT),
        "library_text_ms": lambda: generate_latest(registry),
        "ours_prometheus_ms": lambda: compress(ours_prometheus()),
        "library_prometheus_ms": lambda: gzip.compress(library_encoder(registry)),
    }
    if native:
        variants["ours_protobuf_ms"] = ours_prometheus
    for function in variants.values():  # warm up (label caches, first-time imports)
        function()
    samples: dict[str, list[float]] = {key: [] for key in variants}
    for repeat in range(repeats):
        order = list(variants) if repeat % 2 == 0 else list(reversed(variants))
        for key in order:
            samples[key].append(_thread_ms(variants[key]))
    result: dict[str, float] = {"names": names, "series_lines": generate_latest(registry).count(b"\n")}
    result.update({key: statistics.median(values) for key, values in samples.items()})
    result["text_ratio"] = result["ours_text_ms"] / result["library_text_ms"]
    result["prometheus_ratio"] = result["ours_prometheus_ms"] / result["library_prometheus_ms"]
    if native:
        result["protobuf_ratio"] = result["ours_protobuf_ms"] / result["library_text_ms"]
        result["protobuf_bytes"] = len(ours_prometheus())
    return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ticker_stalls(url: str, scrapes: int, accept: str = PROMETHEUS_ACCEPT) -> tuple[list[float], list[float], set[str]]:
    """Serve ``scrapes`` scrapes of ``url`` (``Accept: accept``, gzip) to a client process while a 1 ms ticker
    greenlet runs.

    Returns (longest ticker gap overlapping each scrape, scrape wall times), milliseconds, and the
    ``Content-Type`` headers of the answers. Gaps include
    the ticker's own 1 ms sleep. CLOCK_MONOTONIC is shared by all processes, so the client's timestamps
    and the ticker's compare directly. With two cores or more, this process is pinned to one core and
    the client to another while they run.
    """
    gaps: list[tuple[float, float]] = []  # (end, gap) in seconds
    running = True

    def ticker() -> None:
        clock = time.monotonic
        while running:
            before = clock()
            gevent.sleep(0.001)
            after = clock()
            gaps.append((after, after - before))

    # this process on one core, the client on the other: the client never preempts the loop we measure
    own_pin, client_pin = _cpu_pins()
    affinity = os.sched_getaffinity(0) if own_pin else None
    if own_pin:
        os.sched_setaffinity(0, {int(own_pin[-1])})
    greenlet = gevent.spawn(ticker)
    try:
        result = subprocess.run(
            [*client_pin, sys.executable, os.path.join(PROGRAMS, "scrape_client.py"), url, str(scrapes), accept],
            capture_output=True, text=True, timeout=120, check=True,
        )
    finally:
        running = False
        greenlet.join(timeout=5)
        if affinity is not None:
            os.sched_setaffinity(0, affinity)
    spans = json.loads(result.stdout)
    stalls, walls = [], []
    for start, end, _size, _content_type in spans:
        overlapping = [gap for gap_end, gap in gaps if gap_end >= start and gap_end - gap <= end]
        stalls.append(max(overlapping, default=0.0) * 1000)
        walls.append((end - start) * 1000)
    return stalls, walls, {span[3] for span in spans}


def bench_scrape_stall(names: int, scrapes: int, turns: int = 2, native: bool = False) -> dict[str, float]:
    """Longest event-loop stall per HTTP scrape (median over ``scrapes``), ours vs prometheus_client's app, with
    Prometheus' headers (:func:`scrape_accept`: with ``native``, native histograms on and protobuf scrapes;
    prometheus_client's app answers OpenMetrics).

    Both servers are the real :class:`~locust_metrics.scraping.MetricsServer` on 127.0.0.1, over the
    same exporter: one with the exporter's renderer (our fast path), one without (prometheus_client's
    ``make_wsgi_app``), in ``turns`` turns each, interleaved (one client process per turn). Also
    measures the ticker's idle gaps (no scrape) for reference.
    """
    exporter = _filled_exporter(names, native)
    ours = MetricsServer(exporter.registry, ScrapeTracker(), "127.0.0.1", _free_port(), exporter.renderer)
    library = MetricsServer(exporter.registry, ScrapeTracker(), "127.0.0.1", _free_port())
    ours.start()
    library.start()
    try:
        idle: list[float] = []
        clock = time.monotonic
        for _ in range(50):
            before = clock()
            gevent.sleep(0.001)
            idle.append((clock() - before) * 1000)
        result: dict[str, float] = {"names": names, "idle_gap_ms": statistics.median(idle)}
        for _ in range(turns):  # interleaved: ours, library, ours, library
            for key, server in (("ours", ours), ("library", library)):
                stalls, walls, content_types = _ticker_stalls(
                    f"http://127.0.0.1:{server.port}/metrics", max(1, scrapes // turns), scrape_accept(native))
                result.setdefault(f"{key}_stalls", []).extend(stalls)  # type: ignore[attr-defined]
                result.setdefault(f"{key}_walls", []).extend(walls)  # type: ignore[attr-defined]
                result[f"{key}_content_types"] = sorted(content_types | set(result.get(f"{key}_content_types", ())))
        for key in ("ours", "library"):
            result[f"{key}_stall_ms"] = statistics.median(result[f"{key}_stalls"])  # type: ignore[arg-type]
            result[f"{key}_stall_max_ms"] = max(result[f"{key}_stalls"])  # type: ignore[arg-type]
            result[f"{key}_wall_ms"] = statistics.median(result[f"{key}_walls"])  # type: ignore[arg-type]
        result["fast_scrapes"] = exporter.renderer.fast_scrapes
        return result
    finally:
        ours.stop()
        library.stop()


def scrape_formats(formats: str, native: bool = False) -> list[tuple[str, str]]:
    """What concurrent scrapers ask for, as ``(Accept, Accept-Encoding)`` pairs: ``prometheus``, all Prometheus'
    headers; ``mixed``, the four formats in turn (Prometheus' format, OpenMetrics or with ``native`` protobuf, or
    text; gzip or not: the most renders that may run at once by default)."""
    accept = scrape_accept(native)
    return {"prometheus": [(accept, "gzip")], "mixed": [(accept, "gzip"), ("", ""), (accept, ""), ("", "gzip")]}[formats]


def bench_concurrent_scrapes(
    names: int, scrapers: tuple[int, ...], rounds: int, formats: str = "prometheus", native: bool = False,
) -> dict[str, Any]:
    """N scrapers at once against one Locust-like process: its longest loop stall and its CPU per round.

    This process plays the Locust process: an exporter with ``names`` endpoints served by the real
    :class:`~locust_metrics.scraping.MetricsServer` (gevent's WSGI server, our renderer) on 127.0.0.1, and a
    ticker greenlet that sleeps 1 ms in a loop and records every gap with the process's CPU time. A client
    process (pinned to the other core) holds one keep-alive connection per scraper; in each round all
    scrapers send a scrape at the same instant (a thread barrier) with ``formats``' headers
    (:func:`scrape_formats`; ``native``: native histograms on, Prometheus asking for protobuf), and the round
    ends when all are answered. Per round: the longest ticker gap overlapping it (ms, includes the 1 ms sleep), the most CPU this process used within one gap (the
    same stall without the time other processes took the core: on a shared machine the wall-clock gap
    includes preemption), and the CPU this process spent from the last tick before the round to the
    first tick after it (ms; includes the ticker's own, about 1%). Medians over ``rounds`` rounds,
    after one warm-up round (connections, label caches). Also the HTTP statuses seen (503 = refused by the
    bound) and, when the renderer has them, how many renders the scrapes took.
    """
    exporter = _filled_exporter(names, native)
    tracker = ScrapeTracker()
    server = MetricsServer(exporter.registry, tracker, "127.0.0.1", _free_port(), exporter.renderer)
    server.start()
    ticks: list[tuple[float, float, float, float]] = []  # (end, gap, process CPU at the end, CPU in the gap), s
    running = True

    def ticker() -> None:
        clock, cpu = time.monotonic, time.process_time
        used = cpu()
        while running:
            before = clock()
            gevent.sleep(0.001)
            after, now = clock(), cpu()
            ticks.append((after, after - before, now, now - used))
            used = now

    own_pin, client_pin = _cpu_pins()
    affinity = os.sched_getaffinity(0) if own_pin else None
    if own_pin:
        os.sched_setaffinity(0, {int(own_pin[-1])})
    greenlet = gevent.spawn(ticker)
    result: dict[str, Any] = {"names": names, "formats": formats, "rounds": rounds, "by_scrapers": []}
    try:
        for count in scrapers:
            renders_before = _renders(exporter.renderer)
            scrapes_before = tracker.count
            del ticks[:]
            completed = subprocess.run(
                [*client_pin, sys.executable, os.path.join(PROGRAMS, "concurrent_client.py"), str(server.port),
                 str(count), str(rounds + 1), json.dumps(scrape_formats(formats, native))],
                capture_output=True, text=True, timeout=600, check=True,
            )
            stalls, cpu_stalls, cpus, statuses, content_types = [], [], [], {}, set()
            for spans in json.loads(completed.stdout)[1:]:  # the first round warms up
                start, end = min(span[0] for span in spans), max(span[1] for span in spans)
                for span in spans:
                    statuses[str(span[2])] = statuses.get(str(span[2]), 0) + 1
                    content_types.add(span[4])
                overlapping = [tick for tick in ticks if tick[0] >= start and tick[0] - tick[1] <= end]
                stalls.append(max((tick[1] for tick in overlapping), default=0.0) * 1000)
                cpu_stalls.append(max((tick[3] for tick in overlapping), default=0.0) * 1000)
                before = [tick[2] for tick in ticks if tick[0] <= start]
                after = [tick[2] for tick in ticks if tick[0] >= end]
                if before and after:
                    cpus.append((after[0] - before[-1]) * 1000)
            result["by_scrapers"].append({
                "scrapers": count, "stall_ms": _median(stalls), "stall_max_ms": max(stalls, default=math.nan),
                "stall_cpu_ms": _median(cpu_stalls), "cpu_ms": _median(cpus), "statuses": statuses,
                "content_types": sorted(content_types),
                "renders": None if renders_before is None else _renders(exporter.renderer) - renders_before,
                "scrapes": count * (rounds + 1), "counted_scrapes": tracker.count - scrapes_before,
                "stalls": stalls, "cpu_stalls": cpu_stalls, "cpus": cpus,
            })
    finally:
        running = False
        greenlet.join(timeout=5)
        server.stop()
        if affinity is not None:
            os.sched_setaffinity(0, affinity)
    one = result["by_scrapers"][0]
    for row in result["by_scrapers"]:
        row["cpu_ratio"] = row["cpu_ms"] / one["cpu_ms"] if one["cpu_ms"] else math.nan
    return result


def _renders(renderer: Any) -> int | None:
    """Renders the renderer made so far (fast and prometheus_client's), None for a renderer that does not say."""
    try:
        return int(renderer.fast_scrapes) + int(renderer.library_scrapes)
    except AttributeError:  # pragma: no cover
        return None


# ---------------------------------------------------------------------------------------------- memory
def bench_memory(names: int, repeats: int, at_once: bool = False, native: bool = False) -> dict[str, float]:
    """Memory the plugin adds to a fresh Locust process at ``names`` names (median of ``repeats`` processes);
    with ``native``, native histograms on (and the Prometheus scrape a protobuf one, :func:`scrape_accept`).

    Typical data: 3 status codes and 5 error labels per endpoint. ``worst_rss_added_bytes``: every
    endpoint also at the cap of 20 error labels, each 120+ characters, and with ``native`` its native histogram at
    the bucket bound (every bucket of its 640 populated, at schema 6). Each figure comes from a process of
    its own (``programs/memory_child.py``), one after the other; ``at_once`` (``--smoke``): the three
    processes of a repeat at the same time (each measures only itself, but they compete for the CPU).
    """
    children = [
        (data, [sys.executable, os.path.join(PROGRAMS, "memory_child.py"), mode, str(names), scrape_accept(native), data,
                "on" if native else "off"])
        for mode, data in (("rss", "typical"), ("traced", "typical"), ("rss", "worst"))
    ]
    samples: dict[str, list[float]] = {}
    for _ in range(repeats):
        for batch in [children] if at_once else [[child] for child in children]:
            started = [(data, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
                       for data, command in batch]
            for data, process in started:
                out, err = process.communicate(timeout=120)
                if process.returncode:
                    raise subprocess.CalledProcessError(process.returncode, process.args, out, err)
                for key, value in json.loads(out.strip().splitlines()[-1]).items():
                    samples.setdefault(("worst_" if data == "worst" else "") + key, []).append(value)
    result_: dict[str, float] = {"names": names, "native": native}
    result_.update({key: statistics.median(values) for key, values in samples.items()})
    return result_


# ---------------------------------------------------------------------------------------------- end to end
def _median(values: list[float]) -> float:
    """Median, NaN when there is nothing to take it of."""
    return statistics.median(values) if values else math.nan


PIN_CORES = True
"""Pin the measured process and its peer to two different cores (``--smoke``: no, its processes overlap)."""


def _cpu_pins() -> tuple[list[str], list[str]]:
    """``taskset`` prefixes pinning (Locust, the target) to two different cores, when possible and wanted."""
    taskset = shutil.which("taskset")
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if taskset is None or len(cores) < 2 or not PIN_CORES:
        return [], []
    return [taskset, "-c", str(cores[0])], [taskset, "-c", str(cores[1])]


def _wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            gevent.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class _Target:
    """The HTTP server the end-to-end runs hit: nginx (Debian) if installed and wanted, else gevent."""

    def __init__(self, workdir: str, use_nginx: bool, pin: list[str]) -> None:
        self.port = _free_port()
        self.kind = "gevent"
        nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
        if use_nginx and nginx:
            self.kind = "nginx"
            root = os.path.join(workdir, "www")
            os.makedirs(root)
            with open(os.path.join(root, "index.html"), "w") as handle:
                handle.write("hello, locust")
            os.chmod(workdir, 0o755)  # nginx workers run as nobody when we are root
            conf = os.path.join(workdir, "nginx.conf")
            with open(conf, "w") as handle:
                handle.write(textwrap.dedent(f"""\
                    worker_processes 1;
                    daemon off;
                    pid {workdir}/nginx.pid;
                    error_log {workdir}/nginx-error.log warn;
                    events {{ worker_connections 1024; }}
                    http {{
                      access_log off;
                      client_body_temp_path {workdir}/body;
                      proxy_temp_path {workdir}/proxy;
                      fastcgi_temp_path {workdir}/fastcgi;
                      uwsgi_temp_path {workdir}/uwsgi;
                      scgi_temp_path {workdir}/scgi;
                      keepalive_requests 100000000;
                      server {{ listen 127.0.0.1:{self.port}; root {root}; }}
                    }}
                    """))
            command = [*pin, nginx, "-p", workdir, "-e", f"{workdir}/nginx-error.log", "-c", conf]
        else:
            command = [*pin, sys.executable, os.path.join(PROGRAMS, "gevent_target.py"), str(self.port)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            _wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # nginx: fast shutdown of master and worker
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class _LocustRun:
    """One headless Locust process hitting ``target``; figures of its steady state (see the locustfile).

    The steady state runs from 1 s after the test starts to 1 s before it stops (a fifth of ``seconds``
    for short runs) and is measured inside the Locust process: requests, failures, wall and CPU seconds.
    ``window``: (start, length) of the measurement in seconds from the test's start instead, and the run
    is stopped (SIGTERM, Locust's graceful shutdown) as soon as its figures are written (``--smoke``: a
    short window early in the run; Locust may stop well before ``seconds`` when its event loop's clock is
    stale at the start, as it is while processes start side by side). ``native``: the plugin with native
    histograms on (``LOCUST_METRICS_NATIVE_HISTOGRAMS=true``), scraped as a Prometheus with native histograms
    scrapes (protobuf); the toggled run's own scrapes too (``BENCH_ACCEPT``).
    """

    def __init__(
        self, workdir: str, target: _Target, plugin: bool, seconds: float, users: int, pin: list[str],
        toggle_s: float = 0.0, time_listener: bool = False, window: tuple[float, float] | None = None,
        native: bool = False, names: int = 1,
    ) -> None:
        self.plugin = plugin
        self.accept = scrape_accept(native)
        self.content_types: set[str] = set()  # of the scrapes' answers
        self.scraped = plugin and not toggle_s  # a toggled run renders its scrapes itself, in its "on" phases
        tag = f"{'plugin' if plugin else 'bare'}-{time.monotonic_ns()}"
        self.result_path = os.path.join(workdir, f"{tag}.json")
        self.log_path = os.path.join(workdir, f"{tag}.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
        env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env["BENCH_RESULT"] = self.result_path
        warmup, length = window or (min(1.0, seconds / 5), seconds - 2 * min(1.0, seconds / 5))
        env["BENCH_WARMUP"], env["BENCH_WINDOW"] = str(warmup), str(length)
        env["BENCH_ACCEPT"] = self.accept
        self.metrics_url = f"http://127.0.0.1:{_free_port()}/metrics"
        if plugin:
            env.update(
                BENCH_WITH_PLUGIN="1", LOCUST_METRICS_PORT=self.metrics_url.split(":")[2].split("/")[0],
                LOCUST_METRICS_HOST="127.0.0.1", LOCUST_METRICS_FINAL_SCRAPE_TIMEOUT="0",
                LOCUST_METRICS_NATIVE_HISTOGRAMS="true" if native else "false",
            )
        if toggle_s:
            env["BENCH_TOGGLE"] = str(toggle_s)
        if time_listener:
            env["BENCH_TIME_LISTENER"] = "1"
        env["BENCH_NAMES"] = str(names)
        command = [
            *pin, sys.executable, "-m", "locust", "-f", os.path.join(PROGRAMS, "e2e_locustfile.py"), "--headless",
            "-u", str(users), "-r", "100", "-t", f"{seconds:g}s", "-H", f"http://127.0.0.1:{target.port}",
            "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0",
        ]
        self.deadline = time.monotonic() + seconds + 60
        self.stop_when_measured, self.stopped = window is not None, False
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def running(self) -> bool:
        if self.stop_when_measured and not self.stopped and os.path.exists(self.result_path):
            self.stopped = True  # (the file is written in one go: no other greenlet runs while it is)
            self.process.terminate()
        return self.process.poll() is None and time.monotonic() < self.deadline

    def scrape(self) -> None:
        """Scrape the plugin's endpoint once with Prometheus' headers (:func:`scrape_accept`; nothing without the
        plugin)."""
        import urllib.request

        if self.scraped and self.process.poll() is None:
            headers = {"Accept": self.accept, "Accept-Encoding": "gzip"}
            try:
                with urllib.request.urlopen(urllib.request.Request(self.metrics_url, headers=headers), timeout=5) as answer:
                    answer.read()
                    self.content_types.add(answer.headers.get("Content-Type", ""))
            except OSError:
                pass

    def figures(self) -> dict[str, float]:
        """Wait for the end (killing the process past its deadline); raises ``RuntimeError`` without figures."""
        while self.running():
            gevent.sleep(0.1)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        try:
            with open(self.result_path) as handle:
                figures = json.load(handle)
            for part in (figures["on"], figures["off"]) if "on" in figures else (figures,):
                if part["requests"] <= 0 or part["wall_s"] <= 0 or part["cpu_s"] <= 0:
                    raise ValueError(f"an empty measurement window: {figures}")
            figures["content_types"] = sorted(self.content_types)
            return figures
        except (OSError, ValueError, KeyError) as exc:
            with open(self.log_path, errors="replace") as handle:
                output = handle.read()
            raise RuntimeError(f"no figures from the Locust run ({exc}); Locust said:\n{output[-2000:]}") from exc


def _run_together(runs: list[_LocustRun]) -> list[dict[str, float]]:
    """Scrape the runs' endpoints once a second until they end (noticed within 0.1 s); their figures, in order.

    Until a run's endpoint first answers (a new Locust process opens it a moment after it starts), it is
    tried again every 0.1 s instead: a short run (``--smoke``) could otherwise end before its second try."""
    due = [time.monotonic()] * len(runs)
    while any(run.running() for run in runs):
        for i, run in enumerate(runs):
            now = time.monotonic()
            if now >= due[i]:
                run.scrape()
                due[i] = now + (0.1 if run.scraped and not run.content_types else 1.0)
        gevent.sleep(0.1)
    return [run.figures() for run in runs]


def bench_end_to_end(
    pairs: int, seconds: float, users: int, use_nginx: bool, shared_pairs: int | None = None, toggle_s: float = 1.0,
    at_once: bool = False, native: bool = False,
) -> dict[str, Any]:
    """Bare Locust vs Locust + locust-metrics (scraped every second), in paired measurements; with ``native``,
    locust-metrics with native histograms on, scraped as a Prometheus with native histograms scrapes (protobuf).

    Three designs, each reported as the median of its per-pair ratios (Locust pinned to one core and
    the target to the other, when there are two):

    * sequential (``pairs`` pairs): a bare and a plugin run one after the other (order alternating);
      ``ratio`` = with / bare requests per second, ``cpu_ratio`` = with / bare requests per CPU-second
      of the Locust process (the rate Locust reaches with a core to itself);
    * toggled (``pairs`` runs): one plugin process whose listener and scrapes are switched on and off in
      ``toggle_s`` phases (ABBA); ``toggled_ratio`` = on / off requests per second. Phases a second apart see
      nearly the same machine, so this resolves a percent where back-to-back runs cannot; it leaves out
      what does not switch off (the imported modules, an idle server socket);
    * concurrent (``shared_pairs`` pairs, default ``pairs + 3``): a bare and a plugin process at the same
      time on the same core (the kernel gives each half of it), so that both see the same noise at the
      same moments; ``shared_ratio`` = with / bare requests per second. Harsher than a real run: the two
      processes evict each other's caches at every switch, which inflates per-request costs.

    Plus ``min(pairs, 3)`` plugin runs whose request listener is timed in place on every request
    (``listener_in_place_ns``, net of one clock call, the fastest measured), and every fold of the recorder's entries
    (``fold_in_place_ns``, per request), against the Locust process's CPU per request: the
    share of Locust's work the listener adds, which noise hardly touches; and as many over :data:`MANY_NAMES`
    request names (``*_many`` figures: each name's batch of response times between two folds is then smaller,
    and costs more per time).

    ``at_once`` (``--smoke``, no figure to read): a bare, a timed plugin and a toggled process, all at the
    same time, each measured from 0.5 s after its start for 4 toggle phases; the bare and the timed
    process stand for the first sequential and the first concurrent pair.
    """
    locust_pin, target_pin = _cpu_pins()
    workdir = tempfile.mkdtemp(prefix="locust-metrics-bench-")
    sequential: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    concurrent: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    toggled: list[dict[str, dict[str, float]]] = []
    timed: list[dict[str, float]] = []
    timed_many: list[dict[str, float]] = []  # the same over MANY_NAMES request names
    try:
        target = _Target(workdir, use_nginx, target_pin)
        try:
            shared_pairs = pairs + 3 if shared_pairs is None else shared_pairs

            def locust_run(plugin: bool, **details: Any) -> _LocustRun:
                return _LocustRun(workdir, target, plugin, seconds, users, locust_pin, native=native, **details)

            if at_once:
                pairs = shared_pairs = 1
                window = (0.5, 4 * toggle_s)  # (0.5 s: every user spawned, even on a slow machine)
                runs = [locust_run(False, window=window),
                        locust_run(True, time_listener=True, window=window),
                        locust_run(True, toggle_s=toggle_s, window=window)]
                bare, plugin, toggle = _run_together(runs)
                for paired_runs in (sequential, concurrent):
                    paired_runs[False].append(bare)
                    paired_runs[True].append(plugin)
                toggled.append(toggle)
                timed.append(plugin)
                timed_many.append(plugin)  # (smoke: one timed process stands for both)
            for pair in range(0 if at_once else max(pairs, shared_pairs)):
                if pair < pairs:
                    for with_plugin in (False, True) if pair % 2 == 0 else (True, False):
                        run = locust_run(with_plugin)
                        sequential[with_plugin].append(_run_together([run])[0])
                if pair < pairs:
                    run = locust_run(True, toggle_s=toggle_s)
                    toggled.append(_run_together([run])[0])
                if pair < min(pairs, 3):
                    run = locust_run(True, time_listener=True)
                    timed.append(_run_together([run])[0])
                    run = locust_run(True, time_listener=True, names=MANY_NAMES)
                    timed_many.append(_run_together([run])[0])
                if pair < shared_pairs:  # who starts first alternates too
                    order = (False, True) if pair % 2 == 0 else (True, False)
                    together = [locust_run(p) for p in order]
                    for run, figures in zip(together, _run_together(together)):
                        concurrent[run.plugin].append(figures)
        finally:
            target.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    wrong = [run for run in [*sequential[True], *concurrent[True], *toggled, *timed, *timed_many]
             if run.get("native_histograms") is not native]
    if wrong:  # LOCUST_METRICS_NATIVE_HISTOGRAMS not taken: the figures would be of the other mode
        raise RuntimeError(f"end to end: a plugin run without native histograms {'on' if native else 'off'}: {wrong[0]}")

    def rps(run: dict[str, float]) -> float:
        return run["requests"] / run["wall_s"]

    def cpu_rps(run: dict[str, float]) -> float:
        return run["requests"] / run["cpu_s"]

    def ratios(runs: dict[bool, list[dict[str, float]]], figure: Callable[[dict[str, float]], float]) -> list[float]:
        return [figure(p) / figure(b) for b, p in zip(runs[False], runs[True])]

    def paired(runs: dict[bool, list[dict[str, float]]], figure: Callable[[dict[str, float]], float]) -> float:
        return _median(ratios(runs, figure))

    def in_place(runs: list[dict[str, float]], key: str = "") -> dict[str, float]:
        """The timed runs' medians: listener and folds per request, Locust's CPU per request, their share."""
        return {
            f"listener_in_place{key}_ns": _median([run["listener_ns"] / run["listener_calls"] for run in runs]),
            f"fold_in_place{key}_ns": _median([run["fold_ns"] / run["listener_calls"] for run in runs]),
            f"locust_cpu_per_request{key}_ns": _median([run["cpu_s"] * 1e9 / run["requests"] for run in runs]),
            f"listener_share{key}": _median([(run["listener_ns"] + run["fold_ns"]) / (run["cpu_s"] * 1e9) for run in runs]),
        }

    return {
        "target": target.kind, "pinned": bool(locust_pin), "users": users, "seconds": seconds, "pairs": pairs,
        "shared_pairs": shared_pairs, "toggle_s": toggle_s, "at_once": at_once,
        "bare_rps": _median(list(map(rps, sequential[False]))),
        "plugin_rps": _median(list(map(rps, sequential[True]))),
        "ratio": paired(sequential, rps),
        "bare_cpu_rps": _median(list(map(cpu_rps, sequential[False]))),
        "plugin_cpu_rps": _median(list(map(cpu_rps, sequential[True]))),
        "cpu_ratio": paired(sequential, cpu_rps),
        "shared_ratio": paired(concurrent, rps),
        "shared_cpu_ratio": paired(concurrent, cpu_rps),
        "ratios": ratios(sequential, rps), "cpu_ratios": ratios(sequential, cpu_rps),
        "shared_ratios": ratios(concurrent, rps),
        "toggled_ratio": _median([rps(run["on"]) / rps(run["off"]) for run in toggled]),
        "toggled_ratios": [rps(run["on"]) / rps(run["off"]) for run in toggled],
        "toggled_cpu_ratio": _median([cpu_rps(run["on"]) / cpu_rps(run["off"]) for run in toggled]),
        **in_place(timed), "many_names": MANY_NAMES, **in_place(timed_many, "_many"),
        "sequential_runs": sequential, "concurrent_runs": concurrent, "toggled_runs": toggled, "timed_runs": timed,
        "timed_many_runs": timed_many,
    }


# ---------------------------------------------------------------------------------------------- the table
def _ok(value: float, limit: float, smoke: bool, lower_is_better: bool = True) -> str:
    if smoke:
        return "(smoke: no verdict)"
    met = value <= limit if lower_is_better else value >= limit
    return "met" if met else "NOT MET"


def _spread(values: list[float]) -> str:
    """``min-max`` of ratios, as percentages (how noisy the pairs were)."""
    return f"{min(values):.1%}-{max(values):.1%}" if values else "-"


def _rows(results: dict[str, Any], smoke: bool) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    native = results.get("native_histograms", False)
    hot = results.get("hot_path")
    if hot:
        rows += _hot_path_rows(hot, smoke, native)
    e2e = results.get("end_to_end")
    if e2e:
        rows += _end_to_end_rows(e2e, smoke)
    for cpu in results.get("scrape_cpu", []):
        n = cpu["names"]
        rows.append((f"scrape CPU, {n} names ({cpu['series_lines']:,} lines), text: ours vs generate_latest",
                     f"{cpu['ours_text_ms']:.2f} vs {cpu['library_text_ms']:.1f} ms",
                     f"{cpu['text_ratio']:.0%}" + (f"; <= 50%: {_ok(cpu['text_ratio'], 0.5, smoke)}" if n >= 500 else "")))
        if native:  # Prometheus asks for protobuf: the budget compares its render with generate_latest
            rows.append((f"scrape CPU, {n} names, protobuf (classic+native, {cpu['protobuf_bytes']:,} bytes): "
                         "ours vs generate_latest (text, classic)",
                         f"{cpu['ours_protobuf_ms']:.2f} vs {cpu['library_text_ms']:.1f} ms",
                         f"{cpu['protobuf_ratio']:.0%}" + (f"; <= 50%: {_ok(cpu['protobuf_ratio'], 0.5, smoke)}" if n >= 500 else "")))
        rows.append((f"scrape CPU, {n} names, " + ("protobuf+gzip: ours vs prometheus_client app (OpenMetrics+gzip)"
                                                   if native else "OpenMetrics+gzip: ours vs prometheus_client app"),
                     f"{cpu['ours_prometheus_ms']:.2f} vs {cpu['library_prometheus_ms']:.1f} ms",
                     f"{cpu['prometheus_ratio']:.0%}" + (f"; <= 50%: {_ok(cpu['prometheus_ratio'], 0.5, smoke)}" if n >= 500 else "")))
    for stall in results.get("scrape_stall", []):
        n = stall["names"]
        formats = "protobuf: ours vs prometheus_client app (OpenMetrics)" if native else "ours vs prometheus_client app"
        rows.append((f"loop stall per HTTP scrape, {n} names, {formats}",
                     f"{stall['ours_stall_ms']:.2f} vs {stall['library_stall_ms']:.1f} ms",
                     (f"<= 5 ms: {_ok(stall['ours_stall_ms'], 5.0, smoke)}; " if n >= 500 else "")
                     + f"worst {stall['ours_stall_max_ms']:.1f} vs {stall['library_stall_max_ms']:.1f}; idle gap {stall['idle_gap_ms']:.2f}"))
    for concurrent in results.get("concurrent_scrapes", []):
        rows += _concurrent_rows(concurrent, smoke)
    merge, memory = results.get("merge"), results.get("memory")
    if merge:
        rows += [
            (f"master merge of one report, {merge['names']} names", f"{merge['merge_ms']:.3f} ms",
             f"<= 5 ms: {_ok(merge['merge_ms'], 5.0, smoke)}"),
            (f"worker report payload, {merge['names']} names", f"{merge['payload_bytes']:,} bytes",
             "msgpack" + (", with native deltas" if native else "")),
        ]
        if "native_fold_ms" in merge:
            rows.append((f"master: adding one report's native deltas, {merge['names']} names",
                         f"{merge['native_fold_ms']:.3f} ms", "in the next scrape's fold, in slices (CPU, no stall)"))
    if memory:
        rows += [
            (f"memory added at {memory['names']} names: RSS (imports + data + scrapes)",
             f"{memory['rss_added_bytes'] / 1e6:.1f} MB", f"<= 20 MB: {_ok(memory['rss_added_bytes'] / 1e6, 20, smoke)}"),
            (f"memory added at {memory['names']} names, worst case: 20 long error labels each"
             + (", native histograms at their bucket bound" if memory.get("native") else ""),
             f"{memory['worst_rss_added_bytes'] / 1e6:.1f} MB",
             f"<= 20 MB: {_ok(memory['worst_rss_added_bytes'] / 1e6, 20, smoke)}"),
            (f"memory at {memory['names']} names: recorded data (tracemalloc)", f"{memory['data_bytes'] / 1e6:.2f} MB",
             f"retained after scrapes {memory['retained_bytes'] / 1e6:.2f} MB, peak {memory['scrape_peak_bytes'] / 1e6:.2f} MB"),
        ]
    return rows


def _concurrent_rows(concurrent: dict[str, Any], smoke: bool) -> list[tuple[str, str, str]]:
    """Rows of one :func:`bench_concurrent_scrapes` run. Budgets (500 names, Prometheus' headers): longest
    stall <= 5 ms with 2 or more scrapers, CPU of 50 scrapers <= 3x one's. Mixed formats: no budget (each
    render in flight may use its own 1 ms of a loop turn, up to --metrics-max-concurrent-renders)."""
    rows = []
    n, mixed = concurrent["names"], concurrent["formats"] == "mixed"
    budgets = n >= 500
    for row in concurrent["by_scrapers"]:
        count = row["scrapers"]
        what = f"{count} scrapers at once" + (", 4 formats in turn" if mixed else "")
        refused = row["statuses"].get("503", 0)
        first = concurrent["by_scrapers"][0]["scrapers"]
        base = "one scraper" if first == 1 else f"{first} scrapers"
        note = (f"worst {row['stall_max_ms']:.1f}; in CPU time {row['stall_cpu_ms']:.1f}; "
                f"CPU {row['cpu_ms']:.1f} ms ({row['cpu_ratio']:.1f}x {base})")
        if row["renders"] is not None:
            note += f"; {row['renders']} renders for {row['scrapes']} scrapes"
        if refused:
            note += f"; {refused} of {sum(row['statuses'].values())} answered 503"
        if budgets and count >= 2 and not mixed:
            note = f"<= 5 ms: {_ok(row['stall_ms'], 5.0, smoke)}; " + note
        rows.append((f"concurrent scrapes, {n} names, {what}: longest loop stall", f"{row['stall_ms']:.2f} ms", note))
    fifty = [row for row in concurrent["by_scrapers"] if row["scrapers"] == 50]
    if fifty and not mixed:
        rows.append((f"concurrent scrapes, {n} names: CPU of 50 scrapers at once / one scraper",
                     f"{fifty[0]['cpu_ratio']:.2f}x",
                     f"<= 3x: {_ok(fifty[0]['cpu_ratio'], 3.0, smoke)}" if budgets else ""))
    return rows


def _hot_path_rows(hot: dict[str, Any], smoke: bool, native: bool = False) -> list[tuple[str, str, str]]:
    # native histograms on by default (issue 12) needs <= 10% of the naive listener's added cost
    native_budget = f"; native by default: <= 10%: {_ok(hot['plugin_vs_naive'], 0.10, smoke)}" if native else ""
    return [
        ("hot path: request event with no listener (dispatch only)", f"{hot['empty_ns'] / 1000:.3f} µs", ""),
        ("hot path: added by Locust's own statistics (bare Locust)", f"{hot['locust_added_ns'] / 1000:.3f} µs", ""),
        ("hot path: added by locust-metrics", f"{hot['plugin_added_ns'] / 1000:.3f} µs",
         f"<= 1 µs: {_ok(hot['plugin_added_ns'] / 1000, 1.0, smoke)}; {hot['plugin_vs_locust']:.0%} of Locust's own"),
        ("hot path: added by a naive prometheus_client listener", f"{hot['naive_added_ns'] / 1000:.3f} µs", ""),
        ("hot path: added by Locust's statistics + locust-metrics", f"{hot['both_added_ns'] / 1000:.3f} µs", "a real run"),
        ("hot path: added by locust-metrics as an ordinary listener", f"{hot['listener_added_ns'] / 1000:.3f} µs",
         "the fallback for an EventHook we do not know"),
        ("hot path: locust-metrics / naive (added cost)", f"{hot['plugin_vs_naive']:.0%}",
         f"<= 25%: {_ok(hot['plugin_vs_naive'], 0.25, smoke)}" + native_budget),
    ]


def _in_place_row(label: str, e2e: dict[str, Any], key: str = "") -> tuple[str, str, str]:
    """The row of ``bench_end_to_end``'s ``in_place`` figures with suffix ``key``."""
    listener, fold = e2e[f"listener_in_place{key}_ns"], e2e[f"fold_in_place{key}_ns"]
    share = e2e[f"listener_share{key}"]
    return (label, f"{(listener + fold) / 1000:.2f} µs",
            f"listener {listener / 1000:.2f} + folds {fold / 1000:.2f} µs; {share:.2%} of Locust's CPU "
            f"({e2e[f'locust_cpu_per_request{key}_ns'] / 1000:.0f} µs/request): {1 / (1 + share):.1%} of bare when CPU-bound")


def _end_to_end_rows(e2e: dict[str, Any], smoke: bool) -> list[tuple[str, str, str]]:
    where = f"{e2e['target']}, {e2e['users']} users, "
    if e2e.get("at_once"):
        where += f"{4 * e2e['toggle_s']:g} s windows, stopped once measured"
    else:
        where += f"{e2e['seconds']:g} s runs"
    if e2e["pinned"]:
        where += ", pinned"
    return [
        (f"end to end: bare Locust requests/s ({where})", f"{e2e['bare_rps']:,.0f}/s",
         f"per Locust CPU-second: {e2e['bare_cpu_rps']:,.0f}"),
        ("end to end: with locust-metrics (scraped every 1 s)", f"{e2e['plugin_rps']:,.0f}/s",
         f"per Locust CPU-second: {e2e['plugin_cpu_rps']:,.0f}"),
        ("end to end: with / bare, requests/s, sequential pairs (median)", f"{e2e['ratio']:.2%}",
         f">= 99%: {_ok(e2e['ratio'], 0.99, smoke, lower_is_better=False)}; pairs {_spread(e2e['ratios'])}"),
        ("end to end: with / bare, requests per Locust CPU-second, same pairs", f"{e2e['cpu_ratio']:.2%}",
         f">= 99%: {_ok(e2e['cpu_ratio'], 0.99, smoke, lower_is_better=False)}; pairs {_spread(e2e['cpu_ratios'])}"),
        _in_place_row("end to end: locust-metrics' listener and folds timed in place, per request", e2e),
        _in_place_row(f"end to end: the same over {e2e['many_names']} request names", e2e, "_many"),
        (f"end to end: on / off, requests/s, one process toggled in {e2e['toggle_s']:g} s phases, {e2e['pairs']} runs",
         f"{e2e['toggled_ratio']:.2%}",
         f">= 99%: {_ok(e2e['toggled_ratio'], 0.99, smoke, lower_is_better=False)}; runs {_spread(e2e['toggled_ratios'])}"),
        (f"end to end: with / bare, requests/s, {e2e['shared_pairs']} concurrent pairs on one core",
         f"{e2e['shared_ratio']:.2%}",
         f">= 99%: {_ok(e2e['shared_ratio'], 0.99, smoke, lower_is_better=False)}; pairs {_spread(e2e['shared_ratios'])}"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", "--quick", dest="smoke", action="store_true",
                        help="every section once at tiny sizes, for the test suite (no figures, no verdicts)")
    parser.add_argument("--repeats", type=int, default=None, help="measurements per figure (default 9; smoke: 1)")
    parser.add_argument("--pairs", type=int, default=None,
                        help="end-to-end sequential pairs and toggled runs (default 5; smoke: 1); "
                        "concurrent pairs: this + 3")
    parser.add_argument("--e2e-seconds", type=float, default=None,
                        help="length of one end-to-end run (default 10; smoke: at most that, stopped once measured)")
    parser.add_argument("--users", type=int, default=10, help="end-to-end users (default 10)")
    parser.add_argument("--no-nginx", action="store_true", help="end to end against a gevent server, not nginx")
    parser.add_argument("--skip-e2e", action="store_true", help="leave the end-to-end runs out")
    parser.add_argument("--native-histograms", action="store_true",
                        help="every section with native histograms on, as a user has them "
                        "(--metrics-native-histograms true) and scraped as a Prometheus with native histograms "
                        "scrapes (protobuf); default: off")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--only", metavar="SECTION,...", default=None,
                        help=f"run only these sections ({', '.join(SECTIONS)}); default: all")
    args = parser.parse_args(argv)
    only = set(SECTIONS) if args.only is None else {part.strip() for part in args.only.split(",") if part.strip()}
    if not only <= set(SECTIONS):
        parser.error(f"--only: unknown section(s) {', '.join(sorted(only - set(SECTIONS)))}; known: {', '.join(SECTIONS)}")
    if args.skip_e2e:
        only.discard("end_to_end")
    smoke, native = args.smoke, args.native_histograms
    global PIN_CORES
    PIN_CORES = not smoke
    repeats = args.repeats or (1 if smoke else 9)
    pairs = args.pairs or (1 if smoke else 5)
    seconds = args.e2e_seconds or 10.0
    sizes = (10,) if smoke else (10, 100, 500)
    started = time.monotonic()

    results: dict[str, Any] = {"smoke": smoke, "native_histograms": native, "repeats": repeats, "cpus": os.cpu_count(),
                               "section_seconds": {}}
    names, counts = (20, (1, 2)) if smoke else (500, (1, 2, 10, 50))
    sections: dict[str, Callable[[], Any]] = {
        "hot_path": lambda: bench_hot_path(256 if smoke else 2048, 20 if smoke else 50, 2 if smoke else 25 * repeats,
                                           native),
        "scrape_cpu": lambda: [bench_render_cpu(n, repeats, native) for n in sizes],
        "scrape_stall": lambda: [bench_scrape_stall(n, 2 * repeats, 1 if smoke else 2, native) for n in sizes],
        "concurrent_scrapes": lambda: [
            bench_concurrent_scrapes(names, counts, repeats, native=native),
            bench_concurrent_scrapes(names, (4,) if smoke else (4, 12), repeats, formats="mixed", native=native),
        ],
        "merge": lambda: bench_merge(20 if smoke else 500, repeats, native),
        "memory": lambda: bench_memory(20 if smoke else 500, 1 if smoke else 3, at_once=smoke, native=native),
        "end_to_end": lambda: bench_end_to_end(
            pairs, seconds, args.users, use_nginx=not (smoke or args.no_nginx), shared_pairs=1 if smoke else None,
            toggle_s=0.125 if smoke else 1.0, at_once=smoke, native=native,
        ),
    }
    # --smoke: the sections of other processes run beside the rest from the start (greenlets: they wait)
    background = {section: gevent.spawn(sections[section]) for section in ("memory", "end_to_end")
                  if smoke and section in only}
    gevent.sleep(0)  # (they start their processes)
    try:
        for section in SECTIONS:
            if section in only:
                begun = time.monotonic()
                results[section] = background[section].get() if section in background else sections[section]()
                results["section_seconds"][section] = time.monotonic() - begun
    finally:  # after an error: the background sections unwind (the end-to-end target stops)
        gevent.killall(list(background.values()))
    results["seconds"] = time.monotonic() - started

    rows = _rows(results, smoke)
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    native_column = "native histograms"  # of locust-metrics in this run, on every row
    mode = ("on" if native else "off").ljust(len(native_column))
    print(f"{'measurement'.ljust(width)}  {native_column}  {'median'.rjust(value_width)}  budget / note")
    for label, value, note in rows:
        print(f"{label.ljust(width)}  {mode}  {value.rjust(value_width)}  {note}")
    print(f"({os.cpu_count()} CPUs, Python {sys.version.split()[0]}, Locust {locust.__version__}; "
          f"{repeats} repeats; {results['seconds']:.0f} s)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
