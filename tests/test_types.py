"""The package type-checks under mypy's strict mode (pyproject.toml's ``[tool.mypy]``): records are typed by
field, so a tuple read in the wrong order, a missing attribute or a wrong argument is an error here.

Runs in the newest environment of ``.ci/run`` (the oldest leaves it out: the stubs of older dependencies
differ, and typing does not depend on the versions the package runs with)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import REPO


def test_the_package_passes_mypy_strict() -> None:
    pytest.importorskip("mypy", reason="mypy is in the test extras")
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Success: no issues found" in result.stdout
