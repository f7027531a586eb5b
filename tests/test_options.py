"""Options: parsed by Locust's own parser (flag, env var, locust.conf); bad values fail before the test.

The parses run in real child processes, forked from one interpreter that imported Locust once
(``support/forked.py``): about 0.05 s each instead of 1.5 s for a fresh ``python -c``.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import LOCUSTFILES, REPO, child_env, free_port, locust, run_locust, scrape_until_exit
from support.forked import ForkingPython

from locust_metrics.options import (
    OptionError,
    Settings,
    parse_buckets,
    parse_exit_code,
    parse_grouping_value,
    parse_labels,
    parse_max_names,
    parse_milliseconds,
    parse_port,
    parse_positive_seconds,
    parse_pushgateway,
    parse_seconds,
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


@pytest.fixture(scope="module")
def forked() -> Iterator[ForkingPython]:
    """Runs the parsing scripts in child processes (see the module's docstring)."""
    with ForkingPython() as python:
        yield python


def parse_with_locust(forked: ForkingPython, args: list[str]) -> subprocess.CompletedProcess[str]:
    """Parse ``args`` with Locust's real parser in a child process; returns CompletedProcess."""
    return forked.run(PARSER_SCRIPT, args)


@pytest.mark.parametrize("option,value", BAD_OPTIONS)
def test_bad_value_is_rejected_by_locusts_parser_naming_option_and_value(
    forked: ForkingPython, option: str, value: str
) -> None:
    result = parse_with_locust(forked, [f"{option}={value}"])
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


def test_locust_parser_keeps_msgpack_safe_values(forked: ForkingPython) -> None:
    result = parse_with_locust(forked, ["--metrics-label", "a=b", "--metrics-label", "c=d,e=f", "--metrics-port", "1234"])
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


# every parser: values it accepts and what it makes of them; values it rejects, with the value its message shows
# (a list's offending item) and why
PARSED = [
    (parse_milliseconds, " 250 ", 250.0), (parse_milliseconds, 0, 0.0), (parse_milliseconds, "1e3", 1000.0),
    (parse_seconds, "0.25", 0.25), (parse_positive_seconds, "1e-3", 0.001),
    (parse_port, "0", 0), (parse_port, " 65535 ", 65535), (parse_max_names, "1", 1), (parse_exit_code, "255", 255),
    (parse_buckets, ".1,inf", [0.1]), (parse_buckets, " 1e-3 , .5 ", [0.001, 0.5]),
    (parse_buckets, ".1,.3", [0.1, 0.3]),  # decimal: 0.3, not 0.30000000000000004
    (parse_labels, "a=1,,b= x=y ", {"a": "1", "b": "x=y"}), (parse_labels, ["a=1", "a=1"], {"a": "1"}),
    (parse_labels, None, {}), (parse_grouping_value, " ci ", "ci"), (parse_pushgateway, "gw:9091/", "http://gw:9091"),
]
REJECTED = [
    (parse_milliseconds, "inf", "inf", "finite"), (parse_milliseconds, "-0.5", "-0.5", ">= 0"),
    (parse_milliseconds, "1ms", "1ms", "not a number"), (parse_seconds, "nan", "nan", "finite"),
    (parse_positive_seconds, "0", "0", "> 0"), (parse_port, "65536", "65536", "between 0"),
    (parse_port, "80.5", "80.5", "not an integer"), (parse_max_names, "0", "0", "at least 1"),
    (parse_exit_code, "0", "0", "between 1 and 255"),
    (parse_buckets, "0.5,0.1", "0.5,0.1", "sorted ascending (0.5 before 0.1)"),
    (parse_buckets, "0.1,0.1", "0.1,0.1", "duplicate bound 0.1"), (parse_buckets, "0,1", "0,1", "> 0 seconds"),
    (parse_buckets, "1,,2", "1,,2", "comma-separated"), (parse_buckets, "+Inf", "+Inf", "comma-separated"),
    (parse_labels, "a=1,a=2", "a=2", "given twice"), (parse_labels, "le=x", "le=x", "sets itself"),
    (parse_labels, "1a=x", "1a=x", "not a valid"), (parse_labels, "__a=x", "__a=x", "not a valid"),
    (parse_labels, "a=1,b", "a=1,b", "'b' is not KEY=VALUE"),
    (parse_slow_thresholds, "/a=soon", "/a=soon", "not a finite number"),
    (parse_slow_thresholds, "re:(=5", "re:(=5", "bad regular expression"),
    (parse_slow_thresholds, "=5", "=5", "not NAME=MILLISECONDS"),
    (parse_grouping_value, "  ", "  ", "must not be empty"),
    (parse_pushgateway, "ftp://u:pw@gw", "ftp://u:***@gw", "http://HOST:PORT"),
]


@pytest.mark.parametrize("parse,value,expected", PARSED, ids=[f"{p.__name__}-{v!r}" for p, v, _ in PARSED])
def test_each_parser_accepts_and_normalises(parse, value, expected) -> None:
    assert parse(value, "--metrics-x") == expected


@pytest.mark.parametrize("parse,value,shown,why", REJECTED, ids=[f"{p.__name__}-{v!r}" for p, v, *_ in REJECTED])
def test_each_parser_rejects_naming_the_option_the_value_and_why(parse, value, shown, why) -> None:
    with pytest.raises(OptionError) as error:
        parse(value, "--metrics-x")
    message = str(error.value)
    assert message.startswith(f"invalid value for --metrics-x (LOCUST_METRICS_X): {shown!r}: "), message
    assert why in message, message


def test_keywords_take_none_for_the_default_and_refuse_unknown_ones() -> None:
    assert Settings.from_kwargs(port=None, buckets=None, labels=None) == Settings.from_kwargs()
    with pytest.raises(TypeError, match="unknown locust-metrics option.* prot"):
        Settings.from_kwargs(prot=9646)


# ------------------------------------------------------------------ locust.conf, on every supported Locust
# One valid value of every option as a locust.conf line, with what Settings.from_options must make of it, and
# one bad value (None: every text is valid). The web config file is written by the test.
CONF_VALUES: dict[str, tuple[str, str, object, str | None]] = {
    # option: (conf value, Settings attribute, expected attribute value, bad conf value)
    "--metrics-port": ("9999", "port", 9999, "70000"),
    "--metrics-worker-port": ("9700", "worker_port", 9700, "-1"),
    "--metrics-host": ("127.0.0.2", "host", "127.0.0.2", None),
    "--metrics-web-config": ("web.yml", "web_config", "WEB", "missing.yml"),
    "--metrics-slow-threshold": ("2", "slow_threshold_ms", 2.0, "-5"),
    "--metrics-slow-threshold-for": ("[/a=7]", "slow_thresholds", "/a=7.0", "[/a=soon]"),
    "--metrics-buckets": (".5,1", "buckets_s", (0.5, 1.0), "1,0.5"),
    "--metrics-max-names": ("3", "max_names", 3, "0"),
    "--metrics-max-concurrent-renders": ("2", "max_concurrent_renders", 2, "0"),
    "--metrics-native-histograms": ("true", "native_histograms", True, "maybe"),
    "--metrics-native-schema": ("3", "native_schema", 3, "9"),
    "--metrics-native-max-buckets": ("40", "native_max_buckets", 40, "-1"),
    "--metrics-label": ("[team=perf]", "labels", {"team": "perf"}, "[method=GET]"),
    "--metrics-final-scrape-timeout": ("4", "final_scrape_timeout_s", 4.0, "-1"),
    "--metrics-pushgateway": ("127.0.0.1:9091", "pushgateway", "http://127.0.0.1:9091", "ftp://x"),
    "--metrics-push-interval": ("2.5", "push_interval_s", 2.5, "0"),
    "--metrics-push-job": ("ci", "push_job", "ci", None),
    "--metrics-push-run": ("build-7", "push_run", "build-7", None),
    "--metrics-threshold": ("[p95<500ms, /a:max<=2s]", "thresholds", ("p95<500ms", "/a:max<=2s"), "[p95<soon]"),
    "--metrics-threshold-exit-code": ("4", "threshold_exit_code", 4, "0"),
    "--metrics-threshold-junit": ("out.xml", "threshold_junit", "out.xml", "no/such/folder/out.xml"),
}

CONF_SCRIPT = """
import sys
import locust_metrics  # registers the options on Locust's parser
from locust.argument_parser import get_parser
from locust_metrics.options import Settings
s = Settings.from_options(get_parser().parse_args(sys.argv[1:]))
thresholds = ",".join(f"{t.pattern}={t.ms}" for t in s.slow_thresholds)
web = "WEB" if s.web_config is not None and s.web_config.basic_auth() is not None else None
print(repr({"port": s.port, "worker_port": s.worker_port, "host": s.host, "web_config": web,
            "slow_threshold_ms": s.slow_threshold_ms, "slow_thresholds": thresholds, "buckets_s": s.buckets_s,
            "max_names": s.max_names, "max_concurrent_renders": s.max_concurrent_renders,
            "labels": dict(s.labels), "final_scrape_timeout_s": s.final_scrape_timeout_s,
            "pushgateway": s.pushgateway, "push_interval_s": s.push_interval_s, "push_job": s.push_job,
            "push_run": s.push_run, "thresholds": tuple(t.text for t in s.thresholds),
            "threshold_exit_code": s.threshold_exit_code, "threshold_junit": s.threshold_junit,
            "native_histograms": s.native_histograms, "native_schema": s.native_schema,
            "native_max_buckets": s.native_max_buckets}))
"""


def our_options(forked: ForkingPython) -> list[str]:
    """Every ``--metrics-*`` flag on Locust's real parser (so a new option must get a row in CONF_VALUES)."""
    result = forked.run(
        "import locust_metrics\nfrom locust.argument_parser import get_parser\n"
        "print(' '.join(s for a in get_parser()._actions for s in a.option_strings if s.startswith('--metrics-')))",
        [],
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_every_option_has_a_conf_file_case(forked: ForkingPython) -> None:
    assert sorted(our_options(forked)) == sorted(CONF_VALUES)


@pytest.mark.parametrize("numbers_only", [True, False], ids=["valid-TOML-file", "key-value-file"])
def test_every_option_in_locust_conf_takes_effect(forked: ForkingPython, tmp_path: Path, numbers_only: bool) -> None:
    """Locust 2.32-2.42.2 read a locust.conf that is valid TOML (numbers only) as TOML, and so as empty."""
    from support import write_web_config

    write_web_config(tmp_path / "web.yml", None, users={"prom": "pw"})
    numeric = {o for o, (value, *_) in CONF_VALUES.items() if re.fullmatch(r"\d+(\.\d+)?", value)}
    chosen = sorted(numeric) if numbers_only else list(CONF_VALUES)
    lines = "".join(f"{o[2:]} = {CONF_VALUES[o][0]}\n" for o in chosen)
    try:
        import tomllib
    except ImportError:  # Python 3.10: Locust reads TOML with tomli
        import tomli as tomllib
    try:
        tomllib.loads(lines)
        is_toml = True
    except tomllib.TOMLDecodeError:
        is_toml = False
    assert is_toml == numbers_only, "the case must (not) be a file Locust < 2.42.3 takes for TOML"
    (tmp_path / "locust.conf").write_text(lines)
    result = forked.run(CONF_SCRIPT, ["--config", "locust.conf"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    settings = eval(result.stdout.strip().splitlines()[-1])  # noqa: S307 - our own script's repr of plain values
    for option in chosen:
        _, attribute, expected, _ = CONF_VALUES[option]
        assert settings[attribute] == expected, (option, lines, settings[attribute])


@pytest.mark.parametrize("option", [o for o, row in CONF_VALUES.items() if row[3] is not None])
def test_a_bad_value_in_locust_conf_fails_naming_option_and_value(
    forked: ForkingPython, tmp_path: Path, option: str
) -> None:
    bad = CONF_VALUES[option][3]
    (tmp_path / "locust.conf").write_text(f"{option[2:]} = {bad}\n")
    result = forked.run(CONF_SCRIPT, ["--config", "locust.conf"], cwd=tmp_path)
    assert result.returncode == 2, (option, bad, result.stdout, result.stderr)
    shown = bad.strip("[]")
    assert option in result.stderr and shown in result.stderr, result.stderr


def test_the_readme_options_table_is_the_one_made_from_the_declarations() -> None:
    from locust_metrics.options import options_table

    assert options_table() in (REPO / "README.md").read_text(), "regenerate it: python -c 'from locust_metrics." \
        "options import options_table; print(options_table())'"


def test_install_documents_every_keyword_and_messages_name_flags_from_the_table() -> None:
    import ast

    import locust_metrics
    from locust_metrics.options import OPTIONS

    assert all(f"``{o.keyword}``" in locust_metrics.install.__doc__ for o in OPTIONS)
    # no flag is spelled in a message (a string that is not a docstring) outside the option table
    for path in (REPO / "locust_metrics").glob("*.py"):
        if path.name == "options.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.value) for node in ast.walk(tree)  # docstrings, also of attributes: documentation
                      if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                assert not any(o.flag and o.flag in node.value for o in OPTIONS), (path.name, node.value)


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), ("on", True), ("OFF", False), (" yes ", True), ("no", False), ("1", True), ("0", False),
])
def test_native_histograms_switch_takes_the_usual_spellings(value: object, expected: bool) -> None:
    assert Settings.from_kwargs(native_histograms=value).native_histograms is expected


@pytest.mark.parametrize(("keyword", "bad"), [
    ("native_histograms", "maybe"), ("native_schema", "9"), ("native_schema", "-5"), ("native_schema", "6.5"),
    ("native_max_buckets", "-1"), ("native_max_buckets", "lots"),
])
def test_bad_native_histogram_options_fail_naming_option_and_value(keyword: str, bad: str) -> None:
    from locust_metrics.errors import OptionError
    from locust_metrics.options import flag

    with pytest.raises(OptionError) as info:
        Settings.from_kwargs(**{keyword: bad})
    assert flag(keyword) in str(info.value) and bad in str(info.value)


def test_native_histogram_defaults() -> None:
    """Off by default (a Prometheus 2.4x that ingests them drops the classic series our dashboards use); schema 6
    and 160 buckets, the core's defaults."""
    from locust_metrics import native

    settings = Settings()
    assert settings.native_histograms is False
    assert (settings.native_schema, settings.native_max_buckets) == (native.DEFAULT_SCHEMA, native.DEFAULT_MAX_BUCKETS)
