"""Instructions per ``request`` event, counted by valgrind's callgrind: the hot path without the VM's noise.

Run from the repository root (needs Debian's ``valgrind``; about 5 minutes)::

    python benchmarks/instructions.py            # prints one table
    python benchmarks/instructions.py --events 20000

Each variant fires the same realistic events (``bench._events``: 50 endpoints, 2% failures, real
``FastResponse`` objects) through Locust's ``events.request.fire`` in a fresh Python under callgrind,
once with ``--events`` events and once with a fifth of them; the difference divided by the difference in
events is the instruction count of one event, with the start-up (imports, first sightings) cancelled
out. For the two runs of a variant to start up alike, their children hash strings with one seed
(``PYTHONHASHSEED=0``) and freeze the objects made before the loop (``gc.freeze()``: the collections in
the loop do not traverse them): then two measurements of a variant agree to a thousandth of an
instruction per event; without either, two of the no-listener variant gave 4,225 and 10,390. "Added" is a
variant's count minus the count with no listener. Variants: no listener; Locust's own statistics (bare
Locust); locust-metrics as ``install()`` attaches it (the fast dispatch); the same recorder as an
ordinary listener (the fallback for an EventHook we do not know); a naive prometheus_client listener.
Instruction counts are not time (a cache miss costs more than an add), but they do not move with the
VM, where the timings of ``bench.py`` move by ±30%.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = os.path.join(HERE, "programs", "instructions_child.py")
"""The child program: fires the events of one variant (``python CHILD VARIANT EVENTS``)."""

VARIANTS = ("empty", "bare", "plugin", "listener", "naive")


def instructions(variant: str, events: int, workdir: str) -> int:
    """Instructions (callgrind's ``Ir``) of a whole child process that fires ``events`` events."""
    out = os.path.join(workdir, f"callgrind.{variant}.{events}")
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, CHILD, variant, str(events)],
        capture_output=True, text=True, timeout=1800, check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},  # the same start-up in both runs of a variant
    )
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from callgrind: {result.stderr[-2000:]}")
    return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000, help="events of the long run (default 10000)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    short = args.events // 5
    per_event: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for variant in VARIANTS:
            long_run, short_run = instructions(variant, args.events, workdir), instructions(variant, short, workdir)
            per_event[variant] = (long_run - short_run) / (args.events - short)
    print(f"{'variant':58s} {'instructions per event':>24s}")
    labels = {
        "empty": "request event with no listener (Locust's dispatch)",
        "bare": "added by Locust's own statistics (bare Locust)",
        "plugin": "added by locust-metrics (fast dispatch, as installed)",
        "listener": "added by locust-metrics as an ordinary listener",
        "naive": "added by a naive prometheus_client listener",
    }
    for variant in VARIANTS:
        value = per_event[variant] - (per_event["empty"] if variant != "empty" else 0)
        print(f"{labels[variant]:58s} {value:>24,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
