"""Percentile accuracy through a real Prometheus: what ``histogram_quantile`` gives from our classic buckets and
from our native histograms, against the exact percentiles of the response times Locust reported.

Run from the repository root::

    python benchmarks/percentiles.py                        # both distributions, 60 s each (about 3 minutes)
    python benchmarks/percentiles.py --seconds 20 --json out.json
    python benchmarks/percentiles.py --locust-args="--metrics-native-histograms off"

For each distribution (``programs/latency_target.py``: a lognormal endpoint, median 120 ms and p99 about
500 ms; a bimodal one, 70% fast hits and 30% slow misses), one headless Locust run (``FastHttpUser``, no wait
time, ``--users`` users against the target on 127.0.0.1, locust-metrics imported) is scraped every second by
two Debian Prometheus 2.42 servers: one with ``--enable-feature=native-histograms`` (it asks for the protobuf
format, and gets native buckets when locust-metrics serves them), one without (text: the classic buckets).
A side listener keeps every response time Locust reported. After the run, at the time of the final scrape:

* classic: ``histogram_quantile(q, sum by (le) (locust_request_duration_seconds_bucket))`` on the plain server;
* native: ``histogram_quantile(q, sum(locust_request_duration_seconds))`` on the native one (none when
  locust-metrics served no native buckets);
* exact: the nearest-rank percentile of the response times (``sorted[ceil(q n) - 1]``).

The error is ``estimate / exact - 1``. The budget (issue 12): native within 2% at p50, p90, p95 and p99. The
script exits 0 whatever the figures (verdicts are in the table), 2 when a part cannot run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PROGRAMS = Path(__file__).resolve().parent / "programs"
sys.path.insert(0, str(REPO / "tests"))

from support import PrometheusServer, free_port, prometheus_config  # noqa: E402

QUANTILES = (0.5, 0.9, 0.95, 0.99)
DISTRIBUTIONS = ("lognormal", "bimodal")
BUDGET = 0.02
"""Largest relative error of a native percentile (issue 12: 2%)."""


def exact_quantile(ordered: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of ``ordered`` (ascending): ``ordered[ceil(q n) - 1]``."""
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def _start_target(seed: int) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    target = subprocess.Popen([sys.executable, str(PROGRAMS / "latency_target.py"), str(port), str(seed)],
                              stdout=subprocess.PIPE, text=True)
    assert target.stdout is not None
    if target.stdout.readline().strip() != "listening":
        target.kill()
        raise RuntimeError("the latency target did not start")
    return target, port


def measure(distribution: str, seconds: int, users: int, locust_args: list[str], workdir: Path,
            seed: int = 1) -> dict[str, Any]:
    """One run against ``/distribution``; returns ``{"requests": n, "rows": [{"q", "exact_s", "classic_s",
    "native_s"}...]}`` (seconds; ``native_s`` None when Prometheus stored no native histogram)."""
    target, target_port = _start_target(seed)
    metrics_port = free_port()
    times_file = workdir / f"{distribution}.times"
    config = prometheus_config([f"127.0.0.1:{metrics_port}"], scrape_interval="1s")
    try:
        with PrometheusServer(workdir / f"{distribution}-native", config,
                              extra_args=["--enable-feature=native-histograms"]) as native, \
                PrometheusServer(workdir / f"{distribution}-classic", config) as classic:
            env = {**os.environ, "PERCENTILES_PATH": f"/{distribution}", "PERCENTILES_TIMES": str(times_file),
                   "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
            command = [sys.executable, "-m", "locust", "-f", str(PROGRAMS / "percentiles_locustfile.py"),
                       "--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds}s",
                       "-H", f"http://127.0.0.1:{target_port}", "--only-summary", "--metrics-host", "127.0.0.1",
                       "--metrics-port", str(metrics_port), "--metrics-final-scrape-timeout", "10", *locust_args]
            locust = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 120)
            ended = time.time()  # after the final scrape (locust-metrics waits for it), before any stale marker
            if locust.returncode != 0:
                raise RuntimeError(f"locust exited with {locust.returncode}:\n{locust.stderr[-3000:]}")
            ordered = sorted(float(line) for line in times_file.read_text().split())
            rows = []
            for q in QUANTILES:
                rows.append({
                    "q": q,
                    "exact_s": exact_quantile(ordered, q) / 1000,
                    "classic_s": classic.query_value(
                        f"histogram_quantile({q}, sum by (le) (locust_request_duration_seconds_bucket))", ended),
                    "native_s": native.query_value(
                        f"histogram_quantile({q}, sum(locust_request_duration_seconds))", ended),
                })
            return {"requests": len(ordered), "rows": rows}
    finally:
        target.terminate()
        target.wait(timeout=10)


def _error(estimate: float | None, exact: float) -> float | None:
    return None if estimate is None else estimate / exact - 1


def table(results: dict[str, dict[str, Any]]) -> str:
    """The results as a Markdown table: milliseconds and relative errors."""
    lines = ["| distribution (requests) | percentile | exact | classic buckets | native histogram |",
             "|---|---|---|---|---|"]
    for distribution, result in results.items():
        for row in result["rows"]:
            cells = []
            for key in ("classic_s", "native_s"):
                error = _error(row[key], row["exact_s"])
                cells.append("no data" if error is None else f"{row[key] * 1000:.1f} ms ({error:+.1%})")
            verdict = "" if row["native_s"] is None else (
                " ✅" if abs(_error(row["native_s"], row["exact_s"]) or 0) <= BUDGET else " ❌")
            lines.append(f"| {distribution} ({result['requests']:,}) | p{round(row['q'] * 100)} | "
                         f"{row['exact_s'] * 1000:.1f} ms | {cells[0]} | {cells[1]}{verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="Locust's run time per distribution (default 60)")
    parser.add_argument("--users", type=int, default=50, help="Locust users (default 50)")
    parser.add_argument("--distributions", default=",".join(DISTRIBUTIONS), help="comma-separated (default all)")
    parser.add_argument("--locust-args", default="", help="more Locust arguments, one string (split on blanks)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory(prefix="percentiles-") as work:
        for distribution in args.distributions.split(","):
            try:
                results[distribution] = measure(distribution, args.seconds, args.users, args.locust_args.split(),
                                                Path(work))
            except (RuntimeError, OSError) as error:
                print(f"percentiles: {distribution}: {error}", file=sys.stderr)
                return 2
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
