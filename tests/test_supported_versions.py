"""The supported range is the tested range: ``.ci/run`` installs pyproject.toml's lower bounds (``.ci/oldest.txt``)
on requires-python's lowest Python, beside the newest of everything; this keeps the three files in step."""

from __future__ import annotations

import re

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from support import REPO

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib


def lower_bound(specifier: SpecifierSet) -> Version:
    (bound,) = [Version(s.version) for s in specifier if s.operator == ">="]
    return bound


def test_the_oldest_run_installs_exactly_the_lower_bounds_of_every_dependency() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    bounds = {Requirement(r).name.lower(): lower_bound(Requirement(r).specifier) for r in project["dependencies"]}
    pins = {}
    for line in (REPO / ".ci" / "oldest.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (pin,) = requirement.specifier
            assert pin.operator == "==", line
            pins[requirement.name.lower()] = Version(pin.version)
    assert pins == bounds


def test_the_oldest_run_uses_the_lowest_python_allowed() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    oldest = re.search(r"^OLDEST_PYTHON=(\S+)", (REPO / ".ci" / "run").read_text(), re.MULTILINE)
    assert oldest and Version(oldest[1]) == lower_bound(SpecifierSet(project["requires-python"]))


def test_this_interpreter_and_packages_are_in_the_supported_range() -> None:
    """What the suite runs on (each of .ci/run's environments) is within what pyproject.toml promises."""
    import importlib.metadata
    import sys

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert ".".join(map(str, sys.version_info[:3])) in SpecifierSet(project["requires-python"])
    for requirement in map(Requirement, project["dependencies"]):
        installed = importlib.metadata.version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), (requirement, installed)
