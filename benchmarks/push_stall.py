"""How long a push to the Pushgateway holds the gevent loop, at 500 endpoint names: prometheus_client's own
rendering (``push_to_gateway`` with the registry: ``generate_latest`` in one go) against ours (the scrape's
sliced renderer, then the same ``push_to_gateway`` request), measured side by side in one run.

A ticker greenlet sleeps 1 ms in a loop; the longest gap between two of its wake-ups during a push is the
push's stall (it includes the ticker's own 1 ms). The pushes go to a sink in another process (a plain HTTP
server on 127.0.0.1 that answers 200), so only our side is measured.

    python benchmarks/push_stall.py [--names 500] [--pushes 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from gevent import monkey

monkey.patch_all()

import gevent  # noqa: E402
from locust import User, task  # noqa: E402
from locust.env import Environment  # noqa: E402
from prometheus_client.exposition import push_to_gateway  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import locust_metrics  # noqa: E402
from locust_metrics.push import Pusher  # noqa: E402

SINK = Path(__file__).resolve().parent / "programs" / "push_sink.py"
"""The Pushgateway stand-in (prints its port, answers every PUT with 200)."""


class Quiet(User):
    @task
    def nothing(self) -> None:
        pass


class Response:
    status_code = 200


def exporter_with(names: int) -> locust_metrics.MetricsExporter:
    """An exporter (no server of its own) whose recorder holds ``names`` endpoints with a few statuses each."""
    env = Environment(user_classes=[Quiet])
    exporter = locust_metrics.install(env, port=0)
    for index in range(names):
        for status, time_ms in ((200, 12.5), (200, 480.0), (404, 3.0), (500, 2500.0)):
            response = Response()
            response.status_code = status
            exporter.recorder.on_request(
                request_type="GET" if index % 2 else "POST", name=f"/api/items/{index}", response_time=time_ms,
                response_length=512, response=response, exception=None if status < 400 else "HTTP error",
            )
    return exporter


def stalls_of(push, pushes: int) -> tuple[list[float], list[float]]:
    """(longest ticker gap during each push, wall time of each push), milliseconds."""
    wakeups: list[float] = []
    running = [True]

    def ticker() -> None:
        while running[0]:
            wakeups.append(time.perf_counter())
            gevent.sleep(0.001)

    greenlet = gevent.spawn(ticker)
    gevent.sleep(0.05)
    stalls, walls = [], []
    for _ in range(pushes):
        gevent.sleep(0.02)
        start = time.perf_counter()
        push()
        end = time.perf_counter()
        times = [t for t in wakeups if start - 0.002 <= t <= end + 0.002]
        gaps = [b - a for a, b in zip(times, times[1:])] or [end - start]
        stalls.append(max(gaps) * 1000)
        walls.append((end - start) * 1000)
    running[0] = False
    greenlet.join()
    return stalls, walls


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=500)
    parser.add_argument("--pushes", type=int, default=20)
    args = parser.parse_args(argv)
    sink = subprocess.Popen([sys.executable, str(SINK)], stdout=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{sink.stdout.readline().strip()}"
        exporter = exporter_with(args.names)
        ours = Pusher(exporter.registry, url, "bench", 60, render=exporter._push_body)
        ours.grouping_key = {"run": "sliced"}
        from gevent.lock import BoundedSemaphore

        ours._lock = BoundedSemaphore(1)
        variants = {
            "prometheus_client (generate_latest)": lambda: push_to_gateway(
                url, job="bench", registry=exporter.registry, grouping_key={"run": "library"}),
            "locust-metrics (sliced renderer)": lambda: ours.push() or None,
        }
        results = {}
        for _ in range(2):  # interleaved: each variant twice
            for name, push in variants.items():
                stalls, walls = stalls_of(push, args.pushes // 2)
                results.setdefault(name, ([], []))
                results[name][0].extend(stalls)
                results[name][1].extend(walls)
        assert ours.failures == 0, "every push reached the sink"
    finally:
        sink.kill()
    summary = {}
    print(f"push at {args.names} names, {args.pushes} pushes each (ms; stall includes the ticker's 1 ms)")
    print(f"{'':40} {'stall median':>13} {'stall max':>10} {'push median':>12}")
    for name, (stalls, walls) in results.items():
        summary[name] = {"stall_median_ms": statistics.median(stalls), "stall_max_ms": max(stalls),
                         "wall_median_ms": statistics.median(walls)}
        print(f"{name:40} {summary[name]['stall_median_ms']:13.2f} {summary[name]['stall_max_ms']:10.2f} "
              f"{summary[name]['wall_median_ms']:12.2f}")
    return summary


if __name__ == "__main__":
    main()
