"""Shared fixtures: the demo target (a real HTTP server on 127.0.0.1) and per-test work folders; the hypothesis
profile.

Hypothesis runs **derandomized** by default (profile ``repeatable``): each property test tries the same
examples on every run (until the test, Hypothesis or Python changes), so that a run's verdict does not depend on
the luck of its random data, and CI is red only for a change. To search further, as when working on the
recorder, run with ``HYPOTHESIS_PROFILE=explore`` (new random examples each run); a failure it finds
becomes an ``@example`` of the test.

Ctrl-C: the tests that press it (SIGINT to a Locust child) need the child to take it. A process started in the
background by a shell without job control (``pytest ... &``, ``nohup``) inherits SIGINT *ignored*, and so would
every Locust it starts: those tests would hang until their timeout. The session restores Python's handler
first, so that children start with the default disposition, as from a terminal.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from support import free_port, start_demo_target

settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, max_examples=500, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # inherited from a background launch: see above
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def demo_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a running ``examples/demo_target.py`` (one for the whole session)."""
    port = free_port()
    process = start_demo_target(port, tmp_path_factory.mktemp("demo_target"))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A fresh folder to run a Locust process in (CSV files and logs land here)."""
    return tmp_path
