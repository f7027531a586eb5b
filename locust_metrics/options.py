"""Options of locust-metrics: their defaults, their parsing and their validation.

Every option exists three ways, all through Locust's own option parser (configargparse):

* a command-line flag, e.g. ``--metrics-port 9646``;
* an environment variable, e.g. ``LOCUST_METRICS_PORT=9646`` (Locust's ``LOCUST_`` prefix);
* a line in ``locust.conf`` / ``pyproject.toml`` ``[tool.locust]``, e.g. ``metrics-port = 9646``.

The same parsers serve :func:`locust_metrics.install` (keyword arguments), so a bad value is rejected with
the same message whichever way it came in. Values that come from the command line are checked while
Locust parses its arguments (``argparse`` ``type=`` callables), i.e. before any test starts; the error
names the option and the value. Values kept in Locust's ``parsed_options`` are plain ``int``/``float``/
``str``/``list`` objects, because Locust's master forwards its custom options to workers with msgpack.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

DEFAULT_PORT = 9646
"""Default TCP port of the metrics endpoint (``--metrics-port``)."""

DEFAULT_HOST = ""
"""Default bind address of the metrics endpoint: all interfaces, as Locust's web UI (``--metrics-host``)."""

DEFAULT_SLOW_THRESHOLD_MS = 1000.0
"""Default slow-request threshold in **milliseconds** (``--metrics-slow-threshold``)."""

DEFAULT_BUCKETS_TEXT = ".005,.01,.025,.05,.075,.1,.15,.2,.3,.5,.75,1,1.5,2,3,5,7.5,10,15,30,60"
"""Default histogram bucket upper bounds in **seconds** (``--metrics-buckets``)."""

DEFAULT_MAX_NAMES = 500
"""Default cap on exported (method, name) statistics entries (``--metrics-max-names``)."""

DEFAULT_FINAL_SCRAPE_TIMEOUT_S = 30.0
"""Default wait, in **seconds**, for a last scrape after the test stops (``--metrics-final-scrape-timeout``)."""

DEFAULT_PUSH_INTERVAL_S = 10.0
"""Default time between two pushes to the Pushgateway, in **seconds** (``--metrics-push-interval``)."""

DEFAULT_PUSH_JOB = "locust"
"""Default ``job`` grouping label of pushes (``--metrics-push-job``)."""

DEFAULT_MAX_CONCURRENT_RENDERS = 4
"""Default bound on scrape renders in flight at once (``--metrics-max-concurrent-renders``): one per
format a scraper can ask for (text, OpenMetrics, each gzip or not); scrapes of a format already being
rendered share that render and take no slot."""

PUSH_GROUPING_LABELS = frozenset({"job", "run"})
"""Grouping-key labels of pushes; with ``--metrics-pushgateway`` constant labels may not take them."""

REGEX_PREFIX = "re:"
"""Prefix that marks a per-endpoint slow threshold key as a regular expression (fully anchored)."""

RESERVED_LABELS = frozenset(
    {
        "method",
        "name",
        "status_code",
        "error",
        "le",
        "node",
        "state",
        "user_class",
        "run_id",
        "host",
        "locustfile",
        "version",
        "locust_version",
        "quantile",
        "job",
        "instance",
    }
)
"""Label names that our own series use (or Prometheus attaches); constant labels may not take them."""

_LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class OptionError(ValueError):
    """A locust-metrics option has an invalid value.

    The message names the option (flag and environment variable) and the offending value.
    Subclass of :class:`ValueError`.
    """


def _where(option: str) -> str:
    env = "LOCUST_" + option.lstrip("-").upper().replace("-", "_")
    return f"{option} ({env})"


def _fail(option: str, value: Any, why: str) -> OptionError:
    return OptionError(f"invalid value for {_where(option)}: {value!r}: {why}")


def parse_milliseconds(value: Any, option: str = "--metrics-slow-threshold") -> float:
    """Parse a duration in **milliseconds** (int, float or numeric string) into a finite float >= 0.

    Raises :class:`OptionError` for anything else (not a number, negative, NaN, infinite).
    """
    try:
        number = float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    except ValueError:
        raise _fail(option, value, "not a number of milliseconds") from None
    if not math.isfinite(number) or number < 0:
        raise _fail(option, value, "must be a finite number of milliseconds >= 0")
    return number


def parse_seconds(value: Any, option: str = "--metrics-final-scrape-timeout") -> float:
    """Parse a duration in **seconds** into a finite float >= 0; raises :class:`OptionError`."""
    try:
        number = float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    except ValueError:
        raise _fail(option, value, "not a number of seconds") from None
    if not math.isfinite(number) or number < 0:
        raise _fail(option, value, "must be a finite number of seconds >= 0")
    return number


def parse_port(value: Any, option: str = "--metrics-port") -> int:
    """Parse a TCP port: an integer from 0 (our HTTP server off) to 65535; raises :class:`OptionError`."""
    try:
        port = int(str(value).strip())
    except ValueError:
        raise _fail(option, value, "not an integer port number") from None
    if not 0 <= port <= 65535:
        raise _fail(option, value, "must be between 0 (server off) and 65535")
    return port


def parse_max_names(value: Any, option: str = "--metrics-max-names") -> int:
    """Parse the cap on exported statistics entries: an integer >= 1; raises :class:`OptionError`."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise _fail(option, value, "not an integer") from None
    if number < 1:
        raise _fail(option, value, "must be at least 1")
    return number


def parse_max_concurrent_renders(value: Any, option: str = "--metrics-max-concurrent-renders") -> int:
    """Parse the bound on concurrent scrape renders: an integer >= 1; raises :class:`OptionError`."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise _fail(option, value, "not an integer") from None
    if number < 1:
        raise _fail(option, value, "must be at least 1")
    return number


def parse_buckets(value: Any, option: str = "--metrics-buckets") -> list[float]:
    """Parse histogram bucket upper bounds given in **seconds**.

    Accepts a comma-separated string (``".005,.01,1"``) or an iterable of numbers. A trailing ``+Inf``
    is accepted and dropped (the ``+Inf`` bucket always exists). Bounds must be finite, > 0, strictly
    increasing and unique. Returns the bounds as a list of floats in seconds. Raises :class:`OptionError`.
    """
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
    else:
        try:
            items = [str(item).strip() for item in value]
        except TypeError:
            raise _fail(option, value, "expected comma-separated numbers of seconds") from None
    if items and items[-1].lower() in ("+inf", "inf"):
        items = items[:-1]
    if not items or any(item == "" for item in items):
        raise _fail(option, value, "expected comma-separated numbers of seconds, e.g. .05,.1,.5,1")
    bounds: list[float] = []
    for item in items:
        try:
            number = Decimal(item)
        except InvalidOperation:
            raise _fail(option, value, f"{item!r} is not a number of seconds") from None
        if not number.is_finite() or number <= 0:
            raise _fail(option, value, f"{item!r}: bounds must be finite and > 0 seconds")
        bounds.append(float(number))
    for lower, upper in zip(bounds, bounds[1:]):
        if upper == lower:
            raise _fail(option, value, f"duplicate bound {upper:g}")
        if upper < lower:
            raise _fail(option, value, f"bounds must be sorted ascending ({lower:g} before {upper:g})")
    return bounds


def parse_labels(values: Any, option: str = "--metrics-label") -> dict[str, str]:
    """Parse constant labels: ``KEY=VALUE`` items, repeated and/or comma-separated, or a mapping.

    Label names must match ``[a-zA-Z_][a-zA-Z0-9_]*``, must not start with ``__`` and must not be one of
    our own label names (:data:`RESERVED_LABELS`). Returns ``{name: value}``. Raises :class:`OptionError`.
    """
    pairs: list[tuple[str, str]] = []
    if values is None:
        return {}
    if isinstance(values, Mapping):
        pairs = [(str(k), str(v)) for k, v in values.items()]
    else:
        for text in [values] if isinstance(values, str) else values:
            for item in str(text).split(","):
                item = item.strip()
                if not item:
                    continue
                key, sep, val = item.partition("=")
                if not sep:
                    raise _fail(option, text, f"{item!r} is not KEY=VALUE")
                pairs.append((key.strip(), val.strip()))
    labels: dict[str, str] = {}
    for key, val in pairs:
        if not _LABEL_NAME_RE.match(key) or key.startswith("__"):
            raise _fail(option, f"{key}={val}", f"{key!r} is not a valid Prometheus label name")
        if key in RESERVED_LABELS:
            raise _fail(option, f"{key}={val}", f"{key!r} is a label locust-metrics or Prometheus sets itself")
        if key in labels and labels[key] != val:
            raise _fail(option, f"{key}={val}", f"label {key!r} given twice")
        labels[key] = val
    return labels


@dataclass(frozen=True)
class SlowThreshold:
    """A per-endpoint slow threshold.

    ``pattern`` is a request name (exact match) or, when ``regex`` is true, a regular expression that
    must match the whole name (as Prometheus matchers do). ``ms`` is the threshold in milliseconds.
    """

    pattern: str
    ms: float
    regex: bool = False


def parse_slow_thresholds(values: Any, option: str = "--metrics-slow-threshold-for") -> list[SlowThreshold]:
    """Parse per-endpoint slow thresholds.

    From the command line / env / conf: items ``NAME=MS`` or ``re:REGEX=MS``, repeated and/or
    comma-separated (split at the *last* ``=``; a name or regex containing a comma must be given from
    code). From code: a mapping ``{name or "re:regex" or re.Pattern: ms}``. Exact names win over regexes;
    regexes are tried in the order given. Raises :class:`OptionError` on a bad number or regex.
    """
    if values is None:
        return []
    raw: list[tuple[Any, Any, Any]] = []  # (key, ms, original text)
    if isinstance(values, Mapping):
        raw = [(key, ms, f"{key}={ms}") for key, ms in values.items()]
    else:
        for text in [values] if isinstance(values, str) else values:
            for item in str(text).split(","):
                if not item.strip():
                    continue
                key, sep, ms = item.strip().rpartition("=")
                if not sep or not key:
                    raise _fail(option, text, f"{item!r} is not NAME=MILLISECONDS or re:REGEX=MILLISECONDS")
                raw.append((key, ms, item))
    result: list[SlowThreshold] = []
    for key, ms, text in raw:
        try:
            millis = parse_milliseconds(ms, option)
        except OptionError:
            raise _fail(option, text, f"{ms!r} is not a finite number of milliseconds >= 0") from None
        if isinstance(key, re.Pattern):
            result.append(SlowThreshold(key.pattern, millis, regex=True))
            continue
        key = str(key)
        if key.startswith(REGEX_PREFIX):
            pattern = key[len(REGEX_PREFIX) :]
            try:
                re.compile(pattern)
            except re.error as exc:
                raise _fail(option, text, f"bad regular expression: {exc}") from None
            result.append(SlowThreshold(pattern, millis, regex=True))
        else:
            result.append(SlowThreshold(key, millis))
    return result


def parse_positive_seconds(value: Any, option: str = "--metrics-push-interval") -> float:
    """Parse a duration in **seconds** into a finite float > 0; raises :class:`OptionError`."""
    number = parse_seconds(value, option)
    if number <= 0:
        raise _fail(option, value, "must be a finite number of seconds > 0")
    return number


def parse_pushgateway(value: Any, option: str = "--metrics-pushgateway") -> str:
    """Parse a Pushgateway URL: ``http://`` or ``https://`` with a host (``host:port`` alone gets ``http://``).

    ``""`` (or None) means push mode is off. User info (``https://user:password@host:9091``) is kept: it is
    used for HTTP basic auth and never logged. Returns the URL without a trailing slash. Raises
    :class:`OptionError` (the message shows the URL without its password).
    """
    from urllib.parse import urlsplit

    text = "" if value is None else str(value).strip()
    if not text:
        return ""
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise _fail(option, _redact(text), f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(option, _redact(text), "expected http://HOST:PORT or https://HOST:PORT of a Pushgateway")
    if parts.query or parts.fragment:
        raise _fail(option, _redact(text), "a Pushgateway URL takes no query or fragment")
    return text.rstrip("/")


def _redact(url: str) -> str:
    """``url`` with the password of its user info replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.partition("@")
    if not at or "/" in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


def parse_grouping_value(value: Any, option: str = "--metrics-push-job") -> str:
    """Parse a push grouping-key value (job name or run id): non-empty text; raises :class:`OptionError`."""
    text = "" if value is None else str(value).strip()
    if not text:
        raise _fail(option, value, "must not be empty")
    return text


def parse_web_config(value: Any, option: str = "--metrics-web-config"):
    """Read and validate a web configuration file (TLS, basic auth); see :mod:`locust_metrics.security`.

    Returns a :class:`~locust_metrics.security.WebConfig`, or None for ``""``/None. A mapping (what the
    file holds) is accepted too. Raises :class:`OptionError` naming the file and the problem.
    """
    from .security import WebConfig, load_web_config, web_config_from_mapping

    if value is None or isinstance(value, WebConfig):
        return value
    if isinstance(value, Mapping):
        return web_config_from_mapping(value)
    text = str(value).strip()
    return load_web_config(text) if text else None


def _argparse_type(parser_function, option: str, keep_text: bool = False):
    """Wrap one of our parsers as an argparse ``type=`` callable.

    An invalid value raises ``argparse.ArgumentTypeError`` whose message names the option and the value,
    so Locust exits with a usage error before anything starts. With ``keep_text`` the validated text is
    stored (structured options are parsed again by :meth:`Settings.from_options`), else the parsed value.
    """

    def convert(text: str):
        try:
            parsed = parser_function(text, option)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text if keep_text else parsed

    convert.__name__ = option.lstrip("-").replace("-", "_")
    return convert


def add_arguments(parser: Any) -> None:
    """Add the ``--metrics-*`` options to Locust's argument parser (``init_command_line_parser``).

    Being Locust options, they also read ``LOCUST_METRICS_*`` environment variables and ``metrics-*``
    config-file keys. Locust prints ``locust --help`` before it imports the locustfile, so they are not
    listed there; ``python -m locust_metrics`` lists them (group "locust-metrics (Prometheus)").
    """
    if any("--metrics-port" in action.option_strings for action in getattr(parser, "_actions", [])):
        return  # already added (a second import, or a second parser hook)
    group = parser.add_argument_group(
        "locust-metrics (Prometheus)",
        "Live Prometheus metrics of the test on http://HOST:PORT/metrics (and /metrics on the web UI).",
    )
    group.add_argument(
        "--metrics-port",
        type=_argparse_type(parse_port, "--metrics-port"),
        default=DEFAULT_PORT,
        env_var="LOCUST_METRICS_PORT",
        metavar="PORT",
        help=f"TCP port of the /metrics endpoint; 0 turns our own HTTP server off. Default {DEFAULT_PORT}.",
    )
    group.add_argument(
        "--metrics-worker-port",
        type=_argparse_type(parse_port, "--metrics-worker-port"),
        default=0,
        env_var="LOCUST_METRICS_WORKER_PORT",
        metavar="BASE",
        help="Distributed runs: workers serve nothing by default (the master serves everything). With BASE > 0 "
        "each worker also serves its own /metrics on port BASE + its worker index. Default 0 (off).",
    )
    group.add_argument(
        "--metrics-host",
        default=DEFAULT_HOST,
        env_var="LOCUST_METRICS_HOST",
        metavar="HOST",
        help="Address the metrics endpoint binds to. Default: all interfaces (as the web UI); "
        "127.0.0.1 keeps it local.",
    )
    group.add_argument(
        "--metrics-web-config",
        type=_argparse_type(parse_web_config, "--metrics-web-config", keep_text=True),
        default=None,
        env_var="LOCUST_METRICS_WEB_CONFIG",
        metavar="FILE",
        help="Web configuration file (Prometheus exporter-toolkit format): tls_server_config (cert_file, "
        "key_file, ...) for HTTPS, basic_auth_users (user: bcrypt hash) for basic auth on our endpoint and "
        "on the web UI's /metrics. Default: none (plain HTTP, no auth).",
    )
    group.add_argument(
        "--metrics-slow-threshold",
        type=_argparse_type(parse_milliseconds, "--metrics-slow-threshold"),
        default=DEFAULT_SLOW_THRESHOLD_MS,
        env_var="LOCUST_METRICS_SLOW_THRESHOLD",
        metavar="MS",
        help="A request is slow when its response time is greater than this many milliseconds. "
        f"Default {DEFAULT_SLOW_THRESHOLD_MS:g}. Also added as a histogram bucket bound.",
    )
    group.add_argument(
        "--metrics-slow-threshold-for",
        type=_argparse_type(parse_slow_thresholds, "--metrics-slow-threshold-for", keep_text=True),
        action="append",
        default=None,
        env_var="LOCUST_METRICS_SLOW_THRESHOLD_FOR",
        metavar="NAME=MS",
        help="Slow threshold in milliseconds for one request name (exact) or for names matching "
        "re:REGEX (whole name). Repeatable or comma-separated, e.g. '/checkout=2000,re:/api/.*=300'.",
    )
    group.add_argument(
        "--metrics-buckets",
        type=_argparse_type(parse_buckets, "--metrics-buckets", keep_text=True),
        default=DEFAULT_BUCKETS_TEXT,
        env_var="LOCUST_METRICS_BUCKETS",
        metavar="SECONDS,...",
        help="Histogram bucket upper bounds in seconds, ascending, comma-separated. "
        f"Default {DEFAULT_BUCKETS_TEXT}. Every slow threshold is added as a bound.",
    )
    group.add_argument(
        "--metrics-max-names",
        type=_argparse_type(parse_max_names, "--metrics-max-names"),
        default=DEFAULT_MAX_NAMES,
        env_var="LOCUST_METRICS_MAX_NAMES",
        metavar="N",
        help="Most distinct (method, name) entries exported; further names are counted under "
        f"name=\"__overflow__\" (totals stay exact). Default {DEFAULT_MAX_NAMES}.",
    )
    group.add_argument(
        "--metrics-label",
        type=_argparse_type(parse_labels, "--metrics-label", keep_text=True),
        action="append",
        default=None,
        env_var="LOCUST_METRICS_LABEL",
        metavar="KEY=VALUE",
        help="Constant label on every series, e.g. env=staging. Repeatable or comma-separated.",
    )
    group.add_argument(
        "--metrics-final-scrape-timeout",
        type=_argparse_type(parse_seconds, "--metrics-final-scrape-timeout"),
        default=DEFAULT_FINAL_SCRAPE_TIMEOUT_S,
        env_var="LOCUST_METRICS_FINAL_SCRAPE_TIMEOUT",
        metavar="SECONDS",
        help="After the test, if the endpoint was scraped during the run, keep serving until one more "
        f"scrape is answered or this many seconds pass. Default {DEFAULT_FINAL_SCRAPE_TIMEOUT_S:g}.",
    )
    group.add_argument(
        "--metrics-max-concurrent-renders",
        type=_argparse_type(parse_max_concurrent_renders, "--metrics-max-concurrent-renders"),
        default=DEFAULT_MAX_CONCURRENT_RENDERS,
        env_var="LOCUST_METRICS_MAX_CONCURRENT_RENDERS",
        metavar="N",
        help="Most scrape renders in flight at once, on our endpoint and the web UI's /metrics together. "
        "Scrapes of a format (text or OpenMetrics, gzip or not) that is being rendered share that render and "
        "take no slot; a scrape that needs one more gets HTTP 503 with Retry-After. "
        f"Default {DEFAULT_MAX_CONCURRENT_RENDERS}.",
    )
    group.add_argument(
        "--metrics-pushgateway",
        type=_argparse_type(parse_pushgateway, "--metrics-pushgateway"),
        default="",
        env_var="LOCUST_METRICS_PUSHGATEWAY",
        metavar="URL",
        help="Also push the metrics to this Prometheus Pushgateway (http[s]://[user:password@]host:port): "
        "periodically, when a test stops and once more at exit. For runs no Prometheus scrapes. Default: off.",
    )
    group.add_argument(
        "--metrics-push-interval",
        type=_argparse_type(parse_positive_seconds, "--metrics-push-interval"),
        default=DEFAULT_PUSH_INTERVAL_S,
        env_var="LOCUST_METRICS_PUSH_INTERVAL",
        metavar="SECONDS",
        help=f"Seconds between two pushes. Default {DEFAULT_PUSH_INTERVAL_S:g}.",
    )
    group.add_argument(
        "--metrics-push-job",
        type=_argparse_type(parse_grouping_value, "--metrics-push-job"),
        default=DEFAULT_PUSH_JOB,
        env_var="LOCUST_METRICS_PUSH_JOB",
        metavar="NAME",
        help=f"The job label of pushed metrics (the Pushgateway group's job). Default {DEFAULT_PUSH_JOB!r}.",
    )
    group.add_argument(
        "--metrics-push-run",
        type=_argparse_type(parse_grouping_value, "--metrics-push-run"),
        default=None,
        env_var="LOCUST_METRICS_PUSH_RUN",
        metavar="ID",
        help="The run label of the Pushgateway group, e.g. a CI pipeline id. Default: the run_id of the "
        "process's first test (as in locust_test_info).",
    )


@dataclass(frozen=True)
class Settings:
    """Validated settings of one exporter. Build it with :meth:`from_kwargs` or :meth:`from_options`.

    Attributes:
        port: TCP port of our HTTP server; 0 = no server of our own.
        worker_port: on workers, base port of a per-worker endpoint (base + worker index); 0 = off.
        host: bind address; ``""`` = all interfaces.
        slow_threshold_ms: default slow threshold, milliseconds.
        slow_thresholds: per-endpoint thresholds (exact names first, then regexes in order).
        buckets_s: bucket upper bounds from the buckets option, seconds (slow thresholds not yet added).
        max_names: cap on exported (method, name) entries.
        labels: constant labels added to every series.
        final_scrape_timeout_s: seconds to wait for a last scrape at exit.
        serve_web_ui: add ``/metrics`` to Locust's web UI when it runs.
        web_config: TLS and basic auth (:class:`~locust_metrics.security.WebConfig`), or None (plain HTTP,
            no auth).
        max_concurrent_renders: most scrape renders in flight at once (see :mod:`locust_metrics.rendering`).
        pushgateway: Pushgateway URL (may hold user info); ``""`` = push mode off.
        push_interval_s: seconds between pushes.
        push_job: ``job`` grouping label of pushes.
        push_run: ``run`` grouping label; ``""`` = the run_id of the process's first test.
    """

    port: int = DEFAULT_PORT
    worker_port: int = 0
    host: str = DEFAULT_HOST
    slow_threshold_ms: float = DEFAULT_SLOW_THRESHOLD_MS
    slow_thresholds: tuple[SlowThreshold, ...] = ()
    buckets_s: tuple[float, ...] = field(default_factory=lambda: tuple(parse_buckets(DEFAULT_BUCKETS_TEXT)))
    max_names: int = DEFAULT_MAX_NAMES
    labels: Mapping[str, str] = field(default_factory=dict)
    final_scrape_timeout_s: float = DEFAULT_FINAL_SCRAPE_TIMEOUT_S
    serve_web_ui: bool = True
    web_config: Any = None
    max_concurrent_renders: int = DEFAULT_MAX_CONCURRENT_RENDERS
    pushgateway: str = ""
    push_interval_s: float = DEFAULT_PUSH_INTERVAL_S
    push_job: str = DEFAULT_PUSH_JOB
    push_run: str = ""

    @classmethod
    def from_kwargs(
        cls,
        *,
        port: Any = DEFAULT_PORT,
        worker_port: Any = 0,
        host: Any = DEFAULT_HOST,
        slow_threshold: Any = DEFAULT_SLOW_THRESHOLD_MS,
        slow_thresholds: Any = None,
        buckets: Any = DEFAULT_BUCKETS_TEXT,
        max_names: Any = DEFAULT_MAX_NAMES,
        labels: Any = None,
        final_scrape_timeout: Any = DEFAULT_FINAL_SCRAPE_TIMEOUT_S,
        serve_web_ui: bool = True,
        web_config: Any = None,
        max_concurrent_renders: Any = DEFAULT_MAX_CONCURRENT_RENDERS,
        pushgateway: Any = "",
        push_interval: Any = DEFAULT_PUSH_INTERVAL_S,
        push_job: Any = DEFAULT_PUSH_JOB,
        push_run: Any = None,
    ) -> Settings:
        """Validate keyword options (the arguments of :func:`locust_metrics.install`).

        ``slow_threshold`` is in milliseconds, ``buckets`` in seconds, ``final_scrape_timeout`` and
        ``push_interval`` in seconds. ``web_config`` is a file path (or a mapping of its content).
        Raises :class:`OptionError` naming the option and the value.
        """
        host = "" if host in (None, "*") else str(host)
        constant_labels = parse_labels(labels, "--metrics-label")
        pushgateway = parse_pushgateway(pushgateway, "--metrics-pushgateway")
        if pushgateway:
            clash = sorted(PUSH_GROUPING_LABELS & set(constant_labels))
            if clash:
                raise _fail("--metrics-label", labels, f"{clash[0]!r} is a grouping label of --metrics-pushgateway")
        return cls(
            port=parse_port(port, "--metrics-port"),
            worker_port=parse_port(worker_port, "--metrics-worker-port"),
            host=host,
            slow_threshold_ms=parse_milliseconds(slow_threshold, "--metrics-slow-threshold"),
            slow_thresholds=tuple(parse_slow_thresholds(slow_thresholds, "--metrics-slow-threshold-for")),
            buckets_s=tuple(parse_buckets(buckets, "--metrics-buckets")),
            max_names=parse_max_names(max_names, "--metrics-max-names"),
            labels=constant_labels,
            final_scrape_timeout_s=parse_seconds(final_scrape_timeout, "--metrics-final-scrape-timeout"),
            serve_web_ui=bool(serve_web_ui),
            web_config=parse_web_config(web_config, "--metrics-web-config"),
            max_concurrent_renders=parse_max_concurrent_renders(
                max_concurrent_renders, "--metrics-max-concurrent-renders"
            ),
            pushgateway=pushgateway,
            push_interval_s=parse_positive_seconds(push_interval, "--metrics-push-interval"),
            push_job=parse_grouping_value(push_job, "--metrics-push-job"),
            push_run="" if push_run is None else parse_grouping_value(push_run, "--metrics-push-run"),
        )

    @classmethod
    def from_options(cls, parsed_options: Any, recording_only: bool = False) -> Settings:
        """Read settings from Locust's ``environment.parsed_options`` (defaults for missing attributes).

        With ``recording_only``, only the options that shape what is recorded (buckets, thresholds, the
        name cap, labels) are read; serving and pushing options keep their defaults (a worker adopting the
        master's options must not read the master's files).
        """

        def get(name: str, default: Any) -> Any:
            value = getattr(parsed_options, name, None) if parsed_options is not None else None
            return default if value is None else value

        serving: dict[str, Any] = {}
        if not recording_only:
            serving = {
                "web_config": get("metrics_web_config", None),
                "max_concurrent_renders": get("metrics_max_concurrent_renders", DEFAULT_MAX_CONCURRENT_RENDERS),
                "pushgateway": get("metrics_pushgateway", ""),
                "push_interval": get("metrics_push_interval", DEFAULT_PUSH_INTERVAL_S),
                "push_job": get("metrics_push_job", DEFAULT_PUSH_JOB),
                "push_run": get("metrics_push_run", None),
            }

        return cls.from_kwargs(
            port=get("metrics_port", DEFAULT_PORT),
            worker_port=get("metrics_worker_port", 0),
            host=get("metrics_host", DEFAULT_HOST),
            slow_threshold=get("metrics_slow_threshold", DEFAULT_SLOW_THRESHOLD_MS),
            slow_thresholds=get("metrics_slow_threshold_for", None),
            buckets=get("metrics_buckets", DEFAULT_BUCKETS_TEXT),
            max_names=get("metrics_max_names", DEFAULT_MAX_NAMES),
            labels=get("metrics_label", None),
            final_scrape_timeout=get("metrics_final_scrape_timeout", DEFAULT_FINAL_SCRAPE_TIMEOUT_S),
            **serving,
        )

    def bounds_ms(self) -> tuple[float, ...]:
        """All histogram bucket upper bounds in **milliseconds**, ascending and unique.

        The buckets option plus every slow threshold (default and per-endpoint), so that
        ``le="<threshold in seconds>"`` is an exact bound. ``+Inf`` is implicit.
        """
        bounds = {float(Decimal(repr(s)) * 1000) for s in self.buckets_s}
        bounds.add(self.slow_threshold_ms)
        bounds.update(t.ms for t in self.slow_thresholds)
        return tuple(sorted(bounds))
