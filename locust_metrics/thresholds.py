"""Pass/fail thresholds (SLOs): their grammar, the histogram bounds they need, and exact verdicts.

Pure logic, no Locust and no I/O: :func:`parse_threshold` turns the text of ``--metrics-threshold`` into a
:class:`Threshold`; :func:`required_bounds_ms` lists the histogram bounds the recorder must keep so that
verdicts are counts; :func:`evaluate` (or :func:`iter_verdicts`, one at a time) decides a threshold on
per-endpoint data (:class:`EndpointData`) and returns :class:`Verdict` objects, which :func:`summary_lines`, :func:`abort_message`, :func:`exit_code` and
``threshold_reports.py`` (JUnit, Prometheus alert rules) present.

Grammar
=======

One threshold is::

    EXPR      = [SELECTOR ":"] STAT OP VALUE [" abort" [" after " DURATION]]
    STAT      = "p" NUMBER | "p(" NUMBER ")" | "avg" | "max" | "fail_ratio" | "slow_ratio"
              | "rps" | "requests" | "failures"
    OP        = "<" | "<=" | ">" | ">="
    SELECTOR  = "each" | ["each "] [METHOD " "] (NAME | "re:" REGEX)
    METHOD    = an upper-case word: [A-Z][A-Z0-9_-]*

Parsed from the right, in this order:

1. Whitespace around the whole text is dropped; what remains is the threshold's ``text`` (the
   ``threshold`` label of the exported series).
2. ``abort`` or ``abort after DURATION`` at the end (separated by whitespace) is taken off. ``DURATION`` is
   Locust's ``--run-time`` format: ``30s``, ``5m``, ``1h30m``, ``1m30.5s``, or a bare number of
   **seconds**. ``after`` without ``abort``, or ``abort after`` without a valid duration, is an error.
3. The rest is split at its **last** ``:``. Statistics, operators and values never contain ``:``, so a
   name or regex may: ``re:/api/(?:a|b):p95<500`` selects ``re:/api/(?:a|b)``. No ``:`` means no selector.
4. The condition ``STAT OP VALUE`` (whitespace allowed around ``OP``; none inside ``VALUE``) is matched.
   ``=``, ``==``, ``!=``, ``=<`` and ``=>`` are rejected by name.
5. The selector (whitespace around it dropped):

   * empty (no ``:``): all requests together, Locust's "Aggregated" row;
   * ``each`` alone: every endpoint (``(method, name)`` statistics entry) separately;
   * ``each `` followed by a selector below: every endpoint that it matches, separately;
   * ``METHOD NAME``: a first word of upper-case letters, digits, ``_`` or ``-``, starting with a letter,
     followed by at least one space and more text, is a method (Locust's request type, matched exactly):
     ``POST /api/orders`` is ``method="POST"``, ``name="/api/orders"``. A name that itself starts with such a
     word and a space (``API v2``) is selected with a regex: ``re:API v2``.
   * ``re:REGEX``: names that the Python regular expression matches **whole** (``re.fullmatch``), as
     Prometheus matchers do; ``METHOD re:REGEX`` restricts the method too;
   * anything else is one request name, matched exactly (it may contain spaces and ``:``; it cannot start
     or end with whitespace, nor be the word ``each``: use ``re:`` for those).

   A selector that is not ``each`` pools the matching endpoints into one verdict.

Values, and the units they are kept in (``Threshold.value``):

* ``pNN``, ``avg``, ``max``: a time, ``500ms``, ``2s``, ``0.25s`` or a bare number of **milliseconds**
  (as Locust's response times); kept in **milliseconds**, as the float that ``float(Decimal(text))``
  gives (``0.3s`` is exactly ``300.0``), the same way ``Settings.bounds_ms()`` turns buckets into bounds.
* ``fail_ratio``, ``slow_ratio``: a fraction (``0.01``) or a percentage (``1%``), at most 1 (100%); kept
  as a **fraction** (``1%`` is ``0.01``).
* ``rps``: requests per second, a number; ``requests`` and ``failures``: a number of requests.

Numbers are decimal, ``>= 0``: ``500``, ``0.5``, ``.5`` (no sign, exponent, ``inf`` or ``nan``).
Percentiles: ``p50``, ``p95``, ``p99.9``, ``p(95)`` (k6's spelling), with ``0 < NN <= 100``; ``p100`` is
the maximum (the same verdict as ``max``). Statistic names are lower-case.

``abort`` is not allowed on ``requests``/``failures`` with ``>`` or ``>=``: those counts only grow, so
such a threshold can fail only at the end of the test, never "on the data so far".

Errors: every malformed expression, unknown statistic or operator, value without a valid unit, negative
value, ratio above 100%, percentile outside ``(0, 100]``, bad regular expression or bad duration raises
:class:`~locust_metrics.errors.OptionError` naming the option (flag and environment variable), the value
and the problem.

Exact verdicts
==============

``pNN OP T`` uses the nearest-rank percentile of the ``n`` response times recorded: the ``k``-th smallest,
``k = ceil(q * n)`` (computed exactly, with ``q`` the fraction of the decimal text: ``p99.9`` is
``999/1000``). So ``pNN <= T`` holds exactly when at least ``k`` requests took ``t <= T`` and ``pNN < T``
exactly when at least ``k`` took ``t < T``; ``>`` and ``>=`` are their negations. ``max OP T`` is the same
with ``k = n``. Both are decided from bucket counts, never from an interpolated percentile: ``T`` is a
histogram bound, and for ``<`` and ``>=`` so is the float just below it (see :func:`required_bounds_ms`).
``avg``, ``fail_ratio``, ``slow_ratio``, ``rps``, ``requests`` and ``failures`` are compared as exact
rationals of the recorded integer counts and float sums (``fractions.Fraction``), against the exact value
of the text (``1%`` is exactly ``1/100``).

Which requests count, as in Locust's statistics: percentiles, ``max``, ``avg`` and ``slow_ratio`` are over
the requests **with a response time** (the histogram's ``_count``); ``fail_ratio`` is failures over all
completed requests; ``rps`` is all completed requests over the test's duration.

No data
-------

A statistic that has no value (a percentile, ``max``, ``avg`` or ``slow_ratio`` over zero requests with a
response time; ``fail_ratio`` over zero requests; ``rps`` over a zero duration), or a selector that matches
no endpoint at all, gives a verdict with ``no_data=True`` and ``passed=False``: a threshold that was never
tested does not pass a CI run, so a typo in a name fails loudly ("no endpoint matched ...") instead of
passing silently. ``requests`` and ``failures`` over the "all requests" selector are 0, a value, and are
compared. While a test runs, a no-data verdict never aborts it (:meth:`Verdict.aborts`): at the start
there is simply no data yet.
"""

from __future__ import annotations

import math
import operator
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from itertools import accumulate
from typing import Any

from .errors import OptionError, invalid

DEFAULT_EXIT_CODE = 3
"""Exit code of a run with a failed threshold (as locust-plugins' checks), unless it already has one."""

ALL, NAMES, EACH = "all", "names", "each"
"""Selector kinds: all requests together; the matching endpoints together; each matching endpoint."""

PERCENTILE = "percentile"
TIME_STATS = frozenset({PERCENTILE, "avg", "max"})
RATIO_STATS = frozenset({"fail_ratio", "slow_ratio"})
COUNT_STATS = frozenset({"requests", "failures"})
STATS = TIME_STATS | RATIO_STATS | COUNT_STATS | {"rps"}
"""Statistic kinds (``Threshold.stat``); a ``pNN`` statistic has kind :data:`PERCENTILE`."""

OPERATORS: Mapping[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}
"""The operator that holds exactly when the key does not (the failing condition)."""

_NUMBER = r"(?:\d+(?:\.\d+)?|\.\d+)"
_CONDITION_RE = re.compile(r"^(?P<stat>[^<>=!]*?)\s*(?P<op><=|>=|=<|=>|==|!=|<|>|=)\s*(?P<value>.*)$", re.DOTALL)
_PERCENTILE_RE = re.compile(rf"^p(?:(?P<plain>{_NUMBER})|\((?P<k6>{_NUMBER})\))$")
_TIME_RE = re.compile(rf"^(?P<number>{_NUMBER})(?P<unit>ms|s)?$")
_RATIO_RE = re.compile(rf"^(?P<number>{_NUMBER})(?P<percent>%)?$")
_PLAIN_RE = re.compile(rf"^{_NUMBER}$")
_DURATION_RE = re.compile(rf"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>{_NUMBER})s)?$")
_ABORT_RE = re.compile(r"(?:^|\s)abort(?:\s+(?P<keyword>after)(?:\s+(?P<after>\S+))?)?$")
_METHOD_RE = re.compile(r"^(?P<method>[A-Z][A-Z0-9_-]*) +(?P<rest>\S.*)$", re.DOTALL)
_REGEX_PREFIX = "re:"
_EACH = "each"


def _error(option: str, value: Any, why: str) -> OptionError:
    """The error for a bad threshold: option, env var, value, problem (:func:`~locust_metrics.errors.invalid`)."""
    return invalid(option, value, why)


# ---------------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class Selector:
    """Which requests a threshold is about.

    Attributes:
        kind: :data:`ALL` (every request together), :data:`NAMES` (the matching endpoints together) or
            :data:`EACH` (every matching endpoint separately).
        method: Locust's request type to match exactly, or None for any.
        name: a request name to match exactly, or None.
        regex: a Python regular expression the whole name must match, or None. At most one of ``name``
            and ``regex`` is set; for :data:`EACH` neither may be (every endpoint).
        text: the selector as written (``""`` for :data:`ALL`).
        compiled: ``regex`` compiled (set from it; a bad one raises ``re.error``).
    """

    kind: str = ALL
    method: str | None = None
    name: str | None = None
    regex: str | None = None
    text: str = ""
    compiled: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.regex is not None:  # re.error for a bad one (parse_threshold reports it as an OptionError)
            object.__setattr__(self, "compiled", re.compile(self.regex))

    def matches(self, method: str, name: str) -> bool:
        """Whether the endpoint ``(method, name)`` is selected."""
        if self.method is not None and method != self.method:
            return False
        if self.name is not None:
            return name == self.name
        if self.compiled is not None:
            return self.compiled.fullmatch(name) is not None
        return True

    @property
    def filters(self) -> bool:
        """Whether the selector names a method, a name or a regex (``each`` alone and ``all`` do not)."""
        return self.method is not None or self.name is not None or self.regex is not None

    def describe(self) -> str:
        """The selector for messages: ``all requests``, ``each endpoint``, else the text quoted."""
        if self.kind == ALL:
            return "all requests"
        return repr(self.text) if self.filters else "each endpoint"


@dataclass(frozen=True)
class Threshold:
    """One parsed ``--metrics-threshold`` expression. Build it with :func:`parse_threshold`.

    Attributes:
        text: the expression as written (outer whitespace dropped): the ``threshold`` label.
        selector: which requests (:class:`Selector`).
        stat: the statistic's kind, one of :data:`STATS` (``"percentile"`` for ``pNN``).
        stat_text: the statistic as written: ``"p95"``, ``"p(99.9)"``, ``"avg"``...
        quantile: for ``pNN`` the exact fraction (``p99.9``: ``Fraction(999, 1000)``), else None.
        op: ``"<"``, ``"<="``, ``">"`` or ``">="``.
        value: the limit in internal units: **milliseconds** for ``pNN``/``avg``/``max``, a **fraction**
            for ``fail_ratio``/``slow_ratio``, **requests per second** for ``rps``, a count of requests for
            ``requests``/``failures``.
        exact: the limit as an exact rational in the same units, the value comparisons use: for times the
            float ``value`` itself (response times are floats), else the decimal text (``1%``: 1/100).
        value_text: the value as written (``"500ms"``, ``"1%"``), for messages.
        abort: stop the test as soon as the threshold fails on the data so far.
        abort_after_s: seconds after the test's start before an abort is allowed (0 = at once).
    """

    text: str
    selector: Selector
    stat: str
    stat_text: str
    quantile: Fraction | None
    op: str
    value: float
    exact: Fraction
    value_text: str
    abort: bool = False
    abort_after_s: float = 0.0

    def __str__(self) -> str:
        return self.text

    @property
    def is_time(self) -> bool:
        """True for ``pNN``, ``avg`` and ``max`` (value in milliseconds)."""
        return self.stat in TIME_STATS

    @property
    def unit(self) -> str:
        """The base unit of observed values (:attr:`Verdict.observed`): ``"seconds"``, ``"ratio"``,
        ``"requests/s"`` or ``"requests"``."""
        if self.is_time:
            return "seconds"
        if self.stat in RATIO_STATS:
            return "ratio"
        return "requests/s" if self.stat == "rps" else "requests"

    @property
    def bound_ms(self) -> float | None:
        """For ``pNN`` and ``max``: the histogram bound the verdict counts at (ms); else None."""
        return self.value if self.stat in (PERCENTILE, "max") else None


# ---------------------------------------------------------------------------------------------------- parsing
def parse_threshold(text: Any, option: str = "") -> Threshold:
    """Parse one threshold expression (grammar: this module's docstring).

    Args:
        text: the expression, e.g. ``"p95<500ms"``, ``"/checkout:p99<=2s abort after 30s"``,
            ``"each re:/api/.*:slow_ratio<5%"``. A :class:`Threshold` is returned as it is.
        option: the option named in errors.

    Returns:
        A :class:`Threshold`.

    Raises:
        OptionError: naming ``option`` and ``text``, for anything the grammar does not accept.
    """
    if isinstance(text, Threshold):
        return text
    if not isinstance(text, str):
        raise _error(option, text, "expected a threshold expression such as p95<500ms")
    written = text.strip()
    if not written:
        raise _error(option, text, "empty threshold; expected [SELECTOR:]STAT OP VALUE, e.g. p95<500ms")

    def fail(why: str) -> OptionError:
        return _error(option, written, why)

    rest, abort, after_s = _take_abort(written, fail)
    selector_text, colon, condition = rest.rpartition(":")
    if not colon:
        selector_text = ""
    elif not selector_text.strip():
        raise fail("empty selector before ':'; leave out the ':' for all requests")
    match = _CONDITION_RE.match(condition.strip())
    if match is None:
        raise fail("no comparison: expected [SELECTOR:]STAT OP VALUE with OP one of <, <=, >, >=, e.g. p95<500ms")
    stat_text, op, value_text = match["stat"], match["op"], match["value"].strip()
    if op not in OPERATORS:
        raise fail(f"unsupported operator {op!r}; use <, <=, > or >=")
    if not stat_text:
        raise fail("missing statistic before the operator, e.g. p95<500ms")
    if not value_text:
        raise fail(f"missing value after {op!r}")
    if any(c.isspace() for c in value_text):
        first, _, extra = value_text.partition(" ")
        raise fail(f"unexpected text after the value {first!r}: {extra.strip()!r} (only ' abort' or "
                   "' abort after DURATION' may follow)")
    stat, quantile = _parse_stat(stat_text, fail, has_selector=bool(colon))
    value, exact = _parse_value(stat, value_text, fail)
    if abort and stat in COUNT_STATS and op in (">", ">="):
        raise fail(f"'abort' cannot apply to {stat}{op}...: the count only grows, so it can fail only at the end")
    selector = _parse_selector(selector_text.strip(), fail) if colon else Selector()
    return Threshold(
        text=written, selector=selector, stat=stat, stat_text=stat_text, quantile=quantile, op=op, value=value,
        exact=exact, value_text=value_text, abort=abort, abort_after_s=after_s,
    )


def _take_abort(text: str, fail: Callable[[str], OptionError]) -> tuple[str, bool, float]:
    """``(text without its abort clause, abort, delay seconds)``."""
    match = _ABORT_RE.search(text)
    if match is None:
        if re.search(r"\safter(?:\s+\S+)?$", text):
            raise fail("'after DURATION' needs 'abort' before it: ... abort after 30s")
        return text, False, 0.0
    after = 0.0
    if match["keyword"]:
        if match["after"] is None:
            raise fail("'abort after' needs a duration, e.g. abort after 30s")
        after = parse_duration(match["after"], fail)
    rest = text[: match.start()].rstrip()
    if not rest:
        raise fail("nothing before 'abort'; expected [SELECTOR:]STAT OP VALUE abort")
    return rest, True, after


def parse_duration(text: str, fail: Callable[[str], OptionError] | None = None) -> float:
    """Seconds of a Locust-style duration: ``30s``, ``5m``, ``1h30m``, ``1m30.5s`` or a bare number of
    seconds. Raises what ``fail(why)`` returns (an :class:`OptionError` by default)."""
    fail = fail or (lambda why: _error("", text, why))
    if _PLAIN_RE.match(text):
        return float(Decimal(text))
    match = _DURATION_RE.match(text)
    if not text or match is None or not any(match.groupdict().values()):
        raise fail(f"bad duration {text!r}: use e.g. 30s, 5m, 1h30m or a number of seconds")
    h, m, s = (Decimal(match[g] or 0) for g in "hms")
    return float(h * 3600 + m * 60 + s)


def _parse_stat(text: str, fail: Callable[[str], OptionError], has_selector: bool) -> tuple[str, Fraction | None]:
    if text in STATS and text != PERCENTILE:
        return text, None
    match = _PERCENTILE_RE.match(text)
    if match is not None:
        number = match["plain"] or match["k6"]
        percent = Fraction(Decimal(number))
        if not 0 < percent <= 100:
            raise fail(f"percentile {text!r} out of range: use p0 < pNN <= p100 (p100 is max)")
        return PERCENTILE, percent / 100
    hint = "" if has_selector or " " not in text else " (a selector is followed by ':', e.g. /checkout:p95<500ms)"
    raise fail(f"unknown statistic {text!r}: use pNN (p95, p99.9), avg, max, fail_ratio, slow_ratio, rps, "
               f"requests or failures{hint}")


def _parse_value(stat: str, text: str, fail: Callable[[str], OptionError]) -> tuple[float, Fraction]:
    if text.startswith("-"):
        raise fail(f"negative value {text!r}: limits are >= 0")
    if stat in TIME_STATS:
        match = _TIME_RE.match(text)
        if match is None:
            raise fail(f"{text!r} is not a time: use e.g. 500ms, 2s, or a bare number of milliseconds")
        ms = Decimal(match["number"]) * (1000 if match["unit"] == "s" else 1)
        value = float(ms)
        if not math.isfinite(value):
            raise fail(f"{text!r} is too large")
        return value, Fraction(value)
    if stat in RATIO_STATS:
        match = _RATIO_RE.match(text)
        if match is None:
            raise fail(f"{text!r} is not a ratio: use a fraction (0.01) or a percentage (1%)")
        ratio = Fraction(Decimal(match["number"])) / (100 if match["percent"] else 1)
        if ratio > 1:
            hint = "" if match["percent"] else f"; for a percentage write {text}%"
            raise fail(f"ratio {text!r} is above 100%{hint}")
        return float(ratio), ratio
    if not _PLAIN_RE.match(text):
        what = "requests per second" if stat == "rps" else "requests"
        raise fail(f"{text!r} is not a number of {what} (no unit)")
    number = Fraction(Decimal(text))
    return float(number), number


def _parse_selector(text: str, fail: Callable[[str], OptionError]) -> Selector:
    kind = NAMES
    rest = text
    if text == _EACH:
        return Selector(kind=EACH, text=text)
    if text.startswith(_EACH) and text[len(_EACH)].isspace():
        kind, rest = EACH, text[len(_EACH):].strip()
    method = None
    match = _METHOD_RE.match(rest)
    if match is not None:
        method, rest = match["method"], match["rest"].strip()
    if rest.startswith(_REGEX_PREFIX):
        pattern = rest[len(_REGEX_PREFIX):]
        if not pattern:
            raise fail("empty regular expression after 're:'")
        try:
            return Selector(kind=kind, method=method, regex=pattern, text=text)
        except re.error as exc:
            raise fail(f"bad regular expression {pattern!r}: {exc}") from None
    return Selector(kind=kind, method=method, name=rest, text=text)


def split_thresholds(text: str) -> list[str]:
    """Split a comma- (or newline-) separated list of expressions, as an environment variable or a
    ``locust.conf`` value gives them, keeping commas that belong to a name or regex.

    A piece is joined to the next one while it does not end in a complete condition (``STAT OP VALUE``,
    optionally ``abort [after DURATION]``): ``re:/a{1,3}:p95<5, fail_ratio<1%`` gives two expressions.
    Empty pieces are dropped. The pieces are not validated here (:func:`parse_threshold` does that).
    """
    pieces = [p for line in text.splitlines() for p in line.split(",")]
    result: list[str] = []
    pending = ""
    for piece in pieces:
        if not pending.strip() and not piece.strip():
            pending = ""
            continue
        pending = piece if not pending else pending + "," + piece
        if _ends_in_condition(pending):
            result.append(pending.strip())
            pending = ""
    if pending.strip():
        result.append(pending.strip())
    return [r for r in result if r]


_TAIL_RE = re.compile(
    rf"(?:^|:)\s*(?:p{_NUMBER}|p\({_NUMBER}\)|[a-z_]+)\s*(?:<=|>=|<|>)\s*{_NUMBER}(?:ms|s|%)?"
    r"(?:\s+abort(?:\s+after\s+\S+)?)?\s*$"
)


def _ends_in_condition(text: str) -> bool:
    return _TAIL_RE.search(text) is not None


def parse_thresholds(values: Any, option: str = "") -> list[Threshold]:
    """Parse thresholds from an option's value: None, one string (comma- or newline-separated expressions,
    see :func:`split_thresholds`), or an iterable of such strings and :class:`Threshold` objects (the
    command line's repeated flags, a ``locust.conf`` list, ``install(thresholds=[...])``).

    Returns the thresholds in order, without repeats of the same text (each text is one exported series).
    Raises :class:`OptionError` naming ``option`` and the bad expression.
    """
    if values is None:
        return []
    items = [values] if isinstance(values, (str, Threshold)) else values
    try:
        items = list(items)
    except TypeError:
        raise _error(option, values, "expected threshold expressions such as p95<500ms") from None
    result: list[Threshold] = []
    seen: set[str] = set()
    for item in items:
        for one in [item] if isinstance(item, Threshold) else split_thresholds(item) if isinstance(item, str) \
                else [item]:
            threshold = parse_threshold(one, option)
            if threshold.text not in seen:
                seen.add(threshold.text)
                result.append(threshold)
    return result


# ---------------------------------------------------------------------------------------------------- bounds
def strict_bound_ms(bound_ms: float) -> float | None:
    """The bound that counts ``t < bound_ms`` as ``t <= strict_bound_ms(bound_ms)``: the largest float
    below it, ``math.nextafter(bound_ms, 0)``; None for 0 (no recorded time is below 0)."""
    return math.nextafter(bound_ms, 0.0) if bound_ms > 0 else None


def required_bounds_ms(thresholds: Iterable[Threshold]) -> list[tuple[float, bool]]:
    """The histogram bounds (ms) that make the verdicts of ``thresholds`` exact counts.

    Every ``pNN OP T`` and ``max OP T`` needs ``T`` as a bound (``exported=True``: ``le`` of
    ``locust_request_duration_seconds``, which the alert rules use too). ``<`` and ``>=`` (the negation of
    ``<``) also need ``math.nextafter(T, 0)``, the largest float below ``T``, as an internal bound
    (``exported=False``): a bucket counts ``t <= bound`` (the recorder's ``bisect_left``), and for floats
    ``t < T`` holds exactly when ``t <= nextafter(T, 0)``, because no float lies between the two. So
    ``count(t < T)`` is the cumulative count at that bound. Its bucket holds only the requests that took
    exactly ``T``, so exporting it would add a useless ``le`` that no one can spell; the recorder keeps it
    and the exposition folds it into the next bound. ``T = 0`` needs no second bound (no time is < 0).

    Returns:
        ``[(bound_ms, exported)]``, ascending, each bound once (exported if any threshold exports it).
    """
    bounds: dict[float, bool] = {}
    for threshold in thresholds:
        bound = threshold.bound_ms
        if bound is None:
            continue
        bounds[bound] = True
        if threshold.op in ("<", ">="):
            strict = strict_bound_ms(bound)
            if strict is not None:
                bounds.setdefault(strict, False)
    return sorted(bounds.items())


# ---------------------------------------------------------------------------------------------------- input
@dataclass(frozen=True)
class EndpointData:
    """What a verdict reads of one endpoint (one Locust statistics entry), at one moment.

    Attributes:
        method, name: Locust's request type and request name.
        bounds_ms: histogram bucket upper bounds, **milliseconds**, ascending (``+Inf`` implicit).
        buckets: **non-cumulative** counts, ``len(bounds_ms) + 1`` of them (the last is ``+Inf``):
            ``buckets[i]`` counts response times ``t`` with ``bounds_ms[i-1] < t <= bounds_ms[i]``.
        requests: completed requests, success or failure, with or without a response time.
        failures: failed requests.
        slow: requests slower than the endpoint's slow threshold.
        sum_ms: sum of the response times in the histogram, milliseconds.
        max_ms: the largest response time, if the recorder tracks it exactly; None if not (then ``max`` is
            displayed as a bucket bound; its verdict is exact either way).
    """

    method: str
    name: str
    bounds_ms: Sequence[float]
    buckets: Sequence[int]
    requests: int
    failures: int = 0
    slow: int = 0
    sum_ms: float = 0.0
    max_ms: float | None = None

    def __post_init__(self) -> None:
        if len(self.buckets) != len(self.bounds_ms) + 1:
            raise ValueError(f"{self.method} {self.name}: {len(self.buckets)} buckets for {len(self.bounds_ms)} "
                             "bounds; expected one more (+Inf)")

    @property
    def count(self) -> int:
        """Requests with a response time (the histogram's ``_count``)."""
        return sum(self.buckets)

    def count_le(self, bound_ms: float) -> int:
        """Requests with ``t <= bound_ms``; ``bound_ms`` must be one of :attr:`bounds_ms` exactly.

        Raises :class:`MissingBoundError` otherwise (a wiring error: see :func:`required_bounds_ms`)."""
        index = bisect_left(self.bounds_ms, bound_ms)
        if index == len(self.bounds_ms) or self.bounds_ms[index] != bound_ms:
            raise MissingBoundError(
                f"{bound_ms!r} ms is not a histogram bound of {self.method} {self.name}; thresholds need "
                "required_bounds_ms() among the recorder's bounds"
            )
        return sum(self.buckets[: index + 1])

    def count_lt(self, bound_ms: float) -> int:
        """Requests with ``t < bound_ms``: :meth:`count_le` of :func:`strict_bound_ms` (0 for 0)."""
        strict = strict_bound_ms(bound_ms)
        return 0 if strict is None else self.count_le(strict)

    @classmethod
    def from_stats(cls, stats: Any, bounds_ms: Sequence[float], max_ms: float | None = None) -> EndpointData:
        """From a recorder's ``EndpointStats`` (its ``folded()`` totals, ``method``, ``name`` and ``failures``,
        a dict of counts by error) and its recorder's ``bounds_ms``."""
        totals = stats.folded()
        return cls(
            method=stats.method, name=stats.name, bounds_ms=tuple(bounds_ms), buckets=tuple(totals.buckets),
            requests=sum(totals.statuses.values()), failures=sum(stats.failures.values()), slow=totals.slow,
            sum_ms=totals.sum_ms, max_ms=max_ms,
        )


class MissingBoundError(LookupError):
    """A verdict needs a histogram bound the data lacks: the recorder was not given
    :func:`required_bounds_ms` (a programming error, not bad user input)."""


# ---------------------------------------------------------------------------------------------------- verdicts
@dataclass(frozen=True)
class Verdict:
    """The outcome of one threshold, over all its requests or (for ``each``) one endpoint.

    Attributes:
        threshold: the :class:`Threshold`.
        method, name: the endpoint, for an ``each`` threshold; None otherwise (and for an ``each`` threshold
            that matched no endpoint).
        passed: the exact verdict; False when there was no data (see the module docstring).
        no_data: the statistic had no value (no matching requests, or none with a response time).
        observed: the observed value in **base units** for display and export: **seconds** for
            ``pNN``/``avg``/``max``, a **fraction** for the ratios, **requests/s** for ``rps``, requests for
            ``requests``/``failures``; NaN when there is no data.
        interpolated: ``observed`` is not exact: a percentile interpolated within its bucket the way
            Prometheus's ``histogram_quantile`` does, or a maximum shown as the upper bound of its
            bucket (the recorder does not track the exact maximum). The verdict never uses it.
        above_buckets: ``observed`` is the highest finite bound and the value lies above it (``+Inf``
            bucket), as ``histogram_quantile`` returns it; displayed as ``>bound``.
        explain: makes :attr:`statement` (called once, on first use: live evaluation does not pay for
            the words).
    """

    threshold: Threshold
    method: str | None
    name: str | None
    passed: bool
    no_data: bool
    observed: float
    interpolated: bool
    explain: Callable[[], str] = field(repr=False, compare=False)
    above_buckets: bool = False

    @cached_property
    def statement(self) -> str:
        """The exact facts behind the verdict, in words: ``"11,863 of 12,345 requests (96.10%) took less
        than 500ms; passing needs at least 11,728 (95%)"``; why, when there is no data."""
        return self.explain()

    @property
    def label(self) -> str:
        """The threshold text, plus ``[METHOD name]`` for an ``each`` verdict."""
        if self.threshold.selector.kind == EACH and self.name is not None:
            return f"{self.threshold.text} [{self.method} {self.name}]"
        return self.threshold.text

    @property
    def labels(self) -> dict[str, str]:
        """Labels of the exported series (``locust_threshold_passed``, ``locust_threshold_value``):
        ``threshold`` (the text as written), plus ``method`` and ``name`` for an ``each`` threshold."""
        labels = {"threshold": self.threshold.text}
        if self.threshold.selector.kind == EACH:
            labels["method"] = self.method or ""
            labels["name"] = self.name or ""
        return labels

    @property
    def display(self) -> str:
        """The observed value, short: ``p95≈412ms``, ``avg=83.1ms``, ``fail_ratio=0.12%``, ``max>60s``,
        ``rps=205.7``, ``requests=12,345``; ``p95=?`` without data. ``≈`` marks an interpolated value."""
        stat = self.threshold.stat_text
        if self.no_data or math.isnan(self.observed):
            return f"{stat}=?"
        if self.threshold.is_time:
            value = format_ms(self.observed * 1000)
        elif self.threshold.stat in RATIO_STATS:
            value = format_percent(self.observed)
        elif self.threshold.stat == "rps":
            value = f"{self.observed:,.2f}"
        else:
            value = f"{self.observed:,.0f}"
        if self.above_buckets:
            return f"{stat}>{value}"
        if self.interpolated:
            return f"{stat}{'≤' if self.threshold.stat == 'max' else '≈'}{value}"
        return f"{stat}={value}"

    def aborts(self, elapsed_s: float) -> bool:
        """Whether this verdict, on the data so far, stops the test now: the threshold has ``abort``, it
        failed on data (not for lack of it), and ``elapsed_s`` (seconds since the test started) has
        reached its ``after`` delay."""
        threshold = self.threshold
        return threshold.abort and not self.passed and not self.no_data and elapsed_s >= threshold.abort_after_s


def evaluate(threshold: Threshold, endpoints: Iterable[EndpointData], duration_s: float) -> list[Verdict]:
    """Decide ``threshold`` on ``endpoints`` (the whole recorder's data, or the master's merged data).

    Args:
        threshold: a parsed threshold.
        endpoints: every endpoint's data; the selector picks the ones it matches. Entries with the same
            ``(method, name)`` are added together.
        duration_s: seconds since the test started (for ``rps``).

    Returns:
        One :class:`Verdict`; for an ``each`` threshold one per matching endpoint, sorted by (name,
        method), or a single no-data verdict when none matches.

    Raises:
        MissingBoundError: a ``pNN``/``max`` bound is not among the data's bounds.
    """
    return list(iter_verdicts(threshold, endpoints, duration_s))


def iter_verdicts(threshold: Threshold, endpoints: Iterable[EndpointData], duration_s: float) -> Iterator[Verdict]:
    """:func:`evaluate`, one verdict at a time: a caller on the event loop can yield between verdicts
    (an ``each`` threshold over hundreds of endpoints takes milliseconds)."""
    selector = threshold.selector
    chosen = [e for e in endpoints if selector.matches(e.method, e.name)]
    if selector.kind != EACH:
        if selector.kind != ALL and not chosen:
            yield _no_endpoint(threshold)
        else:
            yield _decide(threshold, chosen, duration_s, None, None)
        return
    groups: dict[tuple[str, str], list[EndpointData]] = {}
    for endpoint in chosen:
        groups.setdefault((endpoint.method, endpoint.name), []).append(endpoint)
    if not groups:
        yield _no_endpoint(threshold)
        return
    for (method, name), group in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0])):
        yield _decide(threshold, group, duration_s, method, name)


def evaluate_all(thresholds: Iterable[Threshold], endpoints: Iterable[EndpointData], duration_s: float) -> list[Verdict]:
    """:func:`evaluate` for each threshold, in order; the verdicts in one list."""
    data = list(endpoints)
    return [verdict for threshold in thresholds for verdict in evaluate(threshold, data, duration_s)]


def _no_endpoint(threshold: Threshold) -> Verdict:
    selector = threshold.selector
    why = f"no endpoint matched {selector.describe()}" if selector.filters else "no requests"
    return Verdict(threshold, None, None, passed=False, no_data=True, observed=math.nan, interpolated=False,
                   explain=lambda: why)


def _decide(
    threshold: Threshold, group: list[EndpointData], duration_s: float, method: str | None, name: str | None
) -> Verdict:
    stat, op, limit = threshold.stat, threshold.op, threshold.exact
    holds = OPERATORS[op]
    requests = sum(e.requests for e in group)
    count = sum(e.count for e in group)

    def verdict(passed: bool, observed: float, explain: Callable[[], str], interpolated: bool = False,
                above: bool = False) -> Verdict:
        return Verdict(threshold, method, name, passed=passed, no_data=False, observed=observed,
                       interpolated=interpolated, explain=explain, above_buckets=above)

    def no_data(why: str) -> Verdict:
        return Verdict(threshold, method, name, passed=False, no_data=True, observed=math.nan,
                       interpolated=False, explain=lambda: why)

    if stat in (PERCENTILE, "max"):
        if count == 0:
            return no_data("no requests with a response time")
        bound = threshold.value
        quantile = threshold.quantile if stat == PERCENTILE else Fraction(1)
        assert quantile is not None
        rank = -(-quantile.numerator * count // quantile.denominator)  # ceil(q n), the nearest rank: 1..n
        strict = op in ("<", ">=")
        below = sum((e.count_lt(bound) if strict else e.count_le(bound)) for e in group)
        # the rank-th smallest time is < T (strict) or <= T exactly when at least `rank` times are
        passed = below >= rank if op in ("<", "<=") else below < rank
        if stat == PERCENTILE:
            observed, above = _interpolate(group, float(quantile))
            explain = lambda: _percentile_statement(threshold, below, count, rank)  # noqa: E731
            return verdict(passed, observed, explain, interpolated=True, above=above)
        observed, interpolated, above = _maximum(group)
        return verdict(passed, observed, lambda: _max_statement(threshold, below, count), interpolated, above)
    if stat == "avg":
        if count == 0:
            return no_data("no requests with a response time")
        total = sum(Fraction(e.sum_ms) for e in group)
        average = total / count
        return verdict(holds(average, limit), float(average) / 1000,
                       lambda: f"{format_ms(float(average))} over {count:,} requests (sum {float(total):,.1f} ms)")
    if stat == "fail_ratio":
        failures = sum(e.failures for e in group)
        if requests == 0:
            return no_data("no requests")
        ratio = Fraction(failures, requests)
        return verdict(holds(ratio, limit), float(ratio),
                       lambda: f"{failures:,} of {requests:,} requests failed ({format_percent(ratio)})")
    if stat == "slow_ratio":
        slow = sum(e.slow for e in group)
        if count == 0:
            return no_data("no requests with a response time")
        ratio = Fraction(slow, count)
        return verdict(holds(ratio, limit), float(ratio), lambda: (
            f"{slow:,} of {count:,} requests with a response time were slow ({format_percent(ratio)})"))
    if stat == "rps":
        if not duration_s > 0:
            return no_data("the test has not run for any time yet")
        rate = Fraction(requests) / Fraction(duration_s)
        return verdict(holds(rate, limit), float(rate),
                       lambda: f"{requests:,} requests in {duration_s:,.1f}s = {float(rate):,.2f}/s")
    if stat == "requests":
        return verdict(holds(requests, limit), float(requests), lambda: f"{requests:,} requests")
    failures = sum(e.failures for e in group)  # "failures"
    return verdict(holds(failures, limit), float(failures), lambda: f"{failures:,} of {requests:,} requests failed")


def _percentile_statement(threshold: Threshold, below: int, count: int, rank: int) -> str:
    strict = threshold.op in ("<", ">=")
    took = f"less than {threshold.value_text}" if strict else f"at most {threshold.value_text}"
    share = format_share(below, count, threshold.quantile)
    need = f"at least {rank:,}" if threshold.op in ("<", "<=") else f"fewer than {rank:,}"
    return f"{below:,} of {count:,} requests ({share}) took {took}; passing needs {need} ({_percent_text(threshold)})"


def _percent_text(threshold: Threshold) -> str:
    """The percentile's share as written: ``95%``, ``99.999%`` (exact, from the decimal text)."""
    q = threshold.quantile or Fraction(1)
    percent = Decimal(q.numerator * 100) / Decimal(q.denominator)
    return f"{percent.normalize():f}%"


def _max_statement(threshold: Threshold, below: int, count: int) -> str:
    strict = threshold.op in ("<", ">=")
    took = f"{threshold.value_text} or more" if strict else f"more than {threshold.value_text}"
    need = "none" if threshold.op in ("<", "<=") else "at least one"
    return f"{count - below:,} of {count:,} requests took {took}; passing needs {need}"


def _common_buckets(group: list[EndpointData]) -> tuple[Sequence[float], list[int]]:
    """Cumulative counts of ``group`` at the bounds all of them have (exact there), plus ``+Inf``."""
    first = group[0].bounds_ms
    if all(e.bounds_ms == first for e in group):  # the usual case: one recorder, one set of bounds
        summed = group[0].buckets if len(group) == 1 else [sum(column) for column in zip(*(e.buckets for e in group))]
        return first, list(accumulate(summed))
    bounds = sorted(set(first).intersection(*(e.bounds_ms for e in group[1:])))
    cumulative = [0] * (len(bounds) + 1)
    for endpoint in group:
        running, index = 0, 0
        for bound, n in zip(endpoint.bounds_ms, endpoint.buckets):
            running += n
            if index < len(bounds) and bound == bounds[index]:
                cumulative[index] += running
                index += 1
        cumulative[-1] += endpoint.count
    return bounds, cumulative


def _interpolate(group: list[EndpointData], q: float) -> tuple[float, bool]:
    """``(seconds, above the highest bound)``: the ``q`` quantile from the buckets as Prometheus's
    ``histogram_quantile`` computes it (linear within the bucket, 0 as the first bucket's lower end, the
    highest finite bound when it falls in ``+Inf``; NaN with no finite bound)."""
    bounds, cumulative = _common_buckets(group)
    if not bounds:
        return math.nan, False
    total = cumulative[-1]
    rank = q * total
    index = next((i for i, c in enumerate(cumulative[:-1]) if c >= rank), len(bounds))
    if index == len(bounds):
        return bounds[-1] / 1000, True
    upper = bounds[index]
    if index == 0 and upper <= 0:
        return upper / 1000, False
    lower = 0.0 if index == 0 else bounds[index - 1]
    before = 0 if index == 0 else cumulative[index - 1]
    in_bucket = cumulative[index] - before
    return (lower + (upper - lower) * ((rank - before) / in_bucket)) / 1000, False


def _maximum(group: list[EndpointData]) -> tuple[float, bool, bool]:
    """``(seconds, interpolated, above the highest bound)``: the exact maximum when every endpoint tracks
    it, else the upper bound of the highest non-empty bucket (or the highest bound, for ``+Inf``)."""
    if all(e.max_ms is not None for e in group):
        return max(e.max_ms for e in group if e.max_ms is not None) / 1000, False, False
    best, above = -math.inf, False
    for endpoint in group:
        top = max((i for i, n in enumerate(endpoint.buckets) if n), default=None)
        if top is None:
            continue
        if top == len(endpoint.bounds_ms):
            if not endpoint.bounds_ms:
                return math.nan, True, False
            value, is_above = endpoint.bounds_ms[-1], True
        else:
            value, is_above = endpoint.bounds_ms[top], False
        if value > best or (value == best and is_above):
            best, above = value, is_above
    return best / 1000, True, above


# ---------------------------------------------------------------------------------------------------- output
def format_ms(ms: float) -> str:
    """A time for people: ``412ms``, ``0.5ms``, ``83.12ms``, ``1.84s``, ``60s`` (4 significant digits)."""
    if math.isnan(ms):
        return "?"
    if abs(ms) < 1000:
        return f"{ms:.4g}ms"
    return f"{ms / 1000:.4g}s"


def format_percent(ratio: Fraction | float | None) -> str:
    """``0.0123`` as ``1.23%``; exact thresholds like 1/1000 keep their digits (``0.1%``, ``99.9%``)."""
    if ratio is None:
        return "?"
    text = f"{float(ratio) * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def format_share(part: int, whole: int, target: Fraction | None = None) -> str:
    """``part / whole`` as a percentage with two decimals, or more where two would round onto ``target``
    (the threshold's share) while the exact share differs from it: ``94.999%``, never a misleading ``95%``."""
    text = f"{part * 100 / whole:.2f}"
    if target is None or text != f"{float(target) * 100:.2f}":
        return f"{text}%"  # cannot be mistaken for the target
    share = Fraction(part, whole)
    for digits in range(2, 10):
        text = f"{float(share) * 100:.{digits}f}"
        if share == target or Fraction(Decimal(text)) / 100 != target:
            return f"{text}%"
    return f"{float(share) * 100:.10f}%"


def summary_lines(verdicts: Iterable[Verdict], marks: tuple[str, str] = ("✓", "✗"), width: int = 0) -> list[str]:
    """One k6-like line per verdict: mark, label, dots, observed value, the exact facts::

        ✓ p95<500ms .......................... p95≈412ms  11,863 of 12,345 requests (96.10%) took less than ...
        ✗ each:slow_ratio<5% [GET /search] ... slow_ratio=7.31%  293 of 4,008 requests with a response ...

    Args:
        verdicts: from :func:`evaluate`/:func:`evaluate_all`.
        marks: the ``(passed, failed)`` marks; ``("PASS", "FAIL")`` for terminals without UTF-8.
        width: the column the values start at; 0 = fit the longest label (at most 60).
    """
    verdicts = list(verdicts)
    if not width:
        width = min(max((len(v.label) for v in verdicts), default=0), 60) + 4
    lines = []
    for v in verdicts:
        mark = marks[0] if v.passed else marks[1]
        label = v.label + " "
        dots = "." * max(width - len(label), 3)
        lines.append(f"{mark} {label}{dots} {v.display}  {v.statement}")
    return lines


def summary(verdicts: Iterable[Verdict], marks: tuple[str, str] = ("✓", "✗")) -> str:
    """The thresholds block of the end-of-test output: a heading ``Thresholds: 3 passed, 1 failed`` and
    :func:`summary_lines`, indented; ``""`` when there are no verdicts."""
    verdicts = list(verdicts)
    if not verdicts:
        return ""
    failed = sum(not v.passed for v in verdicts)
    heading = f"Thresholds: {len(verdicts) - failed} passed, {failed} failed"
    return "\n".join([heading, *("  " + line for line in summary_lines(verdicts, marks))])


def abort_verdict(verdicts: Iterable[Verdict], elapsed_s: float) -> Verdict | None:
    """The first verdict that stops the test now (:meth:`Verdict.aborts`), or None."""
    return next((v for v in verdicts if v.aborts(elapsed_s)), None)


def abort_message(verdict: Verdict, elapsed_s: float) -> str:
    """The log line of an abort: ``threshold 'p95<500ms' failed at 31.2s: p95≈612ms (…); stopping the
    test (abort)``. ``elapsed_s`` is seconds since the test started."""
    where = f" [{verdict.method} {verdict.name}]" if verdict.name is not None else ""
    return (f"threshold {verdict.threshold.text!r}{where} failed at {elapsed_s:.1f}s: {verdict.display} "
            f"({verdict.statement}); stopping the test (abort)")


def exit_code(verdicts: Iterable[Verdict], current: int = 0, code: int = DEFAULT_EXIT_CODE) -> int:
    """The process's exit code: ``current`` when it is already non-zero (Locust's own reasons win), else
    ``code`` when any verdict failed, else 0."""
    if current:
        return current
    return code if any(not v.passed for v in verdicts) else 0

