"""The benchmarks still run: ``python benchmarks/bench.py --smoke`` (every section once, tiny sizes, no figures), with
native histograms off and on (``--native-histograms``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO, child_env

PROTOBUF = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
"""The ``Content-Type`` of the answers to Prometheus' scrapes, with native histograms on and off."""


@pytest.mark.parametrize("native", [False, True], ids=["native off", "native on"])
def test_smoke_benchmark_runs_every_section_and_prints_every_row(tmp_path: Path, native: bool) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench.py"), "--smoke", "--json", str(out),
         *(["--native-histograms"] if native else [])],
        capture_output=True, text=True, timeout=180, env=child_env(), cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = result.stdout
    lines = table.splitlines()[1:-1]
    rows = [re.split(r" {2,}", line)[0] for line in lines]  # each row's label
    assert all(re.split(r" {2,}", line)[1] == ("on" if native else "off") for line in lines)  # the native column
    expected = [
        "hot path: request event with no listener", "hot path: added by Locust's own statistics",
        "hot path: added by locust-metrics", "hot path: added by a naive prometheus_client listener",
        "hot path: added by Locust's statistics + locust-metrics", "hot path: added by locust-metrics as an ordinary",
        "hot path: locust-metrics / naive",
        "end to end: bare Locust requests/s", "end to end: with locust-metrics (scraped every 1 s)",
        "end to end: with / bare, requests/s, sequential pairs", "end to end: with / bare, requests per Locust CPU",
        "end to end: locust-metrics' listener and folds timed in place", "end to end: the same over 50 request names",
        "end to end: on / off, requests/s, one process toggled",
        "end to end: with / bare, requests/s, 1 concurrent pairs on one core",
        "scrape CPU, 10 names (",
        *(["scrape CPU, 10 names, protobuf (classic+native", "scrape CPU, 10 names, protobuf+gzip"] if native
          else ["scrape CPU, 10 names, OpenMetrics+gzip"]),
        "loop stall per HTTP scrape, 10 names, " + ("protobuf: " if native else "ours vs"),
        "concurrent scrapes, 20 names, 1 scrapers at once", "concurrent scrapes, 20 names, 2 scrapers at once",
        "concurrent scrapes, 20 names, 4 scrapers at once, 4 formats in turn",
        "master merge of one report, 20 names", "worker report payload, 20 names",
        *(["master: adding one report's native deltas, 20 names"] if native else []),
        "memory added at 20 names: RSS", "memory added at 20 names, worst case", "memory at 20 names: recorded data",
    ]
    assert len(rows) == len(expected), table
    for row, label in zip(expected, rows):  # every row, in order
        assert label.startswith(row), f"{row!r} expected, {label!r} found:\n{table}"
    assert "NOT MET" not in table and ": met" not in table  # no verdicts from a smoke run
    results = json.loads(out.read_text())
    assert results["smoke"] is True and results["repeats"] == 1 and results["native_histograms"] is native
    assert {"hot_path", "scrape_cpu", "scrape_stall", "concurrent_scrapes", "merge", "memory", "end_to_end"} <= set(results)
    assert all(stall["fast_scrapes"] > 0 for stall in results["scrape_stall"])  # the fast path was measured
    # what Prometheus' headers got: protobuf from us with native histograms on (OpenMetrics from prometheus_client)
    prometheus_format = PROTOBUF if native else OPENMETRICS
    assert all(stall["ours_content_types"] == [prometheus_format] for stall in results["scrape_stall"]), results
    assert all(stall["library_content_types"] == [OPENMETRICS] for stall in results["scrape_stall"]), results
    for concurrent in results["concurrent_scrapes"]:  # every scrape answered, and counted once sent
        for row in concurrent["by_scrapers"]:
            assert row["statuses"] == {"200": row["scrapers"] * concurrent["rounds"]}, row
            assert row["counted_scrapes"] == row["scrapes"] and 0 < row["renders"] <= row["scrapes"], row
            assert prometheus_format in row["content_types"], row
    if native:
        assert all(cpu["protobuf_bytes"] > 0 and cpu["ours_protobuf_ms"] > 0 for cpu in results["scrape_cpu"])
        assert results["merge"]["native_fold_ms"] > 0
    memory = results["memory"]
    assert memory["rss_added_bytes"] > 0 and memory["worst_rss_added_bytes"] > 0 and memory["data_bytes"] > 0
    end_to_end = results["end_to_end"]
    assert end_to_end["target"] == "gevent"  # --smoke needs no nginx
    assert all(run["requests"] > 0 for runs in end_to_end["sequential_runs"].values() for run in runs)
    assert all(run[phase]["requests"] > 0 for run in end_to_end["toggled_runs"] for phase in ("on", "off"))
    assert end_to_end["listener_in_place_ns"] > 0 and end_to_end["fold_in_place_ns"] >= 0  # no scrape in a short window: 0
    assert 0 < end_to_end["listener_share"] < 1 and 0 < end_to_end["listener_share_many"] < 1
    plugin_runs = [*end_to_end["sequential_runs"]["true"], *end_to_end["toggled_runs"]]  # (JSON: keys are text)
    assert plugin_runs and all(run["native_histograms"] is native for run in plugin_runs)  # as the option says
    assert all(run["content_types"] == [prometheus_format] for run in end_to_end["sequential_runs"]["true"]), \
        end_to_end["sequential_runs"]["true"]


def test_instruction_count_children_run() -> None:
    """``benchmarks/instructions.py`` runs its child under valgrind (not in CI: too slow there); its child
    runs the same way without valgrind, so that it cannot rot unnoticed."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import instructions

    children = {variant: subprocess.Popen([sys.executable, instructions.CHILD, variant, "50"], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, env=child_env())
                for variant in instructions.VARIANTS}  # all at once
    for variant, child in children.items():
        _, stderr = child.communicate(timeout=120)
        assert child.returncode == 0, f"{variant}: {stderr[-3000:]}"


def test_push_stall_benchmark_runs_and_pushes_what_a_scrape_shows() -> None:
    """benchmarks/push_stall.py in miniature: both variants push to the sink; no figure is asserted (speed is
    measured in benchmarks/, never in a test)."""
    script = REPO / "benchmarks" / "push_stall.py"
    result = subprocess.run([sys.executable, str(script), "--names", "20", "--pushes", "4"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "prometheus_client (generate_latest)" in result.stdout and "locust-metrics (sliced renderer)" in result.stdout


def test_percentiles_benchmark_measures_native_percentiles_within_one_bucket(tmp_path: Path) -> None:
    """``python benchmarks/percentiles.py``, short: real HTTP (``FastHttpUser``s against the latency target), two
    real Prometheus 2.42 (with and without native histograms), native histograms on by default. Every native
    percentile is within one bucket of the exact one, whatever the sample: the estimate and the exact figure are of
    the same requests, so both lie in the bucket holding that rank (``2 ** 2 ** -schema - 1`` wide at the schema
    the histogram ended at). A wrong bucket, a lost request or a missing native histogram fails it. (The 2% budget
    itself is not asserted: at schema 4, where wide latencies end with the default bucket bound, a percentile
    between two modes can miss it; docs/native-histograms.md, "Defaults".)"""
    out = tmp_path / "percentiles.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "percentiles.py"), "--seconds", "6", "--users", "5",
         "--json", str(out)],
        capture_output=True, text=True, timeout=240, env=child_env(), cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results) == {"lognormal", "bimodal"}, results
    for distribution, measured in results.items():
        # (the exporter waits at exit for one more scrape, not for each scraper's: one may miss the last requests)
        assert all(n is not None and 0 < n <= measured["requests"] for n in measured["counted"].values()), measured
        assert [row["q"] for row in measured["rows"]] == [0.5, 0.9, 0.95, 0.99]
        schema = measured["native_schema"]
        assert schema is not None and 3 <= schema <= 6, measured  # starts at 6, halved per doubling of the spread
        for row in measured["rows"]:
            assert row["native_s"] is not None and row["classic_s"] is not None, (distribution, row)
            assert abs(row["native_s"] / row["native_exact_s"] - 1) <= 2 ** 2**-schema - 1, (distribution, row)
    assert "no data" not in result.stdout, result.stdout
