"""``benchmarks/native_histograms.py``'s sections added with the wiring still run, in miniature (no figure is
asserted: speed is measured in benchmarks/, never in a test)."""

from __future__ import annotations

import subprocess
import sys

from support import REPO, child_env


def _module():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import native_histograms

    return native_histograms


def test_hot_path_and_scrape_sections_run() -> None:
    bench = _module()
    hot = bench.hot_path_costs(chunk=64, names=4, rounds=4)
    assert {"off_added_ns", "on_added_ns", "naive_added_ns", "on_vs_naive"} <= set(hot)
    scrape = bench.scrape_costs(names=5, per_name=10, repeats=1)
    assert scrape["protobuf_ms"] > 0 and scrape["longest_slice_ms"] > 0
    assert set(bench.fold_stall(sizes=(10, 100), repeats=1)) == {10, 100}


def test_instruction_count_children_run() -> None:
    """The callgrind section's child runs the same way without valgrind, so that it cannot rot unnoticed."""
    bench = _module()
    for variant in ("empty", "off", "on", "naive"):
        result = subprocess.run(
            [sys.executable, bench.INSTRUCTIONS_CHILD, variant, "50"],
            capture_output=True, text=True, timeout=120, env=child_env(),
        )
        assert result.returncode == 0, f"{variant}: {result.stderr[-3000:]}"
