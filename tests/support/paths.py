"""Where things are: the repository, the tests, the test locustfiles."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
LOCUSTFILES = TESTS / "locustfiles"
