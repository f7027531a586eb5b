"""Thresholds in real runs (issue 13): exact verdicts against a side listener's response times, exit codes,
the summary, abort, JUnit, export (final scrape and Pushgateway), master with workers and --processes,
the demo target, and the alert rules of the same thresholds through promtool.

The locustfile (tests/locustfiles/threshold_times.py) puts the nearest-rank p95 of ``/t`` exactly at 100 ms,
with the neighbouring times one float below and above, so every operator is decided on the boundary. The
expected verdicts here are computed by brute force from what the side listener saw, independently of
locust_metrics.thresholds.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
from support import (
    LOCUSTFILES,
    REPO,
    TESTS,
    PushgatewayServer,
    child_env,
    free_port,
    locust,
    processes_args,
    promtool_check_metrics,
    require_binary,
    scrape_until_exit,
)

TIMES = str(LOCUSTFILES / "threshold_times.py")
JUNIT_XSD = TESTS / "data" / "junit-strict.xsd"

# (threshold, what it is about) -- the boundary cases at T = 100 ms and the selectors
THRESHOLDS = [
    "/t:p95<100", "/t:p95<=100ms", "/t:p95>100", "/t:p95>=0.1s", "/t:p50<=50ms", "/t:max<1s", "/t:max<=900",
    "/t:fail_ratio<=2%", "/t:fail_ratio<2%", "each re:/api/.*:p50<100ms", "re:/api/.*:max<2s",
    "GET /api/a:avg<100ms", "requests>=207", "p99<=900ms", "POST /api/b:max>=2s",
]


# ------------------------------------------------------------------------------------------- brute force
def side_lists(folder: Path) -> tuple[dict[tuple[str, str], list[float]], dict[tuple[str, str], int]]:
    """What every process's side listener saw: ``({(method, name): times}, {(method, name): failures})``."""
    times: dict[tuple[str, str], list[float]] = {}
    failures: dict[tuple[str, str], int] = {}
    for path in folder.glob("*.json"):
        for key, value in json.loads(path.read_text()).items():
            if key.endswith(" failures"):
                method, name = key[: -len(" failures")].split(" ", 1)
                failures[(method, name)] = failures.get((method, name), 0) + value
            else:
                method, name = key.split(" ", 1)
                times.setdefault((method, name), []).extend(value)
    return times, failures


def nearest_rank(values: list[float], q: Fraction) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(q * len(ordered)) - 1]


def expected(text: str, times: dict, failures: dict) -> dict[tuple[str, str], bool]:
    """``{(method, name) or ("", ""): passed}`` of one threshold, by brute force over the side lists."""
    selector, _, condition = text.rpartition(":")
    stat, op, value = re.fullmatch(r"(\w+(?:\.\d+)?)(<=|>=|<|>)(.+)", condition).groups()
    number = float(re.match(r"[\d.]+", value)[0])
    limit = number * 1000 if value.endswith("s") and not value.endswith("ms") else number
    if stat in ("fail_ratio",):
        limit = number / 100
    each = selector.startswith("each")
    selector = selector[len("each"):].strip() if each else selector
    method = None
    if re.match(r"^[A-Z]+ ", selector):
        method, selector = selector.split(" ", 1)

    def chosen(key):
        m, name = key
        if method is not None and m != method:
            return False
        if not selector:
            return True
        return re.fullmatch(selector[3:], name) is not None if selector.startswith("re:") else name == selector

    groups = {key: [key] for key in times if chosen(key)} if each else {("", ""): [k for k in times if chosen(k)]}
    result = {}
    for group_key, keys in groups.items():
        values = [t for k in keys for t in times[k]]
        failed = sum(failures.get(k, 0) for k in keys)
        if stat.startswith("p"):
            observed = nearest_rank(values, Fraction(stat[1:]) / 100)
        elif stat == "max":
            observed = max(values)
        elif stat == "avg":
            observed = Fraction(sum(map(Fraction, values))) / len(values)
        elif stat == "fail_ratio":
            observed = Fraction(failed, len(values))
        elif stat == "requests":
            observed = len(values)
        compare = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
                   ">=": lambda a, b: a >= b}[op]
        result[group_key] = compare(Fraction(observed), Fraction(str(limit)) if stat != "fail_ratio" else
                                    Fraction(int(number * 100), 10_000))
    return result


def exported(final, text: str) -> dict[tuple[str, str], bool]:
    return {(labels["method"], labels["name"]) if labels.get("name") else ("", ""): value == 1.0
            for labels, value in final.select("locust_threshold_passed", threshold=text)}


# ------------------------------------------------------------------------------------------- runs
def threshold_args(*thresholds: str) -> list[str]:
    return [arg for text in thresholds for arg in ("--metrics-threshold", text)]


def run_and_check(workdir: Path, args: list[str], users: int, runner: list[str] | None = None) -> tuple[int, str]:
    side = workdir / "side"
    side.mkdir()
    port = free_port()
    env = child_env(THRESHOLD_SIDE_DIR=str(side))
    base = ["-f", TIMES, "--headless", "-u", str(users), "-r", str(users), "-t", "4s", "--metrics-port", str(port),
            "--metrics-host", "127.0.0.1", "--metrics-threshold-junit", str(workdir / "junit.xml"),
            "--exit-code-on-error", "0",  # the list's failures are on purpose: only thresholds set the code
            *threshold_args(*THRESHOLDS), *args]
    with locust(base, workdir, env=env) as process:
        scrapes = scrape_until_exit(process, port, run_time=4)
        code = process.wait(timeout=60)
        output = process.output()
    times, failures = side_lists(side)
    assert len(times[("GET", "/t")]) == 200 * users, "every user fired its list once"
    final = scrapes[-1]
    verdicts = {}
    for text in THRESHOLDS:
        want = expected(text, times, failures)
        assert exported(final, text) == want, (text, exported(final, text), want)
        verdicts.update({(text, *key): passed for key, passed in want.items()})
    # the boundary cases really are on the boundary, and both outcomes occur
    assert [verdicts[(t, "", "")] for t in THRESHOLDS[:4]] == [False, True, False, True]
    assert verdicts[("/t:fail_ratio<=2%", "", "")] and not verdicts[("/t:fail_ratio<2%", "", "")]
    failed = [key for key, passed in verdicts.items() if not passed]
    assert code == 3, output[-3000:]  # failed thresholds, and nothing else wrong with the run
    assert f"Thresholds: {len(verdicts) - len(failed)} passed, {len(failed)} failed" in output
    assert "FAIL /t:p95<100 " in output and "PASS /t:p95<=100ms " in output
    check = promtool_check_metrics(final.text)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check
    assert not re.search(r'le="0\.09999', final.text), "the strict bounds are recorded, not exported"

    import xmlschema

    report = (workdir / "junit.xml").read_text()
    xmlschema.XMLSchema(str(JUNIT_XSD)).validate(report)
    assert report.count("<testcase ") == len(verdicts) and report.count("<failure ") == len(failed)
    return code, output


def test_local_run_verdicts_are_exact_and_fail_the_run_with_code_3(workdir: Path) -> None:
    run_and_check(workdir, [], users=1)


def test_master_with_two_workers_decides_on_the_merged_data(workdir: Path) -> None:
    master_port = free_port()
    env = child_env(THRESHOLD_SIDE_DIR=str(workdir / "side"))
    worker = ["-f", TIMES, "--worker", "--master-port", str(master_port)]
    with locust(worker, workdir, env=env, name="worker1"), locust(worker, workdir, env=env, name="worker2"):
        run_and_check(workdir, ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port",
                                str(master_port), "--expect-workers", "2"], users=2)


def test_processes_mode_decides_on_the_merged_data(workdir: Path) -> None:
    run_and_check(workdir, processes_args(2), users=2)


def test_passing_thresholds_exit_0_against_the_demo_target(demo_target: str, workdir: Path) -> None:
    args = ["-f", str(REPO / "examples" / "locustfile.py"), "--headless", "-u", "10", "-r", "10", "-t", "5s",
            "-H", demo_target, "--metrics-port", "0", "--exit-code-on-error", "0",
            *threshold_args("fail_ratio<50%", "/reports/sales:p50>=1s", "each re:/products.*:max<10s")]
    with locust(args, workdir) as process:
        code = process.wait(timeout=60)
        output = process.output()
    assert code == 0, output[-3000:]
    assert re.search(r"Thresholds: \d+ passed, 0 failed", output), output[-3000:]
    with locust([*args, *threshold_args("p50<1ms")], workdir, name="failing") as process:
        code = process.wait(timeout=60)
        output = process.output()
    assert code == 3 and "FAIL p50<1ms " in output, output[-3000:]


def test_abort_stops_the_run_within_the_delay_plus_one_evaluation(workdir: Path) -> None:
    args = ["-f", TIMES, "--headless", "-u", "1", "-r", "1", "-t", "60s", "--metrics-port", "0",
            "--exit-code-on-error", "0", *threshold_args("/t:p95<10ms abort after 3s", "requests>=1")]
    with locust(args, workdir) as process:
        process.wait_for_output("Ramping")
        started = time.monotonic()
        code = process.wait(timeout=60)
        elapsed = time.monotonic() - started
        output = process.output()
    assert code == 3, output[-3000:]
    assert "threshold '/t:p95<10ms abort after 3s' failed at" in output and "stopping the test (abort)" in output
    assert "aborted by threshold '/t:p95<10ms abort after 3s'" in output
    assert 3 <= elapsed < 3 + 2 + 5, f"stopped {elapsed:.1f}s after the start (after 3s, next evaluation 2 s)"


def test_verdicts_are_pushed_to_the_pushgateway(workdir: Path) -> None:
    with PushgatewayServer(workdir / "pgw") as gateway:
        args = ["-f", TIMES, "--headless", "-u", "1", "-r", "1", "-t", "3s", "--metrics-port", "0",
                "--exit-code-on-error", "0", "--metrics-pushgateway", gateway.url,
                *threshold_args("/t:p95<=100ms", "/t:p95<100ms")]
        with locust(args, workdir) as process:
            assert process.wait(timeout=60) == 3, process.output()[-3000:]
        pushed = gateway.samples()
    assert pushed.sum("locust_threshold_passed", threshold="/t:p95<=100ms") == 1
    assert pushed.sum("locust_threshold_passed", threshold="/t:p95<100ms") == 0
    assert pushed.sum("locust_threshold_value", threshold="/t:p95<100ms") > 0


def test_alert_rules_of_the_same_thresholds_pass_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    (tmp_path / "locust.conf").write_text("metrics-threshold = [p95<500ms, each re:/api/.*:fail_ratio<1%]\n")
    result = subprocess.run([sys.executable, "-m", "locust_metrics", "alert-rules", "--window", "2m",
                             "--metrics-threshold", "/checkout:p99<=2s"], capture_output=True, text=True,
                            timeout=60, env=child_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rules = tmp_path / "rules.yml"
    rules.write_text(result.stdout)
    assert "threshold: /checkout:p99<=2s" in result.stdout and "[2m]" in result.stdout
    check = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "SUCCESS: 1 rules found" in check.stdout, check
    # from locust.conf when no flag is given (Locust's precedence: flags win over the file)
    result = subprocess.run([sys.executable, "-m", "locust_metrics", "alert-rules"], capture_output=True,
                            text=True, timeout=60, env=child_env(), cwd=tmp_path)
    assert result.returncode == 0 and "threshold: p95<500ms" in result.stdout, result.stderr
    bad = subprocess.run([sys.executable, "-m", "locust_metrics", "alert-rules", "--metrics-threshold", "p95<5x"],
                         capture_output=True, text=True, timeout=60, env=child_env(), cwd=tmp_path)
    assert bad.returncode == 2 and "--metrics-threshold" in bad.stderr and "'p95<5x'" in bad.stderr


@pytest.mark.parametrize("bad", ["p95<soon", "fail_ratio<120%", "nonsense", "p95 < 500 parsecs"])
def test_a_bad_threshold_fails_before_the_test_naming_option_and_value(workdir: Path, bad: str) -> None:
    args = ["-f", TIMES, "--headless", "-u", "1", "-t", "30s", "--metrics-port", "0", "--metrics-threshold", bad]
    with locust(args, workdir) as process:
        code = process.wait(timeout=30)
        output = process.output()
    assert code == 2 and "--metrics-threshold" in output and repr(bad) in output and "Ramping" not in output
