"""Soak: a bounded run at full speed, scraped every second, as a long load test is.

Locust fires request events as fast as one core allows (no network, 100 names, failures), for
``SOAK_SECONDS`` (default 150) seconds; a scraper reads ``/metrics`` every second. Checks:

* the memory locust-metrics' own objects hold (measured inside the Locust process every 5 s, see
  ``FAST_EVENTS_MEMORY_LOG`` in ``locustfiles/fast_events.py``) is flat after warm-up (its floor over three
  samples, at the start and at the end);
* the process's resident memory (our own ``locust_process_resident_memory_bytes``) grows no more than
  Locust's own statistics make it grow (about 15 MiB over such a run without locust-metrics at all);
* counters never go backwards, and at the end the counts equal Locust's ``--csv`` statistics exactly.

Marked ``soak``: ``python -m pytest -m "not soak"`` leaves it out.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest
from support import (
    LOCUSTFILES,
    assert_counters_never_decrease,
    assert_exact_per_endpoint,
    child_env,
    csv_stats,
    free_port,
    locust,
    scrape_until_exit,
)

SOAK_SECONDS = int(os.environ.get("SOAK_SECONDS", "150"))
WARM_UP_S = 30
MAX_OWN_GROWTH_BYTES = 64 * 1024
"""Our own objects may grow at most this much after warm-up (counts passing 256 stop being shared small
ints: a few bytes per counter, once)."""
MAX_RSS_GROWTH_BYTES = 48 * 1024 * 1024
"""Resident memory may grow at most this much after warm-up. Locust alone grows by about 15 MiB in such a
run (its per-second and per-response-time statistics); a leak of 5 bytes per request would add 50 MB."""


@pytest.mark.soak
def test_soak_full_speed_scraped_every_second_memory_flat_counts_exact(workdir: Path) -> None:
    port = free_port()
    args = ["-f", str(LOCUSTFILES / "fast_events.py"), "--headless", "-u", "10", "-r", "10",
            "-t", f"{SOAK_SECONDS}s", "--csv", str(workdir / "run"), "--metrics-port", str(port),
            "--metrics-host", "127.0.0.1", "--metrics-final-scrape-timeout", "10"]
    memory_log = workdir / "own-memory.log"
    env = child_env(FAST_EVENTS_WAIT="0", FAST_EVENTS_NAMES="100", FAST_EVENTS_BATCH="20", FAST_EVENTS_FAILURES="1",
                    FAST_EVENTS_MEMORY_LOG=str(memory_log))
    started = time.monotonic()
    with locust(args, workdir, env=env) as process:
        scrapes = scrape_until_exit(process, port, run_time=SOAK_SECONDS, interval=1.0, timeout=SOAK_SECONDS + 90)
        code = process.wait(timeout=60)
        output = process.output()
    assert code == 1, output[-3000:]  # the 2% failures, as without us
    assert len(scrapes) >= SOAK_SECONDS * 0.8, len(scrapes)

    # resident memory and requests of every scrape taken while the test ran, one a second
    samples = [(s.sum("locust_process_resident_memory_bytes", node="local"), s.sum("locust_requests_total"))
               for s in scrapes if s.select("locust_test_start_time_seconds") and not s.select("locust_test_stop_time_seconds")]
    assert len(samples) > WARM_UP_S + 10, len(samples)
    warm_rss = statistics.median(rss for rss, _ in samples[WARM_UP_S - 5:WARM_UP_S + 5])
    end_rss = statistics.median(rss for rss, _ in samples[-10:])
    requests = samples[-1][1]
    own = [line.split() for line in memory_log.read_text().splitlines()]
    test_start = scrapes[-1].sum("locust_test_start_time_seconds")
    # floors over three samples (15 s): what a scrape or a fold in flight holds for a moment is not growth, and a leak
    # raises the floor too
    after_warm_up = [int(size) for t, size, _ in own if float(t) >= test_start + WARM_UP_S]
    own_warm, own_end = min(after_warm_up[:3]), min(after_warm_up[-3:])
    print(f"\nsoak: {SOAK_SECONDS}s, {requests:.0f} requests ({requests / SOAK_SECONDS:.0f}/s), {len(samples)} scrapes "
          f"during the run; RSS after {WARM_UP_S}s {warm_rss / 2**20:.1f} MiB, at the end {end_rss / 2**20:.1f} MiB "
          f"(+{(end_rss - warm_rss) / 2**20:.1f} MiB); locust-metrics' own objects {own_warm / 1024:.1f} KiB after "
          f"{WARM_UP_S}s, {own_end / 1024:.1f} KiB at the end; wall time {time.monotonic() - started:.0f}s")
    assert own_end - own_warm < MAX_OWN_GROWTH_BYTES, (own_warm, own_end)
    assert end_rss - warm_rss < MAX_RSS_GROWTH_BYTES, (warm_rss, end_rss)

    assert_counters_never_decrease(scrapes, ("locust_requests_total", "locust_request_failures_total",
                                             "locust_request_duration_seconds_count"))
    final = scrapes[-1]
    assert final.select("locust_test_stop_time_seconds"), "the last scrape came after the test stopped"
    assert_exact_per_endpoint(final, csv_stats(workdir / "run"))
