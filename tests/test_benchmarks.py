"""The benchmarks still run: ``python benchmarks/bench.py --smoke`` (every section once, tiny sizes, no figures)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from support import REPO, child_env


def test_smoke_benchmark_runs_every_section_and_prints_every_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench.py"), "--smoke", "--json", str(out)],
        capture_output=True, text=True, timeout=180, env=child_env(), cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = result.stdout
    rows = [re.split(r" {2,}", line)[0] for line in table.splitlines()[1:-1]]  # each row's label
    expected = (
        "hot path: request event with no listener", "hot path: added by Locust's own statistics",
        "hot path: added by locust-metrics", "hot path: added by a naive prometheus_client listener",
        "hot path: added by Locust's statistics + locust-metrics", "hot path: added by locust-metrics as an ordinary",
        "hot path: locust-metrics / naive",
        "end to end: bare Locust requests/s", "end to end: with locust-metrics (scraped every 1 s)",
        "end to end: with / bare, requests/s, sequential pairs", "end to end: with / bare, requests per Locust CPU",
        "end to end: locust-metrics' listener timed in place", "end to end: on / off, requests/s, one process toggled",
        "end to end: with / bare, requests/s, 1 concurrent pairs on one core",
        "scrape CPU, 10 names (", "scrape CPU, 10 names, OpenMetrics+gzip", "loop stall per HTTP scrape, 10 names",
        "concurrent scrapes, 20 names, 1 scrapers at once", "concurrent scrapes, 20 names, 2 scrapers at once",
        "concurrent scrapes, 20 names, 4 scrapers at once, 4 formats in turn",
        "master merge of one report, 20 names", "worker report payload, 20 names",
        "memory added at 20 names: RSS", "memory added at 20 names, worst case", "memory at 20 names: recorded data",
    )
    assert len(rows) == len(expected), table
    for row, label in zip(expected, rows):  # every row, in order
        assert label.startswith(row), f"{row!r} expected, {label!r} found:\n{table}"
    assert "NOT MET" not in table and ": met" not in table  # no verdicts from a smoke run
    results = json.loads(out.read_text())
    assert results["smoke"] is True and results["repeats"] == 1
    assert {"hot_path", "scrape_cpu", "scrape_stall", "concurrent_scrapes", "merge", "memory", "end_to_end"} <= set(results)
    assert all(stall["fast_scrapes"] > 0 for stall in results["scrape_stall"])  # the fast path was measured
    for concurrent in results["concurrent_scrapes"]:  # every scrape answered, and counted once sent
        for row in concurrent["by_scrapers"]:
            assert row["statuses"] == {"200": row["scrapers"] * concurrent["rounds"]}, row
            assert row["counted_scrapes"] == row["scrapes"] and 0 < row["renders"] <= row["scrapes"], row
    memory = results["memory"]
    assert memory["rss_added_bytes"] > 0 and memory["worst_rss_added_bytes"] > 0 and memory["data_bytes"] > 0
    end_to_end = results["end_to_end"]
    assert end_to_end["target"] == "gevent"  # --smoke needs no nginx
    assert all(run["requests"] > 0 for runs in end_to_end["sequential_runs"].values() for run in runs)
    assert all(run[phase]["requests"] > 0 for run in end_to_end["toggled_runs"] for phase in ("on", "off"))
    assert end_to_end["listener_in_place_ns"] > 0 and 0 < end_to_end["listener_share"] < 1


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
