"""The shipped Prometheus rules and configs: promtool/amtool checks and the rules' unit tests.

* ``promtool check rules`` on deploy/prometheus/rules/*.yml and ``promtool check config`` on
  deploy/prometheus/prometheus.yml (which loads those rules); ``amtool check-config`` on the Alertmanager config;
* ``promtool test rules`` on deploy/prometheus/tests/*.yml, which load the shipped rule file itself;
* every alert has a severity, and summary/description annotations that show the values; every alert the
  issue asks for exists; every alert is unit-tested both firing and not firing;
* the unit tests bite: removing any alert, or dropping any alert's limit, makes ``promtool test rules`` fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import (
    AMTOOL_BINARIES,
    PROMETHEUS_3_SCRAPE_KEYS,
    PROMTOOL_BINARIES,
    REPO,
    for_prometheus_2,
    require_binary,
)

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULES = PROMETHEUS_DIR / "rules" / "locust.rules.yml"
UNIT_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
REQUIRED_ALERTS = {
    "LocustSlowRequests", "LocustHighLatencyP95", "LocustHighFailureRatio", "LocustLoadGeneratorCpuSaturated",
    "LocustNoTraffic", "LocustWorkerMissing",
}
SEVERITIES = {"info", "warning", "critical"}


def promtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    binary = require_binary(*PROMTOOL_BINARIES)
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def alert_rules(path: Path = RULES) -> dict[str, dict[str, Any]]:
    rules = {}
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["alert"] not in rules, f"duplicate alert {rule['alert']}"
                rules[rule["alert"]] = rule
    return rules


def test_rule_files_are_shipped():
    assert RULES in RULE_FILES and UNIT_TESTS


def test_promtool_check_rules():
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_config(tmp_path: Path):
    """The shipped config, checked by Debian's promtool 2.42 without the Prometheus 3.x keys it does not know
    (a copy beside a copy of the rules, which it loads relative to itself)."""
    config, removed = for_prometheus_2(yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text()))
    assert removed == set(PROMETHEUS_3_SCRAPE_KEYS), "the stack's Prometheus 3.x scrapes native and classic buckets"
    shutil.copytree(PROMETHEUS_DIR / "rules", tmp_path / "rules")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    checked = re.findall(r"Checking (\S+\.yml)", result.stdout)
    assert any(path.endswith("locust.rules.yml") for path in checked), "the config loads the shipped rules"


def test_amtool_check_config():
    amtool = require_binary(*AMTOOL_BINARIES)
    result = subprocess.run([amtool, "check-config", str(REPO / "deploy/alertmanager/alertmanager.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass():
    result = promtool("test", "rules", *map(str, UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "FAILED" not in result.stdout


def test_unit_tests_load_the_shipped_rule_file():
    for path in UNIT_TESTS:
        for rule_file in yaml.safe_load(path.read_text())["rule_files"]:
            assert (path.parent / rule_file).resolve() == RULES.resolve(), f"{path.name} must test the shipped rules"


def test_the_issue_alerts_exist_with_severity_and_annotations_that_show_values():
    rules = alert_rules()
    assert REQUIRED_ALERTS <= set(rules), REQUIRED_ALERTS - set(rules)
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        assert "{{ $value" in annotations["summary"] or "{{ $value" in annotations["description"], \
            f"{name}: the annotations must show the value"
        assert "{{ $labels." in annotations["summary"] + annotations["description"], f"{name}: which endpoint/node"
    assert rules["LocustLoadGeneratorCpuSaturated"]["for"] == "1m"
    assert ">= 0.9" in rules["LocustLoadGeneratorCpuSaturated"]["expr"]


def test_recording_rules_follow_the_naming_convention():
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                assert re.fullmatch(r"[a-z_]+:locust_[a-z_]+:[a-z0-9_]+", rule["record"]), rule["record"]


def alert_cases() -> dict[str, dict[str, int]]:
    """``{alertname: {"firing": n, "silent": n}}``: how many unit-test evaluations expect it to fire / not."""
    cases: dict[str, dict[str, int]] = {}
    for path in UNIT_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                counts = cases.setdefault(case["alertname"], {"firing": 0, "silent": 0})
                counts["firing" if case.get("exp_alerts") else "silent"] += 1
    return cases


def test_every_alert_is_unit_tested_firing_and_not_firing():
    cases = alert_cases()
    for name in alert_rules():
        assert cases.get(name, {}).get("firing"), f"{name}: no unit test where it fires"
        assert cases.get(name, {}).get("silent"), f"{name}: no unit test where it must not fire"


def _mutated_run(tmp_path: Path, mutate) -> subprocess.CompletedProcess:
    """Run the unit tests against a mutated copy of the rules (same relative layout as in the repository)."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    document = yaml.safe_load(RULES.read_text())
    mutate(document)
    (tmp_path / "rules" / RULES.name).write_text(yaml.safe_dump(document, sort_keys=False))
    for path in UNIT_TESTS:
        shutil.copy(path, tmp_path / "tests" / path.name)
    return promtool("test", "rules", *(str(tmp_path / "tests" / p.name) for p in UNIT_TESTS), cwd=tmp_path)


@pytest.mark.parametrize("alertname", sorted(alert_rules()))
def test_unit_tests_catch_a_missing_alert(tmp_path, alertname):
    def drop(document):
        for group in document["groups"]:
            group["rules"] = [r for r in group["rules"] if r.get("alert") != alertname]

    result = _mutated_run(tmp_path, drop)
    assert result.returncode != 0 and alertname in result.stdout + result.stderr


@pytest.mark.parametrize("alertname", sorted(alert_rules()))
def test_unit_tests_catch_a_lost_limit(tmp_path, alertname):
    """With every comparison of the alert turned into ``>= -1`` it fires where it must not: a test fails."""
    def loosen(document):
        for group in document["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == alertname:
                    loose = re.sub(r">=?\s*-?[0-9.]+", ">= -1", rule["expr"])
                    assert loose != rule["expr"], f"{alertname}: no numeric limit in its expr"
                    rule["expr"] = loose
                    rule["for"] = "0s"

    result = _mutated_run(tmp_path, loosen)
    assert result.returncode != 0 and alertname in result.stdout + result.stderr
