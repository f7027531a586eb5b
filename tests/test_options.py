"""Options: parsed by Locust's own parser (flag, env var, locust.conf); bad values fail before the test."""

from __future__ import annotations

import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest
from support import LOCUSTFILES, child_env, free_port, locust, run_locust, scrape_until_exit

from locust_metrics.options import (
    OptionError,
    Settings,
    parse_buckets,
    parse_labels,
    parse_slow_thresholds,
)

BAD_OPTIONS = [
    ("--metrics-port", "abc"),
    ("--metrics-port", "70000"),
    ("--metrics-slow-threshold", "-5"),
    ("--metrics-slow-threshold", "fast"),
    ("--metrics-slow-threshold", "nan"),
    ("--metrics-buckets", "1,0.5"),
    ("--metrics-buckets", "0.1,0.1"),
    ("--metrics-buckets", "0.1,a"),
    ("--metrics-buckets", "-1,2"),
    ("--metrics-buckets", ""),
    ("--metrics-max-names", "0"),
    ("--metrics-max-names", "many"),
    ("--metrics-label", "bad-name=x"),
    ("--metrics-label", "method=GET"),
    ("--metrics-label", "novalue"),
    ("--metrics-slow-threshold-for", "/x=soon"),
    ("--metrics-slow-threshold-for", "re:(=5"),
    ("--metrics-final-scrape-timeout", "-1"),
    ("--metrics-max-concurrent-renders", "0"),
    ("--metrics-max-concurrent-renders", "two"),
]

PARSER_SCRIPT = """
import sys
import locust_metrics  # registers the options on Locust's parser
from locust.argument_parser import get_parser
options = get_parser().parse_args(sys.argv[1:])
print("PARSED", options.metrics_port, options.metrics_slow_threshold, options.metrics_label, options.metrics_buckets)
"""


def parse_with_locust(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None):
    """Parse ``args`` with Locust's real parser in a fresh interpreter; returns CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-c", PARSER_SCRIPT, *args], capture_output=True, text=True, timeout=60,
        env=env or child_env(), cwd=cwd,
    )


@pytest.mark.parametrize("option,value", BAD_OPTIONS)
def test_bad_value_is_rejected_by_locusts_parser_naming_option_and_value(option: str, value: str) -> None:
    result = parse_with_locust([f"{option}={value}"])
    assert result.returncode == 2, result
    assert option in result.stderr and repr(value) in result.stderr, result.stderr


def test_bad_values_fail_before_the_test_from_flag_env_and_conf(demo_target: str, workdir: Path) -> None:
    locustfile = str(LOCUSTFILES / "double_import.py")
    base = ["-f", locustfile, "--headless", "-u", "1", "-t", "30s", "-H", demo_target]
    # flag
    code, output = run_locust([*base, "--metrics-buckets", "1,0.5"], workdir, timeout=30)
    assert code == 2 and "--metrics-buckets" in output and "'1,0.5'" in output and "Ramping" not in output
    # environment variable
    code, output = run_locust(base, workdir, timeout=30, env=child_env(LOCUST_METRICS_SLOW_THRESHOLD="-3"))
    assert code == 2 and "LOCUST_METRICS_SLOW_THRESHOLD" in output and "'-3'" in output and "Ramping" not in output
    # locust.conf
    (workdir / "bad.conf").write_text("metrics-max-names = 0\n")
    code, output = run_locust([*base, "--config", "bad.conf"], workdir, timeout=30)
    assert code == 2 and "--metrics-max-names" in output and "'0'" in output and "Ramping" not in output


def test_a_taken_port_fails_at_start_naming_the_port_and_the_option(demo_target: str, workdir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = run_locust(
            ["-f", str(LOCUSTFILES / "double_import.py"), "--headless", "-u", "1", "-t", "30s", "-H", demo_target,
             "--metrics-host", "127.0.0.1", "--metrics-port", str(port)],
            workdir, timeout=30,
        )
    assert code == 1, output
    assert f"127.0.0.1:{port}" in output and "--metrics-port" in output and "Ramping" not in output


def test_options_from_env_and_conf_take_effect(demo_target: str, workdir: Path) -> None:
    port = free_port()
    (workdir / "locust.conf").write_text(
        f"metrics-port = {port}\nmetrics-host = 127.0.0.1\nmetrics-slow-threshold = 2\n"
        "metrics-buckets = .001,.002,.1\nmetrics-slow-threshold-for = [/health=0.5]\n"
    )
    env = child_env(LOCUST_METRICS_LABEL="env=ci,team=perf")
    args = ["-f", str(LOCUSTFILES / "double_import.py"), "--config", "locust.conf", "--headless", "-u", "2",
            "-t", "3s", "-H", demo_target]
    with locust(args, workdir, env=env) as process:
        scrapes = scrape_until_exit(process, port, run_time=3)
        assert process.wait(timeout=30) == 0, process.output()[-2000:]
    final = scrapes[-1]
    les = {labels["le"] for labels, _ in final.select("locust_request_duration_seconds_bucket")}
    assert les == {"0.0005", "0.001", "0.002", "0.1", "+Inf"}
    (threshold,) = final.select("locust_slow_request_threshold_seconds")
    assert threshold == ({"env": "ci", "team": "perf", "method": "GET", "name": "/health"}, 0.0005)
    assert all(labels.get("env") == "ci" and labels.get("team") == "perf" for _, labels, _ in final.samples)


def test_locust_parser_keeps_msgpack_safe_values() -> None:
    result = parse_with_locust(["--metrics-label", "a=b", "--metrics-label", "c=d,e=f", "--metrics-port", "1234"])
    assert result.returncode == 0, result.stderr
    assert "PARSED 1234 1000.0 ['a=b', 'c=d,e=f']" in result.stdout


# ---------------------------------------------------------------------------------------------- unit tests
def test_settings_defaults_and_bounds() -> None:
    settings = Settings.from_kwargs()
    assert settings.port == 9646 and settings.host == "" and settings.max_names == 500
    assert settings.slow_threshold_ms == 1000.0 and settings.final_scrape_timeout_s == 30.0
    assert settings.buckets_s[:3] == (0.005, 0.01, 0.025) and settings.buckets_s[-1] == 60.0
    assert len(settings.bounds_ms()) == 21 and settings.bounds_ms()[4] == 75.0  # exact, no 74.99999
    with_thresholds = Settings.from_kwargs(slow_threshold=1234, slow_thresholds={"/a": 250, "re:/b.*": 75})
    assert 1234.0 in with_thresholds.bounds_ms() and 250.0 in with_thresholds.bounds_ms()
    assert len(with_thresholds.bounds_ms()) == 23  # 75 ms was a bound already


def test_max_concurrent_renders_option() -> None:
    assert Settings.from_kwargs().max_concurrent_renders == 4
    assert Settings.from_kwargs(max_concurrent_renders="2").max_concurrent_renders == 2
    options = types.SimpleNamespace(metrics_max_concurrent_renders=7)
    assert Settings.from_options(options).max_concurrent_renders == 7
    assert Settings.from_options(None).max_concurrent_renders == 4
    for bad in (0, -1, "1.5", "many"):
        with pytest.raises(OptionError, match=r"--metrics-max-concurrent-renders \(LOCUST_METRICS_MAX_CONCURRENT_RENDERS\)"):
            Settings.from_kwargs(max_concurrent_renders=bad)
    listing = subprocess.run([sys.executable, "-m", "locust_metrics"], capture_output=True, text=True, timeout=60,
                             env=child_env())
    assert "--metrics-max-concurrent-renders N" in listing.stdout and "Default 4." in listing.stdout


def test_parsers() -> None:
    assert parse_buckets(".1, .2, 1, +Inf") == [0.1, 0.2, 1.0]
    assert parse_buckets([0.5, 1]) == [0.5, 1.0]
    assert parse_labels(["a=1", "b=2,c=3"]) == {"a": "1", "b": "2", "c": "3"}
    assert parse_labels({"env": "x"}) == {"env": "x"}
    thresholds = parse_slow_thresholds(["/a=5,re:/b/.*=7"])
    assert [(t.pattern, t.ms, t.regex) for t in thresholds] == [("/a", 5.0, False), ("/b/.*", 7.0, True)]
    assert parse_slow_thresholds("/with=equals=9")[0].pattern == "/with=equals"
    with pytest.raises(OptionError, match=r"--metrics-max-names \(LOCUST_METRICS_MAX_NAMES\): 0"):
        Settings.from_kwargs(max_names=0)
    with pytest.raises(OptionError, match="--metrics-buckets"):
        Settings.from_kwargs(buckets=[1, 1])
    with pytest.raises(OptionError, match="'__x'"):
        Settings.from_kwargs(labels={"__x": "y"})
