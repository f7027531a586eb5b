"""Reports of thresholds for CI and for alerting: a JUnit XML report of verdicts, and Prometheus alert rules.

* :func:`junit_xml` turns :class:`~locust_metrics.thresholds.Verdict` objects into a JUnit XML report, one
  test case per verdict (one per endpoint for ``each``), in the strict Ant layout that GitLab, Jenkins and
  GitHub's test reporters read.
* :func:`alert_rules` turns the same :class:`~locust_metrics.thresholds.Threshold` objects into a Prometheus
  rule group: the SLO that gates a CI run also pages during a long test.

What the alert rules decide, and where they differ from the verdicts
--------------------------------------------------------------------

The verdicts (``thresholds.py``) are exact over the whole test. An alert rule is evaluated by Prometheus on
the scraped series over a sliding ``window`` (default 5 minutes), so:

* **window, not test**: ``pNN``, ``max``, ``avg``, the ratios and ``rps`` are over the last ``window`` (with
  ``rate()``/``increase()``, which extrapolate to the window's edges); ``requests`` and ``failures`` are the
  counters' current values, i.e. since the Locust process started.
* **counts, not interpolation**: ``pNN OP T`` compares the share of requests at most ``T`` (the
  ``le="T"`` bucket over ``_count``) with ``q``, the same count the verdict uses, never
  ``histogram_quantile``. ``max OP T`` counts the requests above the ``le="T"`` bucket.
* **native histograms**: where Prometheus stores ``locust_request_duration_seconds`` as a native histogram only
  (2.4x with ``--enable-feature=native-histograms``; 3.x with ``scrape_native_histograms`` and without
  ``always_scrape_classic_histograms``), each duration figure falls back to it (``classic or native``):
  ``_count``/``_sum`` to ``histogram_count``/``histogram_sum`` (exact), the ``le="T"`` bucket to
  ``histogram_fraction(0, T, ...)``, which interpolates within the one native bucket holding ``T``: the
  rule then decides as for a threshold somewhere in that bucket, within 1.09% of ``T`` at schema 6 (exact
  when ``T`` is a bucket bound, e.g. a power of two in seconds). Where both are stored, the classic series win.
* **``<`` at exactly ``T``**: the bound just below ``T`` that makes ``<`` exact is not exported, so the rules
  count a request of exactly ``T`` as meeting ``pNN < T`` / ``max < T`` (they read ``<`` as ``<=``, and
  ``>=`` as ``>``). Response times rarely equal a bound to the last bit; the verdict at the end of the test
  is exact regardless.
* **not alertable**: ``requests``/``failures`` with ``>`` or ``>=`` (they can only fail at the end of a test;
  as an alert they would fire all through it) get no rule (:func:`unalertable_reason`).
* ``rps`` with ``>``/``>=`` fires only while the runner is ``running`` (``locust_runner_state``), so an
  idle Locust between tests does not page.
* Regexes are matched by Prometheus (RE2, fully anchored, like the verdicts' ``re.fullmatch``); a Python-only
  construct such as a look-ahead makes ``promtool check rules`` fail.

Every rule keeps the labels Prometheus adds (``job``, ``instance``) and constant labels
(``--metrics-label``): it aggregates with ``sum without (...)`` over ``method``/``name`` (not for ``each``)
and the family's own labels (``le``, ``status_code``, ``error``).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client.utils import floatToGoString

from . import families as F
from .thresholds import EACH, NEGATED, PERCENTILE, Threshold, Verdict, parse_threshold, summary

# ---------------------------------------------------------------------------------------------------- JUnit
JUNIT_CLASSNAME = "locust-metrics.thresholds"
"""The ``classname`` of every test case (Jenkins shows it as package ``locust-metrics``, class ``thresholds``)."""

_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    """``text`` with the characters XML 1.0 cannot hold at all (most control characters, lone
    surrogates, U+FFFE/U+FFFF) replaced by U+FFFD. Everything else is escaped by ElementTree."""
    return _XML_INVALID.sub("\ufffd", text)


def junit_xml(
    verdicts: Iterable[Verdict],
    *,
    suite_name: str = "locust-metrics thresholds",
    timestamp: _dt.datetime | None = None,
    duration_s: float = 0.0,
    hostname: str = "localhost",
    properties: Mapping[str, str] | None = None,
) -> str:
    """A JUnit XML report of ``verdicts``: one ``<testcase>`` each, with a ``<failure>`` for a failed one.

    Layout (the strict Ant JUnit layout: every attribute and element its strictest published schemas
    require, so GitLab, Jenkins and GitHub's reporters all read it)::

        <testsuites>
          <testsuite name= package= id="0" timestamp= hostname= tests= failures= errors="0" skipped="0" time=>
            <properties><property name= value=/>...</properties>
            <testcase name="p95&lt;500ms" classname="locust-metrics.thresholds" time="0">
              <failure type="ThresholdFailed" message="p95≈612ms: ...">...</failure>
            </testcase>
            <system-out>the summary (every verdict, passed ones too)</system-out>
            <system-err/>
          </testsuite>
        </testsuites>

    Args:
        verdicts: final verdicts (:func:`~locust_metrics.thresholds.evaluate_all`).
        suite_name: the test suite's name.
        timestamp: when the test started (UTC if naive or aware; written without a time zone as the
            format requires); default now.
        duration_s: the test's duration, **seconds** (the suite's ``time``).
        hostname: the machine that ran the test.
        properties: extra ``<property>`` entries (e.g. ``{"run_id": ..., "host": ...}``).

    Returns:
        The XML document as text (UTF-8 declaration, indented). A test case's ``name`` is the verdict's
        label (``each:p95<500ms [GET /x]``); its failure ``type`` is ``ThresholdFailed``, or ``NoData``
        when there was nothing to decide on; ``message`` is the observed value and the exact facts.
        Characters XML cannot hold become U+FFFD; everything else is escaped.
    """
    verdicts = list(verdicts)
    when = timestamp or _dt.datetime.now(_dt.timezone.utc)
    if when.tzinfo is not None:
        when = when.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    failed = sum(not v.passed for v in verdicts)
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", {
        "name": _xml_text(suite_name).strip() or "thresholds",
        "package": "locust-metrics",
        "id": "0",
        "timestamp": when.replace(microsecond=0).isoformat(timespec="seconds"),
        "hostname": _xml_text(hostname).strip() or "localhost",
        "tests": str(len(verdicts)),
        "failures": str(failed),
        "errors": "0",
        "skipped": "0",
        "time": f"{max(duration_s, 0.0):.3f}",
    })
    props = ET.SubElement(suite, "properties")
    for key, value in (properties or {}).items():
        ET.SubElement(props, "property", {"name": _xml_text(str(key)), "value": _xml_text(str(value))})
    for verdict in verdicts:
        case = ET.SubElement(suite, "testcase", {
            "name": _xml_text(verdict.label), "classname": JUNIT_CLASSNAME, "time": "0",
        })
        if not verdict.passed:
            failure = ET.SubElement(case, "failure", {
                "type": "NoData" if verdict.no_data else "ThresholdFailed",
                "message": _xml_text(f"{verdict.display}: {verdict.statement}"),
            })
            failure.text = _xml_text(
                f"threshold {verdict.label} failed: {verdict.display}\n{verdict.statement}\n"
            )
    ET.SubElement(suite, "system-out").text = _xml_text(summary(verdicts) + "\n") if verdicts else ""
    ET.SubElement(suite, "system-err").text = ""
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# ---------------------------------------------------------------------------------------------------- alert rules
DEFAULT_ALERT_NAME = "LocustThresholdFailing"
"""The ``alert`` of every generated rule; each rule's ``threshold`` label tells them apart."""

DEFAULT_GROUP_NAME = "locust-metrics.thresholds"
"""The name of the generated rule group."""

_DURATION_RE = re.compile(r"^(?:[0-9]+(?:ms|s|m|h|d|w|y))+$")

_DURATION_FAMILY = F.REQUEST_DURATION.name
_REQUESTS = F.REQUESTS.sample()
_FAILURES = F.FAILURES.sample()
_SLOW = F.SLOW_REQUESTS.sample()
_RUNNING = F.RUNNER_STATE.sample() + '{state="running"} == 1'


def unalertable_reason(threshold: Threshold) -> str | None:
    """Why ``threshold`` gets no alert rule, or None when it gets one.

    ``requests``/``failures`` with ``>`` or ``>=``: a count that only grows can fail only at the end of a
    test; as an alert it would fire all through the test."""
    if threshold.stat in ("requests", "failures") and threshold.op in (">", ">="):
        return f"{threshold.stat}{threshold.op}... can only fail at the end of a test"
    return None


def _string(value: str) -> str:
    """A PromQL string literal (Go's double-quoted syntax, which JSON's is a subset of)."""
    return json.dumps(value, ensure_ascii=False)


def _number(value: float) -> str:
    return repr(float(value))


def alert_expr(threshold: Threshold, window: str = "5m") -> str | None:
    """The PromQL expression that is non-empty exactly while ``threshold`` fails (see this module's
    docstring for how it differs from the exact verdict); None for :func:`unalertable_reason` ones.

    ``window`` is a Prometheus duration (``5m``) for ``rate()``/``increase()``.
    """
    if unalertable_reason(threshold) is not None:
        return None
    selector = threshold.selector
    matchers = []
    if selector.method is not None:
        matchers.append(f"method={_string(selector.method)}")
    if selector.name is not None:
        matchers.append(f"name={_string(selector.name)}")
    elif selector.regex is not None:
        matchers.append(f"name=~{_string(selector.regex)}")
    endpoint = [] if selector.kind == EACH else ["method", "name"]

    def series(metric: str, *extra: str) -> str:
        inner = ", ".join([*matchers, *extra])
        return f"{metric}{{{inner}}}" if inner else metric

    def total(expr: str, *drop: str) -> str:
        labels = [*drop, *endpoint]
        return f"sum without ({', '.join(labels)}) ({expr})" if labels else expr

    def rate(metric: str, *extra: str, fn: str = "rate") -> str:
        return f"{fn}({series(metric, *extra)}[{window}])"

    fails = NEGATED[threshold.op]  # the comparison that holds while the threshold fails
    stat = threshold.stat
    # Each duration figure reads the classic series and, where Prometheus stores the histogram as a native one
    # only (2.4x with the feature flag; 3.x with scrape_native_histograms and without
    # always_scrape_classic_histograms), the native histogram: ``classic or native``.
    native = _DURATION_FAMILY
    count = (f"({total(rate(f'{_DURATION_FAMILY}_count'))} or "
             f"{total(f'histogram_count({rate(native)})')})")
    if stat in (PERCENTILE, "max"):
        seconds = threshold.value / 1000.0
        le = f"le={_string(str(floatToGoString(seconds)))}"

        def native_at_most(expr: str) -> str:
            """The share of ``expr``'s native histograms at most T, interpolated within the one bucket holding T
            (exact when T is a bound)."""
            return f"histogram_fraction(0, {_number(seconds)}, {total(expr)})"

        if stat == PERCENTILE:
            assert threshold.quantile is not None
            share = (f"({total(rate(f'{_DURATION_FAMILY}_bucket', le), 'le')} / "
                     f"{total(rate(f'{_DURATION_FAMILY}_count'))} or {native_at_most(rate(native))})")
            # p <= T (or < T, read as <= T) holds while the share at most T is >= q
            compare = "<" if threshold.op in ("<", "<=") else ">="
            return f"{share} {compare} {_number(float(threshold.quantile))}"
        counted = total(rate(f"{_DURATION_FAMILY}_count", fn="increase"))
        at_most = total(rate(f"{_DURATION_FAMILY}_bucket", le, fn="increase"), "le")
        increase = rate(native, fn="increase")
        native_counted = total(f"histogram_count({increase})")
        above = f"(({counted} - {at_most}) or {native_counted} * (1 - {native_at_most(increase)}))"
        if threshold.op in ("<", "<="):
            return f"{above} > 0"
        return f"{above} <= 0 and ({counted} or {native_counted}) > 0"
    if stat == "avg":
        total_s = f"({total(rate(f'{_DURATION_FAMILY}_sum'))} or {total(f'histogram_sum({rate(native)})')})"
        return f"({total_s} / {count}) {fails} {_number(threshold.value / 1000.0)}"
    requests = total(rate(_REQUESTS), "status_code")
    if stat == "fail_ratio":
        failures = total(rate(_FAILURES), "error")
        return f"(({failures} or {requests} * 0) / {requests}) {fails} {_number(threshold.value)}"
    if stat == "slow_ratio":
        return f"({total(rate(_SLOW))} / {count}) {fails} {_number(threshold.value)}"
    if stat == "rps":
        expr = f"{requests} {fails} {_number(threshold.value)}"
        if threshold.op in (">", ">="):  # too few requests: only while a test runs
            expr = f"({expr}) and on (job, instance) ({_RUNNING})"
        return expr
    if stat == "requests":
        return f"{total(series(_REQUESTS), 'status_code')} {fails} {_number(threshold.value)}"
    return f"{total(series(_FAILURES), 'error')} {fails} {_number(threshold.value)}"  # failures


def _template_literal(text: str) -> str:
    """``text`` as literal text in a Prometheus alert template (Go ``text/template``): ``{{`` is written
    as ``{{ "{{" }}``; the rest needs nothing."""
    return text.replace("{{", '{{ "{{" }}')


def _describe(threshold: Threshold, window: str) -> str:
    """The alert's ``description``, showing ``$value`` in the expression's own terms."""
    value = "{{ $value }}"
    stat, text = threshold.stat, threshold.value_text
    if stat == PERCENTILE:
        took = f"at most {text}"
        return (f"{{{{ $value | humanizePercentage }}}} of the requests of the last {window} took {took}; "
                f"{threshold.stat_text}{threshold.op}{text} needs "
                f"{'at least' if threshold.op in ('<', '<=') else 'less than'} "
                f"{float(threshold.quantile or 1) * 100:g}%.")
    if stat == "max":
        return f"{value} requests took more than {text} in the last {window}."
    if stat == "avg":
        return f"The average response time over the last {window} is {{{{ $value | humanizeDuration }}}}."
    if stat in ("fail_ratio", "slow_ratio"):
        what = "failed" if stat == "fail_ratio" else "were slow"
        return f"{{{{ $value | humanizePercentage }}}} of the requests of the last {window} {what}."
    if stat == "rps":
        return f"{{{{ $value | humanize }}}} requests/s over the last {window}."
    return f"{value} {'requests' if stat == 'requests' else 'failures'} since Locust started."


def alert_rules(
    thresholds: Iterable[Threshold | str],
    *,
    window: str = "5m",
    for_: str = "1m",
    severity: str = "warning",
    group_name: str = DEFAULT_GROUP_NAME,
    alert_name: str = DEFAULT_ALERT_NAME,
) -> dict[str, Any]:
    """A Prometheus rule group with one alerting rule per alertable threshold.

    Args:
        thresholds: parsed thresholds (or their texts).
        window: the range of ``rate()``/``increase()``, a Prometheus duration (``5m``).
        for_: how long a threshold must fail before the alert fires (``for:``), a Prometheus duration.
        severity: the ``severity`` label.
        group_name: the group's ``name``.
        alert_name: every rule's ``alert``; the ``threshold`` label (the text as written, as on the
            exported ``locust_threshold_*`` series) tells them apart.

    Returns:
        ``{"name": group_name, "rules": [...]}``; put it in a rule file as ``{"groups": [group]}``
        (:func:`alert_rules_yaml` does). Thresholds that :func:`unalertable_reason` names get no rule.
        ``each`` thresholds fire per endpoint (``method`` and ``name`` labels).

    Raises:
        ValueError: ``window`` or ``for_`` is not a Prometheus duration.
    """
    for option, duration in (("window", window), ("for_", for_)):
        if not _DURATION_RE.match(duration):
            raise ValueError(f"{option}={duration!r} is not a Prometheus duration such as 5m or 30s")
    rules = []
    for item in thresholds:
        threshold = parse_threshold(item)
        expr = alert_expr(threshold, window)
        if expr is None:
            continue
        where = " on {{ $labels.method }} {{ $labels.name }}" if threshold.selector.kind == EACH else ""
        rules.append({
            "alert": alert_name,
            "expr": expr,
            "for": for_,
            "labels": {"severity": severity, "threshold": _template_literal(threshold.text)},
            "annotations": {
                "summary": f"Locust threshold {_template_literal(threshold.text)} is failing{where}",
                "description": _describe(threshold, window),
            },
        })
    return {"name": group_name, "rules": rules}


def alert_rules_yaml(thresholds: Iterable[Threshold | str], **options: Any) -> str:
    """:func:`alert_rules` as a rule file (``groups: [...]``), YAML text with a header comment that lists
    any threshold left out and why. ``options`` are :func:`alert_rules`'s keywords."""
    import yaml

    parsed = [parse_threshold(t) for t in thresholds]
    group = alert_rules(parsed, **options)
    header = ["# Prometheus alert rules generated by locust-metrics from its pass/fail thresholds."]
    for threshold in parsed:
        reason = unalertable_reason(threshold)
        if reason:
            header.append(f"# not alertable: {threshold.text!r}: {reason}")
    body: str = yaml.safe_dump({"groups": [group]}, sort_keys=False, allow_unicode=True, width=10_000)
    return "\n".join(header) + "\n" + body
