"""locust-metrics benchmarks: what the plugin costs the load generator, measured side by side in one run.

Run from the repository root::

    python benchmarks/bench.py              # full sizes, prints one table (a few minutes)
    python benchmarks/bench.py --quick      # small sizes, for the test suite (no timing claims)
    python benchmarks/bench.py --json out.json

Sections (each figure is the median of ``--repeats`` measurements; variants are interleaved in every
repeat so that they see the same machine state):

* **hot path**: the time Locust's ``request`` event takes per request, with (a) no listener at all,
  (b) Locust's own statistics listener (bare Locust), (c) locust-metrics' listener, (d) a naive
  prometheus_client listener (``Histogram.labels(...).observe()`` plus counters), each alone, and
  (e) Locust's + ours together, as in a real run. "Added" = variant - (a): the cost a listener adds to
  every request. Budgets: ours <= 1 µs, and <= 25% of the naive listener's.
* **merge**: on a master, the time to merge one worker report holding 500 endpoint names, and the
  report's size in bytes (msgpack, as Locust sends it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import locust  # noqa: E402,F401  (gevent monkey-patching first, as in a real run)
import msgpack  # noqa: E402
from locust import User, task  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.exception import CatchResponseError  # noqa: E402
from prometheus_client import CollectorRegistry, Counter, Histogram  # noqa: E402

from locust_metrics.distributed import PayloadMerger, take_payload  # noqa: E402
from locust_metrics.options import Settings  # noqa: E402
from locust_metrics.recorder import RequestRecorder  # noqa: E402


class _BenchUser(User):
    @task
    def nothing(self) -> None:  # pragma: no cover - never runs
        pass


class _Response:
    __slots__ = ("status_code",)

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


def _events(n: int, names: int, seed: int = 1) -> list[dict[str, Any]]:
    """``n`` realistic request events over ``names`` endpoint names: 2% failures, latencies 1..1500 ms."""
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
                "request_type": "GET" if i % 4 else "POST",
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


def _environment(variant: str) -> Environment:
    env = Environment(user_classes=[_BenchUser])
    if variant == "empty":
        return env
    if variant in ("bare", "both"):
        env.create_local_runner()  # registers Locust's own statistics listener
    if variant in ("plugin", "both"):
        settings = Settings.from_kwargs(port=0)
        recorder = RequestRecorder(settings.bounds_ms(), settings.slow_threshold_ms, (), settings.max_names)
        env.events.request.add_listener(recorder.on_request)
    elif variant == "naive":
        env.events.request.add_listener(naive_listener(CollectorRegistry()))
    return env


def bench_hot_path(n_events: int, names: int, repeats: int) -> dict[str, float]:
    """Median nanoseconds per ``request`` event for each variant (see module docstring)."""
    # a small working set, cycled: a real event's kwargs are freshly made and in cache, so a huge list
    # of pre-made events would measure memory traffic instead of listeners
    distinct = _events(4096, names)
    events = (distinct * (n_events // len(distinct) + 1))[:n_events]
    variants = ("empty", "bare", "plugin", "naive", "both")
    environments = {variant: _environment(variant) for variant in variants}
    for env in environments.values():  # warm up: first sightings of every name
        fire = env.events.request.fire
        for kwargs in events[: names * 4]:
            fire(**kwargs)
    samples: dict[str, list[float]] = {variant: [] for variant in variants}
    for repeat in range(repeats):
        order = list(variants) if repeat % 2 == 0 else list(reversed(variants))
        for variant in order:
            fire = environments[variant].events.request.fire
            start = time.perf_counter_ns()
            for kwargs in events:
                fire(**kwargs)
            samples[variant].append((time.perf_counter_ns() - start) / len(events))
    result = {f"{variant}_ns": statistics.median(values) for variant, values in samples.items()}
    result["plugin_added_ns"] = result["plugin_ns"] - result["empty_ns"]
    result["naive_added_ns"] = result["naive_ns"] - result["empty_ns"]
    result["locust_added_ns"] = result["bare_ns"] - result["empty_ns"]
    result["both_added_ns"] = result["both_ns"] - result["empty_ns"]
    result["plugin_vs_naive"] = result["plugin_added_ns"] / result["naive_added_ns"]
    return result


def bench_merge(names: int, repeats: int) -> dict[str, float]:
    """Master merge time (median ms) and msgpack bytes of one worker report holding ``names`` names."""
    settings = Settings.from_kwargs(port=0)
    worker = RequestRecorder(settings.bounds_ms(), settings.slow_threshold_ms, (), max(names, 1))
    for kwargs in _events(names * 20, names):
        worker.on_request(**kwargs)
    payload = take_payload(worker, "worker-0", None)
    wire = msgpack.packb(payload)
    received = msgpack.unpackb(wire, raw=False)
    master = RequestRecorder(settings.bounds_ms(), settings.slow_threshold_ms, (), settings.max_names)
    merger = PayloadMerger(master)
    merger.merge(received)  # first sightings
    times = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        merger.merge(received)
        times.append((time.perf_counter_ns() - start) / 1e6)
    return {"names": names, "merge_ms": statistics.median(times), "payload_bytes": len(wire)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run, no timing claims)")
    parser.add_argument("--repeats", type=int, default=None, help="measurements per figure (default 9; quick: 2)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 9)
    results: dict[str, Any] = {}
    results["hot_path"] = bench_hot_path(2_000 if args.quick else 200_000, 20 if args.quick else 50, repeats)
    results["merge"] = bench_merge(50 if args.quick else 500, repeats)

    hot = results["hot_path"]
    merge = results["merge"]
    rows = [
        ("request event with no listener (dispatch only)", f"{hot['empty_ns'] / 1000:.3f} µs", ""),
        ("added by Locust's own statistics (bare Locust)", f"{hot['locust_added_ns'] / 1000:.3f} µs", ""),
        ("added by locust-metrics", f"{hot['plugin_added_ns'] / 1000:.3f} µs", "budget: <= 1 µs"),
        ("added by a naive prometheus_client listener", f"{hot['naive_added_ns'] / 1000:.3f} µs", ""),
        ("added by Locust's statistics + locust-metrics", f"{hot['both_added_ns'] / 1000:.3f} µs", "a real run"),
        ("locust-metrics / naive (added cost)", f"{hot['plugin_vs_naive']:.0%}", "budget: <= 25%"),
        (f"master merge of one report, {merge['names']} names", f"{merge['merge_ms']:.3f} ms", "budget: <= 5 ms"),
        (f"worker report payload, {merge['names']} names", f"{merge['payload_bytes']:,} bytes", "msgpack"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement'.ljust(width)}  {'median':>14}  note")
    for label, value, note in rows:
        print(f"{label.ljust(width)}  {value:>14}  {note}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
