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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import OptionError, env_var, invalid
from .native import DEFAULT_MAX_BUCKETS, DEFAULT_SCHEMA, SCHEMA_MAX, SCHEMA_MIN, max_relative_error
from .thresholds import DEFAULT_EXIT_CODE, Threshold, parse_thresholds, required_bounds_ms

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


def _fail(option: str, value: Any, why: str) -> OptionError:
    return invalid(option, value, why)


def parse_milliseconds(value: Any, option: str = "") -> float:
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


def parse_seconds(value: Any, option: str = "") -> float:
    """Parse a duration in **seconds** into a finite float >= 0; raises :class:`OptionError`."""
    try:
        number = float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    except ValueError:
        raise _fail(option, value, "not a number of seconds") from None
    if not math.isfinite(number) or number < 0:
        raise _fail(option, value, "must be a finite number of seconds >= 0")
    return number


def _integer(value: Any, option: str, what: str, low: int, high: int | None, out_of_range: str) -> int:
    """``value`` as an integer from ``low`` to ``high`` (None: no limit); raises :class:`OptionError`."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise _fail(option, value, f"not an integer{what}") from None
    if number < low or (high is not None and number > high):
        raise _fail(option, value, out_of_range)
    return number


def parse_port(value: Any, option: str = "") -> int:
    """Parse a TCP port: an integer from 0 (our HTTP server off) to 65535; raises :class:`OptionError`."""
    return _integer(value, option, " port number", 0, 65535, "must be between 0 (server off) and 65535")


def parse_max_names(value: Any, option: str = "") -> int:
    """Parse the cap on exported statistics entries: an integer >= 1; raises :class:`OptionError`."""
    return _integer(value, option, "", 1, None, "must be at least 1")


def parse_max_concurrent_renders(value: Any, option: str = "") -> int:
    """Parse the bound on concurrent scrape renders: an integer >= 1; raises :class:`OptionError`."""
    return _integer(value, option, "", 1, None, "must be at least 1")


def parse_buckets(value: Any, option: str = "") -> list[float]:
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


def parse_switch(value: Any, option: str = "") -> bool:
    """Parse an on/off option: a bool, or ``true``/``false``, ``on``/``off``, ``yes``/``no``, ``1``/``0`` (any
    case); raises :class:`OptionError` for anything else."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "on", "yes", "1"):
        return True
    if text in ("false", "off", "no", "0"):
        return False
    raise _fail(option, value, "must be true or false (on/off, yes/no, 1/0)")


def parse_native_schema(value: Any, option: str = "") -> int:
    """Parse a native histogram schema: an integer from -4 to 8 (bucket growth factor ``2**(2**-schema)``);
    raises :class:`OptionError`."""
    return _integer(value, option, "", -4, 8, "must be an integer from -4 (growth factor 65536) to 8 (about 1.0027)")


def parse_native_max_buckets(value: Any, option: str = "") -> int:
    """Parse the bound on populated native buckets per histogram: an integer >= 0 (0: no bound); raises
    :class:`OptionError`."""
    return _integer(value, option, "", 0, None, "must be an integer >= 0 (0: no limit)")


def parse_labels(values: Any, option: str = "") -> dict[str, str]:
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


def parse_slow_thresholds(values: Any, option: str = "") -> list[SlowThreshold]:
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


def parse_positive_seconds(value: Any, option: str = "") -> float:
    """Parse a duration in **seconds** into a finite float > 0; raises :class:`OptionError`."""
    number = parse_seconds(value, option)
    if number <= 0:
        raise _fail(option, value, "must be a finite number of seconds > 0")
    return number


def parse_pushgateway(value: Any, option: str = "") -> str:
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


def parse_grouping_value(value: Any, option: str = "") -> str:
    """Parse a push grouping-key value (job name or run id): non-empty text; raises :class:`OptionError`."""
    text = "" if value is None else str(value).strip()
    if not text:
        raise _fail(option, value, "must not be empty")
    return text


def parse_exit_code(value: Any, option: str = "") -> int:
    """Parse a process exit code: an integer from 1 to 255; raises :class:`OptionError`."""
    return _integer(value, option, " exit code", 1, 255, "must be between 1 and 255 (0 would hide a failed threshold)")


def parse_path(value: Any, option: str = "") -> str:
    """A file path to write, or ``""`` (none); the folder must exist. Raises :class:`OptionError`."""
    import os

    text = "" if value is None else str(value).strip()
    folder = os.path.dirname(os.path.abspath(text)) if text else ""
    if text and not os.path.isdir(folder):
        raise _fail(option, value, f"no such folder {folder!r}")
    return text


def parse_web_config(value: Any, option: str = "") -> Any:
    """Read and validate a web configuration file (TLS, basic auth); see :mod:`locust_metrics.security`.

    Returns a :class:`~locust_metrics.security.WebConfig`, or None for ``""``/None. A mapping (what the
    file holds) is accepted too. Raises :class:`OptionError` naming the file and the problem.
    """
    from .security import WebConfig, load_web_config, web_config_from_mapping

    if value is None or isinstance(value, WebConfig):
        return value
    if isinstance(value, Mapping):
        return web_config_from_mapping(value, "", option)
    text = str(value).strip()
    return load_web_config(text, option) if text else None


DEFAULT_MAX_CONCURRENT_RENDERS = 4
"""Default bound on scrape renders in flight at once (``--metrics-max-concurrent-renders``): one per format a
scraper can ask for (text, OpenMetrics, each gzip or not); scrapes of a format already being rendered share
that render and take no slot."""

DEFAULT_BUCKETS = ".005,.01,.025,.05,.075,.1,.15,.2,.3,.5,.75,1,1.5,2,3,5,7.5,10,15,30,60"
"""Default histogram bucket upper bounds, in **seconds** (``--metrics-buckets``)."""


@dataclass(frozen=True)
class Option:
    """The one declaration of an option: everything else (the flag on Locust's parser, its environment variable
    and ``locust.conf`` key, :class:`Settings`, :func:`locust_metrics.install`'s keyword and docstring,
    ``python -m locust_metrics`` and the README's options table) is made from it.

    Attributes:
        flag: the command-line flag, ``--metrics-*``; the environment variable is ``LOCUST_`` + the flag in
            upper case with ``_`` (:func:`~locust_metrics.errors.env_var`), the ``locust.conf`` key the flag
            without ``--``. ``""``: a keyword of :func:`~locust_metrics.install` only.
        keyword: the keyword of :func:`locust_metrics.install` (and :meth:`Settings.from_kwargs`).
        field: the :class:`Settings` attribute that holds the parsed value (set from the dataclass field).
        parse: ``parse(value, flag) -> parsed value``; raises :class:`~locust_metrics.errors.OptionError`.
        default: the default as given to ``parse`` (text or number, what a user would write).
        metavar: the value's name in help texts (``MS``, ``SECONDS``: the unit when there is one).
        help: the help text (units, meaning, default are said here).
        repeatable: may be given more than once (``action="append"``; a list in ``locust.conf``).
        keep_text: Locust's parser keeps the validated text (structured values are parsed again from it by
            :meth:`Settings.from_options`; Locust forwards its options to workers with msgpack).
        recording: shapes what is recorded (buckets, thresholds, caps, labels): a worker adopts the
            master's value of it when a test starts.
    """

    flag: str
    keyword: str
    parse: Callable[[Any, str], Any]
    default: Any
    metavar: str = ""
    help: str = ""
    repeatable: bool = False
    keep_text: bool = False
    recording: bool = False
    field: str = ""

    @property
    def env_var(self) -> str:
        """``LOCUST_METRICS_*``: the option's environment variable."""
        return env_var(self.flag) if self.flag else ""

    @property
    def conf_key(self) -> str:
        """``metrics-*``: the option's key in ``locust.conf`` / ``pyproject.toml`` ``[tool.locust]``."""
        return self.flag[2:]

    @property
    def dest(self) -> str:
        """The attribute of Locust's ``parsed_options`` that holds it (``metrics_port``)."""
        return self.flag[2:].replace("-", "_")

    @property
    def where(self) -> str:
        """``--metrics-port (LOCUST_METRICS_PORT)``, as messages name an option."""
        return f"{self.flag} ({self.env_var})" if self.flag else f"install({self.keyword}=...)"


def option(flag: str, parse: Callable[[Any, str], Any], default: Any, *, keyword: str = "", **details: Any) -> Any:
    """A :class:`Settings` field declared with its :class:`Option` (kept in the field's metadata).

    The field's default is ``parse(default, flag)``. ``keyword`` defaults to the field's name.
    """
    declared = Option(flag=flag, keyword=keyword, parse=parse, default=default, **details)
    value = _frozen(parse(default, flag))
    if isinstance(value, dict):
        return field(default_factory=lambda: dict(value), metadata={"option": declared})
    return field(default=value, metadata={"option": declared})


def _frozen(value: Any) -> Any:
    """Lists as tuples (a :class:`Settings` is immutable and hashable where it can be)."""
    return tuple(value) if isinstance(value, list) else value


def _bool(value: Any, flag: str = "") -> bool:
    """``True``/``False`` as given (a keyword of :func:`~locust_metrics.install` only)."""
    return bool(value)


def _host(value: Any, flag: str = "") -> str:
    """A bind address: ``""`` (or None, ``*``) for all interfaces."""
    return "" if value in (None, "*") else str(value)


def _optional(parse: Callable[[Any, str], Any], empty: Any) -> Callable[[Any, str], Any]:
    """``parse`` for a value that may be absent: None (or ``""``) gives ``empty``."""

    def parse_optional(value: Any, flag: str = "") -> Any:
        return empty if value is None or value == "" else parse(value, flag)

    parse_optional.__doc__ = parse.__doc__
    return parse_optional


@dataclass(frozen=True)
class Settings:
    """Validated settings of one exporter, one field per option. Build it with :meth:`from_kwargs` or
    :meth:`from_options`. Each field is declared with its :class:`Option` (:func:`option`), which gives its
    flag, environment variable, ``locust.conf`` key, help text and :func:`~locust_metrics.install` keyword.
    """

    port: int = option(
        "--metrics-port", parse_port, 9646, metavar="PORT",
        help="TCP port of our /metrics endpoint; 0 turns our own HTTP server off (the web UI's /metrics still "
        "works). Default 9646.",
    )
    worker_port: int = option(
        "--metrics-worker-port", parse_port, 0, metavar="BASE",
        help="Distributed runs: workers serve nothing by default (the master serves everything). With BASE > 0 "
        "each worker also serves its own /metrics on port BASE + its worker index. Default 0 (off).",
    )
    host: str = option(
        "--metrics-host", _host, "", metavar="HOST",
        help="Address the metrics endpoint binds to. Default: all interfaces (as the web UI); 127.0.0.1 keeps "
        "it local.",
    )
    web_config: Any = option(
        "--metrics-web-config", parse_web_config, None, metavar="FILE", keep_text=True,
        help="Web configuration file (Prometheus exporter-toolkit format): tls_server_config (cert_file, "
        "key_file, ...) for HTTPS, basic_auth_users (user: bcrypt hash) for basic auth on our endpoint and on "
        "the web UI's /metrics. Default: none (plain HTTP, no auth).",
    )
    max_concurrent_renders: int = option(
        "--metrics-max-concurrent-renders", parse_max_concurrent_renders, DEFAULT_MAX_CONCURRENT_RENDERS,
        metavar="N",
        help="Most scrape renders in flight at once, on our endpoint and the web UI's /metrics together. Scrapes "
        "of a format (text or OpenMetrics, gzip or not) that is being rendered share that render and take no "
        "slot; a scrape that needs one more gets HTTP 503 with Retry-After. Default "
        f"{DEFAULT_MAX_CONCURRENT_RENDERS}.",
    )
    slow_threshold_ms: float = option(
        "--metrics-slow-threshold", parse_milliseconds, 1000, keyword="slow_threshold", metavar="MS",
        recording=True,
        help="A request is slow when its response time is greater than this many milliseconds. Default 1000. "
        "Also a histogram bucket bound.",
    )
    slow_thresholds: tuple[SlowThreshold, ...] = option(
        "--metrics-slow-threshold-for", _optional(parse_slow_thresholds, []), None, metavar="NAME=MS",
        repeatable=True, keep_text=True, recording=True,
        help="Slow threshold in milliseconds for one request name (exact) or for names matching re:REGEX "
        "(whole name); exact names win, regexes in order. Repeatable or comma-separated, e.g. "
        "'/checkout=2000,re:/api/.*=300'. Default: none.",
    )
    buckets_s: tuple[float, ...] = option(
        "--metrics-buckets", parse_buckets, DEFAULT_BUCKETS, keyword="buckets", metavar="SECONDS,...",
        keep_text=True, recording=True,
        help=f"Histogram bucket upper bounds in seconds, ascending, unique, > 0. Default {DEFAULT_BUCKETS}. "
        "Every slow threshold is added as a bound.",
    )
    max_names: int = option(
        "--metrics-max-names", parse_max_names, 500, metavar="N", recording=True,
        help="Most distinct (method, name) entries exported; further names count under name=\"__overflow__\" "
        "(a warning is logged once; totals stay exact). Default 500.",
    )
    native_histograms: bool = option(
        "--metrics-native-histograms", parse_switch, False, metavar="BOOL", recording=True,
        help="Also record a native histogram (sparse exponential buckets, exact merges, one series) per endpoint, "
        "served in the protobuf format to a Prometheus that asks for it (2.4x: --enable-feature=native-histograms), "
        "with the classic buckets in the same message, and pushed so. Response times are bucketed in batches at "
        "each scrape (and each second): in a real run this adds about 0.3 percent of Locust's CPU over 50 request "
        "names, next to nothing over one, and 4-5 MB at 500 names; text and OpenMetrics scrapes are unchanged. "
        "Default false "
        "(docs/native-histograms.md: what to set in Prometheus, and why off by default).",
    )
    native_schema: int = option(
        "--metrics-native-schema", parse_native_schema, DEFAULT_SCHEMA, metavar="SCHEMA", recording=True,
        help=f"Resolution of native histograms: bucket growth factor 2^(2^-SCHEMA), {SCHEMA_MIN} to {SCHEMA_MAX}; "
        f"{DEFAULT_SCHEMA} (factor {1 + max_relative_error(DEFAULT_SCHEMA):.4f}, a quantile within "
        f"{100 * max_relative_error(DEFAULT_SCHEMA):.2f}%%) by default. Lowered per endpoint when its buckets exceed "
        "--metrics-native-max-buckets.",
    )
    native_max_buckets: int = option(
        "--metrics-native-max-buckets", parse_native_max_buckets, DEFAULT_MAX_BUCKETS, metavar="N", recording=True,
        help="Most native buckets per endpoint, counted from its lowest populated bucket to its highest, empty ones "
        "between included (8 bytes each; at schema 6, 64 buckets span a power of two: 640 span 1 ms to 1 s). "
        "Beyond, that endpoint's resolution is halved (schema - 1) until it fits, counts staying exact. 0: no limit. "
        f"Default {DEFAULT_MAX_BUCKETS}.",
    )
    labels: Mapping[str, str] = option(
        "--metrics-label", _optional(parse_labels, {}), None, metavar="KEY=VALUE", repeatable=True,
        keep_text=True, recording=True,
        help="Constant label on every series, e.g. env=staging. Repeatable or comma-separated. Default: none.",
    )
    final_scrape_timeout_s: float = option(
        "--metrics-final-scrape-timeout", parse_seconds, 30, keyword="final_scrape_timeout", metavar="SECONDS",
        help="At exit, if an endpoint (ours, or the web UI's /metrics while the web UI still serves) was scraped "
        "periodically (twice or more), keep serving until one more scrape is answered, at most until that "
        "scraper's next scrape is overdue (twice its interval plus 1 s after its last scrape) and at most this "
        "many seconds. Default 30.",
    )
    pushgateway: str = option(
        "--metrics-pushgateway", parse_pushgateway, "", metavar="URL",
        help="Also push the metrics to this Prometheus Pushgateway (http[s]://[user:password@]host:port): "
        "periodically, when a test stops and once more at exit. For runs no Prometheus scrapes. Default: off.",
    )
    push_interval_s: float = option(
        "--metrics-push-interval", parse_positive_seconds, 10, keyword="push_interval", metavar="SECONDS",
        help="Seconds between two pushes. Default 10.",
    )
    push_job: str = option(
        "--metrics-push-job", parse_grouping_value, "locust", metavar="NAME",
        help="The job label of pushed metrics (the Pushgateway group's job). Default 'locust'.",
    )
    push_run: str = option(
        "--metrics-push-run", _optional(parse_grouping_value, ""), None, metavar="ID",
        help="The run label of the Pushgateway group, e.g. a CI pipeline id. Default: the run_id of the "
        "process's first test (the run_id label of the test's info series).",
    )
    thresholds: tuple[Threshold, ...] = option(
        "--metrics-threshold", parse_thresholds, None, metavar="EXPR", repeatable=True, keep_text=True,
        recording=True,
        help="Pass/fail threshold (SLO) of the run, [SELECTOR:]STAT OP VALUE[ abort[ after DURATION]], e.g. "
        "'p95<500ms', 'fail_ratio<1%%', '/checkout:p99<=2s abort after 30s', 'each:slow_ratio<5%%'. Verdicts are "
        "exact (counted, not interpolated); a failed one sets the exit code, see README 'Pass/fail thresholds'. "
        "Repeatable or comma-separated. Default: none.",
    )
    threshold_exit_code: int = option(
        "--metrics-threshold-exit-code", parse_exit_code, DEFAULT_EXIT_CODE, metavar="CODE",
        help=f"Exit code of a run whose thresholds failed, unless Locust's own code is already non-zero. "
        f"Default {DEFAULT_EXIT_CODE}.",
    )
    threshold_junit: str = option(
        "--metrics-threshold-junit", parse_path, "", metavar="FILE",
        help="Write the final threshold verdicts to FILE as a JUnit XML report (one test case per threshold, per "
        "endpoint for each:), for GitLab, Jenkins and GitHub. Default: none.",
    )
    serve_web_ui: bool = option(
        "", _bool, True, help="Serve /metrics on Locust's web UI too, when it runs. Default True.",
    )

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> Settings:
        """Validate keyword options (the arguments of :func:`locust_metrics.install`; see :data:`OPTIONS`).

        Missing keywords take their defaults; ``None`` means the default too. Raises :class:`OptionError`
        naming the option and the value, and ``TypeError`` for an unknown keyword.
        """
        unknown = sorted(set(kwargs) - set(BY_KEYWORD))
        if unknown:
            raise TypeError(f"unknown locust-metrics option(s) {', '.join(unknown)}; known: {', '.join(BY_KEYWORD)}")
        values = {}
        for declared in OPTIONS:
            value = kwargs.get(declared.keyword)
            value = declared.default if value is None else value
            values[declared.field] = _frozen(declared.parse(value, declared.flag))
        settings = cls(**values)
        if settings.pushgateway:
            clash = sorted(PUSH_GROUPING_LABELS & set(settings.labels))
            if clash:
                raise _fail(BY_KEYWORD["labels"].flag, kwargs.get("labels"),
                            f"{clash[0]!r} is a grouping label of {BY_KEYWORD['pushgateway'].flag}")
        return settings

    @classmethod
    def from_options(cls, parsed_options: Any, recording_only: bool = False) -> Settings:
        """Read settings from Locust's ``environment.parsed_options`` (defaults for missing attributes).

        With ``recording_only``, only the options that shape what is recorded (:attr:`Option.recording`) are
        read; the others keep their defaults (a worker adopting the master's options must not read the
        master's files). Raises :class:`OptionError`.
        """
        kwargs = {}
        for declared in OPTIONS:
            if declared.flag and (declared.recording or not recording_only):
                kwargs[declared.keyword] = getattr(parsed_options, declared.dest, None)
        return cls.from_kwargs(**kwargs)

    def bounds_ms(self) -> tuple[float, ...]:
        """All histogram bucket upper bounds in **milliseconds**, ascending and unique.

        The buckets option plus every slow threshold (default and per-endpoint), so that
        ``le="<threshold in seconds>"`` is an exact bound. ``+Inf`` is implicit.
        """
        bounds = {float(Decimal(repr(s)) * 1000) for s in self.buckets_s}
        bounds.add(self.slow_threshold_ms)
        bounds.update(t.ms for t in self.slow_thresholds)
        bounds.update(bound for bound, _ in required_bounds_ms(self.thresholds))
        return tuple(sorted(bounds))

    def native(self) -> tuple[int, int] | None:
        """What the recorder keeps of native histograms: ``(schema, max buckets)``, or None when they are off."""
        return (self.native_schema, self.native_max_buckets) if self.native_histograms else None

    def hidden_bounds_ms(self) -> frozenset[float]:
        """Bounds recorded but not exported (``le``): the float just below a threshold time ``T`` that a ``<``
        threshold counts up to (``t < T`` is ``t <= nextafter(T, 0)``); see
        :func:`~locust_metrics.thresholds.required_bounds_ms`. A bound that is exported for another reason
        (a bucket, a slow threshold) is not hidden."""
        hidden = {bound for bound, exported in required_bounds_ms(self.thresholds) if not exported}
        shown = {float(Decimal(repr(s)) * 1000) for s in self.buckets_s} | {self.slow_threshold_ms}
        shown.update(t.ms for t in self.slow_thresholds)
        shown.update(bound for bound, exported in required_bounds_ms(self.thresholds) if exported)
        return frozenset(hidden - shown)


def _declarations() -> tuple[Option, ...]:
    declared = []
    for settings_field in fields(Settings):
        item = settings_field.metadata["option"]
        declared.append(replace(item, field=settings_field.name, keyword=item.keyword or settings_field.name))
    return tuple(declared)


OPTIONS: tuple[Option, ...] = _declarations()
"""Every option, in the order of :class:`Settings` (and of ``python -m locust_metrics`` and the README)."""

BY_KEYWORD: dict[str, Option] = {o.keyword: o for o in OPTIONS}
""":data:`OPTIONS` by :func:`~locust_metrics.install` keyword."""


def flag(keyword: str) -> str:
    """The flag of the option whose :func:`~locust_metrics.install` keyword is ``keyword`` (for messages)."""
    return BY_KEYWORD[keyword].flag


def where(keyword: str) -> str:
    """``--metrics-port (LOCUST_METRICS_PORT)``: how messages name the option of ``keyword``."""
    return BY_KEYWORD[keyword].where


def _argparse_type(declared: Option) -> Callable[[str], Any]:
    """``declared.parse`` as an argparse ``type=`` callable.

    An invalid value raises ``argparse.ArgumentTypeError`` whose message names the option and the value,
    so Locust exits with a usage error before anything starts. With ``keep_text`` the validated text is
    stored (structured options are parsed again by :meth:`Settings.from_options`), else the parsed value.
    """

    def convert(text: str) -> Any:
        try:
            parsed = declared.parse(text, declared.flag)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text if declared.keep_text else parsed

    convert.__name__ = declared.dest
    return convert


OPTION_PREFIX = "metrics-"
"""Every option of ours is ``--metrics-*``: config-file keys ``metrics-*``, env vars ``LOCUST_METRICS_*``."""

GROUP_TITLE = "locust-metrics (Prometheus)"
"""The title of our group of options in Locust's parser (and in ``python -m locust_metrics``)."""


class ConfigFileKeysKept:
    """Wraps Locust's config-file parser so that ``metrics-*`` keys of a ``locust.conf`` are never dropped.

    Locust 2.32 up to 2.42.2 try every config file as TOML first, and a ``locust.conf`` that happens to be
    valid TOML (``metrics-slow-threshold = 2``, ``metrics-max-names = 0``: numbers only) parses "successfully"
    into nothing, since it has no ``[tool.locust]`` table: every setting in it is silently ignored (Locust
    2.42.3 fixed this by falling back to its ``key = value`` parser for files not named ``*.toml``). This
    wrapper asks Locust's parser first; for a file not named ``*.toml`` it also reads the file with
    configargparse's ``key = value`` parser (the one Locust falls back to) and adds the ``metrics-*`` keys
    that Locust's parser left out. It changes nothing on a Locust that reads the file right, and nothing
    for Locust's own options. Values then go through our argparse types: a bad one fails before the test
    starts, naming the option and the value.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self) -> ConfigFileKeysKept:  # configargparse may instantiate "the class" it was given
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def parse(self, stream: Any) -> dict[str, Any]:
        """Locust's parse of ``stream``, plus the ``metrics-*`` keys that only the ``key = value`` parser sees."""
        result: dict[str, Any] = self.inner.parse(stream)
        name = str(getattr(stream, "name", ""))
        if name.endswith(".toml") or not hasattr(stream, "seek"):
            return result
        import configargparse

        stream.seek(0)
        plain = configargparse.DefaultConfigFileParser().parse(stream)
        missing = {k: v for k, v in plain.items() if k.startswith(OPTION_PREFIX) and k not in result}
        if not missing:
            return result
        merged = dict(result)
        merged.update(missing)
        return merged


def keep_config_file_keys(parser: Any) -> None:
    """Make ``parser`` (Locust's) read every ``metrics-*`` key of a config file; see :class:`ConfigFileKeysKept`."""
    inner = getattr(parser, "_config_file_parser", None)
    if inner is not None and not isinstance(inner, ConfigFileKeysKept):
        parser._config_file_parser = ConfigFileKeysKept(inner)


def add_arguments(parser: Any) -> None:
    """Add the ``--metrics-*`` options (:data:`OPTIONS`) to Locust's argument parser (``init_command_line_parser``).

    Being Locust options, they also read ``LOCUST_METRICS_*`` environment variables and ``metrics-*``
    config-file keys (on every supported Locust: see :class:`ConfigFileKeysKept`). Locust prints
    ``locust --help`` before it imports the locustfile, so they are not listed there;
    ``python -m locust_metrics`` lists them (group :data:`GROUP_TITLE`). Adding them twice adds nothing.
    """
    keep_config_file_keys(parser)
    first = OPTIONS[0].flag
    if any(first in action.option_strings for action in getattr(parser, "_actions", [])):
        return  # already added (a second import, or a second parser hook)
    group = parser.add_argument_group(
        GROUP_TITLE, "Live Prometheus metrics of the test on http://HOST:PORT/metrics (and /metrics on the web UI)."
    )
    for declared in OPTIONS:
        if not declared.flag:
            continue
        group.add_argument(
            declared.flag,
            type=_argparse_type(declared),
            default=_parser_default(declared),
            env_var=declared.env_var,
            metavar=declared.metavar or None,
            help=declared.help,
            **({"action": "append"} if declared.repeatable else {}),
        )


def _parser_default(declared: Option) -> Any:
    """The default Locust's parser stores: the text of structured options, else the parsed value (a plain
    ``int``/``float``/``str``: Locust forwards its options to workers with msgpack); None when absent."""
    if declared.repeatable or declared.default is None:
        return None
    return declared.default if declared.keep_text else declared.parse(declared.default, declared.flag)


def options_table() -> str:
    """The README's options table (Markdown): flag, environment variable and ``locust.conf`` key, default,
    meaning; one row per command-line option, from :data:`OPTIONS` (a test keeps the README equal to it)."""
    rows = ["| flag | env var / `locust.conf` key | meaning |", "|---|---|---|"]
    for declared in OPTIONS:
        if declared.flag:
            value = f" {declared.metavar}" if declared.metavar else ""
            text = declared.help.replace("%%", "%").replace("|", "\\|")
            rows.append(f"| `{declared.flag}{value}` | `{declared.env_var}` / `{declared.conf_key}` | {text} |")
    return "\n".join(rows) + "\n"


def keywords_doc() -> str:
    """The keyword options of :func:`locust_metrics.install`, one bullet each, from :data:`OPTIONS`."""
    lines = []
    for declared in OPTIONS:
        source = f" (``{declared.flag}``)" if declared.flag else ""
        lines.append(f"* ``{declared.keyword}``{source}: {declared.help.replace('%%', '%')}")
    return "\n".join(lines)
