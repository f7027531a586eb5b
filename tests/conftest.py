"""Shared fixtures: the demo target (a real HTTP server on 127.0.0.1) and per-test work folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port, start_demo_target


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
