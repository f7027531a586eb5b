"""Unit tests of the thresholds core (locust_metrics/thresholds.py): grammar, errors, bounds, exact verdicts.

Exactness is checked against a brute-force nearest-rank percentile (and maximum) of the response times
themselves, recorded by the real :class:`RequestRecorder` (its hot path and bucket table) with the bounds
:func:`required_bounds_ms` asks for, on random lists that always hold values exactly at the threshold, just
below it and just above it (``math.nextafter``), plus hand-built cases right at each boundary.

Reports (locust_metrics/threshold_reports.py): the JUnit XML report against tests/data/junit-strict.xsd; the
generated Prometheus alert rules with the real ``promtool check rules`` and ``promtool test rules`` (healthy and
unhealthy series; each unit test bites: a threshold with a lax limit loses its expected alert).
"""

from __future__ import annotations

import datetime
import math
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st
from support import PROMTOOL_BINARIES, TESTS, Response, require_binary

from locust_metrics.options import OptionError, Settings
from locust_metrics.recorder import RequestRecorder
from locust_metrics.thresholds import (
    ALL,
    EACH,
    NAMES,
    EndpointData,
    MissingBoundError,
    Threshold,
    abort_message,
    abort_verdict,
    evaluate,
    evaluate_all,
    exit_code,
    format_share,
    iter_verdicts,
    parse_duration,
    parse_threshold,
    parse_thresholds,
    required_bounds_ms,
    split_thresholds,
    strict_bound_ms,
    summary,
    summary_lines,
)

OPS = ("<", "<=", ">", ">=")
COMPARE = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


# ------------------------------------------------------------------------------------------------ helpers
def record(thresholds: list[Threshold], times_by_endpoint: dict[tuple[str, str], list[float | None]],
           failures: dict[tuple[str, str], int] | None = None, slow_ms: float = 1000.0) -> list[EndpointData]:
    """Record the times with a real RequestRecorder (default buckets + the thresholds' bounds); its data."""
    bounds = set(Settings().bounds_ms()) | {bound for bound, _ in required_bounds_ms(thresholds)}
    recorder = RequestRecorder(bounds, slow_ms)
    failures = failures or {}
    for (method, name), times in times_by_endpoint.items():
        for index, t in enumerate(times):
            failed = index < failures.get((method, name), 0)
            recorder.on_request(method, name, t, 10, response=Response(500 if failed else 200),
                                exception=RuntimeError("boom") if failed else None)
    return [EndpointData.from_stats(stats, recorder.bounds_ms) for stats in recorder.endpoints.values()]


def nearest_rank(times: list[float], quantile: Fraction) -> float:
    """The brute-force nearest-rank quantile: the smallest k with k/n >= q, then the k-th smallest time."""
    ordered = sorted(times)
    n = len(ordered)
    k = next(k for k in range(1, n + 1) if Fraction(k, n) >= quantile)
    return ordered[k - 1]


def ms_text(ms: float) -> str:
    """A bare-milliseconds threshold value that parses back to exactly ``ms``."""
    from decimal import Decimal

    text = format(Decimal(repr(ms)), "f")
    assert float(Decimal(text)) == ms
    return text


def error_of(text: str, option: str = "--metrics-threshold") -> str:
    with pytest.raises(OptionError) as info:
        parse_threshold(text, option)
    message = str(info.value)
    assert option in message and (repr(text.strip()) in message or repr(text) in message), message
    return message


# ------------------------------------------------------------------------------------------------ grammar
@pytest.mark.parametrize(
    "text, kind, method, name, regex, stat, quantile, op, value, abort, after",
    [
        # the examples
        ("p95<500ms", ALL, None, None, None, "percentile", Fraction(95, 100), "<", 500.0, False, 0.0),
        ("fail_ratio<1%", ALL, None, None, None, "fail_ratio", None, "<", 0.01, False, 0.0),
        ("/checkout:p99<=2s abort after 30s", NAMES, None, "/checkout", None, "percentile", Fraction(99, 100), "<=",
         2000.0, True, 30.0),
        ("each:slow_ratio<5%", EACH, None, None, None, "slow_ratio", None, "<", 0.05, False, 0.0),
        ("re:/api/products.*:max<3s", NAMES, None, None, "/api/products.*", "max", None, "<", 3000.0, False, 0.0),
        # percentiles, units, operators
        ("p50>=0.25s", ALL, None, None, None, "percentile", Fraction(1, 2), ">=", 250.0, False, 0.0),
        ("p99.9 <= 300", ALL, None, None, None, "percentile", Fraction(999, 1000), "<=", 300.0, False, 0.0),
        ("p(99.99)>1.5", ALL, None, None, None, "percentile", Fraction(9999, 10000), ">", 1.5, False, 0.0),
        ("p100<60s", ALL, None, None, None, "percentile", Fraction(1), "<", 60000.0, False, 0.0),
        ("avg<=.5s", ALL, None, None, None, "avg", None, "<=", 500.0, False, 0.0),
        ("slow_ratio<=0.05", ALL, None, None, None, "slow_ratio", None, "<=", 0.05, False, 0.0),
        ("fail_ratio<=100%", ALL, None, None, None, "fail_ratio", None, "<=", 1.0, False, 0.0),
        ("rps>=12.5", ALL, None, None, None, "rps", None, ">=", 12.5, False, 0.0),
        ("requests>=1000", ALL, None, None, None, "requests", None, ">=", 1000.0, False, 0.0),
        ("failures<1 abort", ALL, None, None, None, "failures", None, "<", 1.0, True, 0.0),
        # selectors: methods, spaces, ':' in names and regexes, each
        ("POST /api/orders:p95<1s", NAMES, "POST", "/api/orders", None, "percentile", Fraction(95, 100), "<",
         1000.0, False, 0.0),
        ("GET  re:/api/.*:avg<100", NAMES, "GET", None, "/api/.*", "avg", None, "<", 100.0, False, 0.0),
        ("a name with: colons and spaces:requests>=10", NAMES, None, "a name with: colons and spaces", None,
         "requests", None, ">=", 10.0, False, 0.0),
        ("re:/api/(?:a|b):p95<5", NAMES, None, None, "/api/(?:a|b)", "percentile", Fraction(95, 100), "<", 5.0,
         False, 0.0),
        ("Login page:max<2s", NAMES, None, "Login page", None, "max", None, "<", 2000.0, False, 0.0),
        ("API v2:p50<1", NAMES, "API", "v2", None, "percentile", Fraction(1, 2), "<", 1.0, False, 0.0),
        ("re:API v2:p50<1", NAMES, None, None, "API v2", "percentile", Fraction(1, 2), "<", 1.0, False, 0.0),
        ("each", None, None, None, None, None, None, None, None, None, None),  # placeholder, replaced below
        ("each :p95<5", EACH, None, None, None, "percentile", Fraction(95, 100), "<", 5.0, False, 0.0),
        ("each re:/api/.*:fail_ratio<0.5%", EACH, None, None, "/api/.*", "fail_ratio", None, "<", 0.005, False, 0.0),
        ("each POST re:/a:b:rps>3", EACH, "POST", None, "/a:b", "rps", None, ">", 3.0, False, 0.0),
        ("each GET /x:failures<=2", EACH, "GET", "/x", None, "failures", None, "<=", 2.0, False, 0.0),
        ("eachother:p95<5", NAMES, None, "eachother", None, "percentile", Fraction(95, 100), "<", 5.0, False, 0.0),
        ("  p95<500ms abort after 1h30m  ", ALL, None, None, None, "percentile", Fraction(95, 100), "<", 500.0,
         True, 5400.0),
        ("p95<500ms   abort   after   90", ALL, None, None, None, "percentile", Fraction(95, 100), "<", 500.0,
         True, 90.0),
        ("/x:max<3s abort after 1m30.5s", NAMES, None, "/x", None, "max", None, "<", 3000.0, True, 90.5),
        ("/reports/abort:p95<5 abort", NAMES, None, "/reports/abort", None, "percentile", Fraction(95, 100), "<",
         5.0, True, 0.0),
        ("/a<b>=c:p95<5", NAMES, None, "/a<b>=c", None, "percentile", Fraction(95, 100), "<", 5.0, False, 0.0),
    ],
)
def test_grammar(text, kind, method, name, regex, stat, quantile, op, value, abort, after):
    if kind is None:  # "each" alone needs a condition: every endpoint
        text, kind, stat, quantile, op, value, abort, after = (
            "each:p99<1s", EACH, "percentile", Fraction(99, 100), "<", 1000.0, False, 0.0)
    threshold = parse_threshold(text)
    assert threshold.text == text.strip()
    assert str(threshold) == text.strip()
    selector = threshold.selector
    assert (selector.kind, selector.method, selector.name, selector.regex) == (kind, method, name, regex)
    assert (threshold.stat, threshold.quantile, threshold.op) == (stat, quantile, op)
    assert threshold.value == value and type(threshold.value) is float
    assert (threshold.abort, threshold.abort_after_s) == (abort, after)


def test_values_are_kept_exactly():
    assert parse_threshold("p95<0.3s").value == 300.0  # not 0.3 * 1000 = 300.00000000000006
    assert parse_threshold("fail_ratio<1%").exact == Fraction(1, 100)
    assert parse_threshold("fail_ratio<0.01").exact == Fraction(1, 100)
    assert parse_threshold("slow_ratio<33.3%").exact == Fraction(333, 1000)
    assert parse_threshold("rps>0.1").exact == Fraction(1, 10)
    assert parse_threshold("p95<0.1").exact == Fraction(0.1)  # times: the float, as response times are floats
    assert parse_threshold("p99.9<5").quantile == Fraction(999, 1000)
    assert parse_threshold("p95<500ms").value_text == "500ms"


def test_selectors_match_whole_names_and_methods():
    selector = parse_threshold("GET re:/api/.*:p95<5").selector
    assert selector.matches("GET", "/api/x") and selector.matches("GET", "/api/")
    assert not selector.matches("POST", "/api/x") and not selector.matches("GET", "/v2/api/x")
    assert not parse_threshold("re:/api:p95<5").selector.matches("GET", "/api/x")  # whole name
    exact = parse_threshold("/checkout:p95<5").selector
    assert exact.matches("GET", "/checkout") and exact.matches("POST", "/checkout")
    assert not exact.matches("GET", "/checkout/")
    assert parse_threshold("each:p95<5").selector.matches("ANY", "thing")


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "empty threshold"),
        ("   ", "empty threshold"),
        ("p95", "no comparison"),
        ("p95 500ms", "no comparison"),
        ("p95<", "missing value"),
        ("<500ms", "missing statistic"),
        ("p95=500ms", "unsupported operator '='"),
        ("p95==500ms", "unsupported operator '=='"),
        ("p95!=500ms", "unsupported operator '!='"),
        ("p95=<500ms", "unsupported operator '=<'"),
        ("p95=>500ms", "unsupported operator '=>'"),
        ("stddev<5", "unknown statistic 'stddev'"),
        ("P95<500ms", "unknown statistic 'P95'"),
        ("percentile<5", "unknown statistic 'percentile'"),
        ("p<5", "unknown statistic 'p'"),
        ("p95.<5", "unknown statistic 'p95.'"),
        ("/checkout p95<5", "a selector is followed by ':'"),
        ("p0<5", "out of range"),
        ("p0.0<5", "out of range"),
        ("p100.1<5", "out of range"),
        ("p101<5", "out of range"),
        ("p95<500x", "'500x' is not a time"),
        ("p95<5m", "'5m' is not a time"),
        ("avg<500 ms", "unexpected text after the value '500'"),
        ("max<1e3", "'1e3' is not a time"),
        ("p95<inf", "'inf' is not a time"),
        ("p95<nan", "'nan' is not a time"),
        ("p95<-1", "negative value"),
        ("fail_ratio<-1%", "negative value"),
        ("rps>-3", "negative value"),
        ("p95<+5", "'+5' is not a time"),
        ("fail_ratio<101%", "above 100%"),
        ("slow_ratio<=1.5", "above 100%; for a percentage write 1.5%"),
        ("fail_ratio<5", "above 100%; for a percentage write 5%"),
        ("fail_ratio<1ms", "not a ratio"),
        ("fail_ratio<%", "not a ratio"),
        ("rps>5/s", "not a number of requests per second"),
        ("requests>=1k", "not a number of requests"),
        ("failures<1%", "not a number of requests"),
        ("p95<500ms after 30s", "needs 'abort' before it"),
        ("p95<500ms abort after", "needs a duration"),
        ("p95<500ms abort after 3x", "bad duration '3x'"),
        ("p95<500ms abort after -3s", "bad duration '-3s'"),
        ("p95<500ms abort now", "unexpected text after the value"),
        ("abort", "nothing before 'abort'"),
        ("requests>=100 abort", "'abort' cannot apply to requests>=..."),
        ("failures>0 abort after 10s", "'abort' cannot apply to failures>..."),
        (":p95<5", "empty selector"),
        ("  :p95<5", "empty selector"),
        ("re::p95<5", "empty regular expression"),
        ("GET re::p95<5", "empty regular expression"),
        ("re:(:p95<5", "bad regular expression '('"),
        ("each re:[a-:p95<5", "bad regular expression"),
    ],
)
def test_bad_input_names_the_option_and_the_value(text, why):
    message = error_of(text)
    assert "LOCUST_METRICS_THRESHOLD" in message
    assert why in message, message


def test_errors_name_the_option_given():
    assert "--my-option (LOCUST_MY_OPTION)" in error_of("p95<5x", option="--my-option")
    with pytest.raises(OptionError, match="expected a threshold expression"):
        parse_threshold(95)  # type: ignore[arg-type]


def test_a_threshold_is_returned_as_it_is():
    threshold = parse_threshold("p95<5")
    assert parse_threshold(threshold) is threshold
    assert parse_thresholds([threshold, "p95<5", "p95 < 5"]) == [threshold, parse_threshold("p95 < 5")]


def test_durations():
    assert parse_duration("30s") == 30 and parse_duration("5m") == 300 and parse_duration("1h30m") == 5400
    assert parse_duration("2h1m0.5s") == 7260.5 and parse_duration("90") == 90 and parse_duration("0") == 0
    for bad in ("", "s", "1d", "1m1h", "-1", "1.5m"):
        with pytest.raises(OptionError, match="bad duration"):
            parse_duration(bad)


def test_lists_split_at_commas_but_not_inside_names_or_regexes():
    assert split_thresholds("p95<500ms,fail_ratio<1%") == ["p95<500ms", "fail_ratio<1%"]
    assert split_thresholds("re:/a{1,3}:p95<5, fail_ratio<1%") == ["re:/a{1,3}:p95<5", "fail_ratio<1%"]
    assert split_thresholds("/x,y:max<3s abort after 5s,requests>=1\n\neach:avg<1") == [
        "/x,y:max<3s abort after 5s", "requests>=1", "each:avg<1"]
    assert split_thresholds(" , ,") == []
    assert split_thresholds("p95<5x,avg<1") == ["p95<5x,avg<1"]  # left to parse_threshold to reject
    with pytest.raises(OptionError, match="'p95<5x,avg<1'"):
        parse_thresholds("p95<5x,avg<1")


def test_parse_thresholds_from_strings_and_lists_drops_repeats():
    assert parse_thresholds(None) == []
    parsed = parse_thresholds(["p95<500ms,fail_ratio<1%", "p95<500ms", "each:avg<1 abort"])
    assert [t.text for t in parsed] == ["p95<500ms", "fail_ratio<1%", "each:avg<1 abort"]
    assert [t.text for t in parse_thresholds("p95<500ms")] == ["p95<500ms"]
    with pytest.raises(OptionError, match="--x"):
        parse_thresholds(5, option="--x")
    with pytest.raises(OptionError, match="unknown statistic"):
        parse_thresholds(["p95<5", "bogus<5"])


# ------------------------------------------------------------------------------------------------ bounds
def test_required_bounds():
    thresholds = parse_thresholds(["p95<500ms", "max<=2s", "p99>=500", "p50<0", "avg<100", "slow_ratio<5%",
                                   "p90>1s", "each:p95<500ms"])
    below_500 = math.nextafter(500.0, 0)
    assert below_500 < 500.0 and below_500 == 499.99999999999994
    assert required_bounds_ms(thresholds) == [(0.0, True), (below_500, False), (500.0, True), (1000.0, True),
                                              (2000.0, True)]
    assert required_bounds_ms([]) == []
    # a bound that one threshold needs exported is exported
    assert required_bounds_ms(parse_thresholds([f"p95<={ms_text(below_500)}", "p95<500"])) == [
        (below_500, True), (500.0, True)]
    assert strict_bound_ms(0.0) is None and strict_bound_ms(1.0) == math.nextafter(1.0, 0)


def test_a_missing_bound_is_a_clear_programming_error():
    data = [EndpointData("GET", "/x", (100.0, 1000.0), (1, 1, 0), requests=2)]
    with pytest.raises(MissingBoundError, match="500.0 ms is not a histogram bound of GET /x"):
        evaluate(parse_threshold("p95<=500"), data, 1.0)
    with pytest.raises(MissingBoundError, match=repr(math.nextafter(100.0, 0))):
        evaluate(parse_threshold("p95<100"), data, 1.0)  # the strict bound is missing
    assert evaluate(parse_threshold("p95<=100"), data, 1.0)[0].passed is False
    with pytest.raises(ValueError, match="expected one more"):
        EndpointData("GET", "/x", (100.0,), (1,), requests=1)


# ------------------------------------------------------------------------------------------------ exactness
PERCENTILES = ["50", "90", "95", "99", "99.9", "33.3", "66.6667", "1", "0.1", "100"]
THRESHOLDS_MS = [0.0, 1.0, 5.0, 100.0, 250.5, 300.0, 499.99999999999994, 500.0, 1000.0, 2000.0, 60000.0, 70000.5,
                 131072.0, 250000.0]


@st.composite
def boundary_times(draw: st.DrawFn, threshold_ms: float) -> list[float]:
    """Response times with values exactly at, just below and just above the threshold, and others."""
    special = [threshold_ms, math.nextafter(threshold_ms, 0.0), math.nextafter(threshold_ms, math.inf)]
    near = st.sampled_from(special)
    anywhere = st.floats(min_value=0.0, max_value=300000.0, allow_nan=False)
    times = draw(st.lists(st.one_of(near, near, anywhere), min_size=1, max_size=60))
    return times + [draw(near)]  # at least one value at the boundary


@settings(max_examples=300, deadline=None)
@given(data=st.data(), percentile=st.sampled_from(PERCENTILES), op=st.sampled_from(OPS),
       threshold_ms=st.one_of(st.sampled_from(THRESHOLDS_MS), st.floats(min_value=0.0, max_value=300000.0)))
def test_percentile_verdicts_equal_the_exact_nearest_rank(data, percentile, op, threshold_ms):
    times = data.draw(boundary_times(threshold_ms))
    threshold = parse_threshold(f"p{percentile}{op}{ms_text(threshold_ms)}")
    (verdict,) = evaluate(threshold, record([threshold], {("GET", "/x"): times}), 10.0)
    exact = nearest_rank(times, Fraction(percentile) / 100)
    assert verdict.passed is COMPARE[op](exact, threshold_ms), (exact, verdict.statement)
    assert not verdict.no_data and verdict.interpolated


@settings(max_examples=200, deadline=None)
@given(data=st.data(), op=st.sampled_from(OPS),
       threshold_ms=st.one_of(st.sampled_from(THRESHOLDS_MS), st.floats(min_value=0.0, max_value=300000.0)))
def test_max_verdicts_equal_the_exact_maximum(data, op, threshold_ms):
    times = data.draw(boundary_times(threshold_ms))
    thresholds = [parse_threshold(f"max{op}{ms_text(threshold_ms)}"), parse_threshold(f"p100{op}{ms_text(threshold_ms)}")]
    endpoints = record(thresholds, {("GET", "/x"): times})
    for threshold in thresholds:
        (verdict,) = evaluate(threshold, endpoints, 10.0)
        assert verdict.passed is COMPARE[op](max(times), threshold_ms)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("percentile, n", [("95", 20), ("95", 21), ("50", 2), ("99.9", 1000), ("99.9", 1001),
                                           ("33.3", 1000), ("100", 7), ("0.1", 1000)])
@pytest.mark.parametrize("threshold_ms", [500.0, 0.1, 60000.0, 100000.0])
def test_percentiles_right_at_the_boundary(op, percentile, n, threshold_ms):
    """The k-th smallest time (k = ceil(q n)) sits exactly at T, just below or just above; every other
    time is far below (before it) or far above (after it). The verdict must follow that one time."""
    q = Fraction(percentile) / 100
    k = -(-q.numerator * n // q.denominator)
    threshold = parse_threshold(f"p{percentile}{op}{ms_text(threshold_ms)}")
    for kth in (threshold_ms, math.nextafter(threshold_ms, 0), math.nextafter(threshold_ms, math.inf)):
        for others_at_t in (False, True):  # the others at T too (below before, above after: order kept)
            low = math.nextafter(threshold_ms, 0) if others_at_t else threshold_ms / 2
            high = threshold_ms if others_at_t and kth > threshold_ms else threshold_ms * 3
            high = max(high, kth)
            times = [min(low, kth)] * (k - 1) + [kth] + [high] * (n - k)
            assert nearest_rank(times, q) == kth
            (verdict,) = evaluate(threshold, record([threshold], {("GET", "/x"): times}), 1.0)
            assert verdict.passed is COMPARE[op](kth, threshold_ms), (kth, times[:3], verdict.statement)


def test_a_threshold_at_zero():
    for op in OPS:
        threshold = parse_threshold(f"p50{op}0")
        endpoints = record([threshold], {("GET", "/x"): [0.0, 0.0, 1.0]})
        assert evaluate(threshold, endpoints, 1.0)[0].passed is COMPARE[op](0.0, 0.0)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), percentile=st.sampled_from(PERCENTILES), op=st.sampled_from(OPS),
       threshold_ms=st.sampled_from(THRESHOLDS_MS))
def test_each_and_regex_selectors_decide_exactly_what_they_select(data, percentile, op, threshold_ms):
    names = [("GET", "/api/a"), ("POST", "/api/a"), ("GET", "/api/b"), ("GET", "/static/x")]
    times = {key: data.draw(boundary_times(threshold_ms)) for key in names}
    quantile = Fraction(percentile) / 100
    texts = {
        "pooled": f"re:/api/.*:p{percentile}{op}{ms_text(threshold_ms)}",
        "method": f"GET re:/api/.*:p{percentile}{op}{ms_text(threshold_ms)}",
        "exact": f"/api/a:p{percentile}{op}{ms_text(threshold_ms)}",
        "each": f"each re:/api/.*:p{percentile}{op}{ms_text(threshold_ms)}",
        "all": f"p{percentile}{op}{ms_text(threshold_ms)}",
    }
    thresholds = {key: parse_threshold(text) for key, text in texts.items()}
    endpoints = record(list(thresholds.values()), times)

    def expect(keys):
        pooled = [t for key in keys for t in times[key]]
        return COMPARE[op](nearest_rank(pooled, quantile), threshold_ms)

    api = [key for key in names if key[1].startswith("/api/")]
    assert [v.passed for v in evaluate(thresholds["pooled"], endpoints, 1.0)] == [expect(api)]
    assert [v.passed for v in evaluate(thresholds["method"], endpoints, 1.0)] == [
        expect([k for k in api if k[0] == "GET"])]
    assert [v.passed for v in evaluate(thresholds["exact"], endpoints, 1.0)] == [
        expect([("GET", "/api/a"), ("POST", "/api/a")])]
    assert [v.passed for v in evaluate(thresholds["all"], endpoints, 1.0)] == [expect(names)]
    each = evaluate(thresholds["each"], endpoints, 1.0)
    assert [(v.method, v.name) for v in each] == [("GET", "/api/a"), ("POST", "/api/a"), ("GET", "/api/b")]
    lazy = iter_verdicts(thresholds["each"], endpoints, 1.0)
    assert next(lazy) == each[0] and list(lazy) == each[1:]
    assert [v.passed for v in each] == [expect([(v.method, v.name)]) for v in each]


def test_the_other_statistics_are_exact_at_their_boundaries():
    # 100 requests: 1 failure, 5 slow (> 1000 ms), times summing to exactly 100 * 200 ms, in 50 s: 2 rps
    times = [200.0] * 90 + [100.0] * 5 + [1100.0] * 5  # 18000 + 500 + 5500 = 24000: avg 240 ms
    endpoints = record([], {("GET", "/x"): times}, failures={("GET", "/x"): 1})

    def passed(text: str, duration_s: float = 50.0) -> bool:
        (verdict,) = evaluate(parse_threshold(text), endpoints, duration_s)
        return verdict.passed

    assert passed("avg<=240") and not passed("avg<240") and passed("avg>=0.24s") and not passed("avg>240")
    assert passed("fail_ratio<=1%") and not passed("fail_ratio<1%") and passed("fail_ratio<0.0101")
    assert passed("fail_ratio>=0.01") and not passed("fail_ratio>0.01")
    assert passed("slow_ratio<=5%") and not passed("slow_ratio<5%") and passed("slow_ratio>4.99%")
    assert passed("rps>=2") and not passed("rps>2") and passed("rps<=2") and not passed("rps<2")
    assert passed("rps>2", duration_s=49.999) and not passed("rps>=2", duration_s=50.001)
    assert passed("requests>=100") and not passed("requests>100") and passed("requests<100.5")
    assert passed("failures<=1") and not passed("failures<1") and passed("failures>0")


def test_an_average_is_compared_exactly_not_after_rounding():
    # 0.1 + 0.2 recorded as floats: their sum is 0.30000000000000004, the average just above 0.15
    endpoints = record([], {("GET", "/x"): [0.1, 0.2]})
    assert endpoints[0].sum_ms == 0.30000000000000004  # 0.1 + 0.2 as floats: not 0.3
    (verdict,) = evaluate(parse_threshold("avg<=0.15"), endpoints, 1.0)
    assert verdict.passed is False  # as rationals, 0.30000000000000004 / 2 > 0.15 (the float nearest 0.15)


def test_requests_without_a_response_time_count_where_locust_counts_them():
    endpoints = record([], {("GET", "/x"): [100.0, None, None, 300.0]}, failures={("GET", "/x"): 2})
    verdicts = {t: evaluate(parse_threshold(t), endpoints, 2.0)[0] for t in
                ("avg<=200", "fail_ratio<=50%", "requests>=4", "rps>=2", "slow_ratio<=0")}
    assert all(v.passed for v in verdicts.values()), {t: v.statement for t, v in verdicts.items()}
    assert verdicts["avg<=200"].statement.startswith("200ms over 2 requests")


# ------------------------------------------------------------------------------------------------ no data
def test_no_data_fails_and_says_why_but_never_aborts():
    endpoints = record([], {("GET", "/x"): [None, None]})  # requests without a response time
    for text in ("p95<5 abort", "max<5 abort", "avg<5 abort", "slow_ratio<1% abort"):
        (verdict,) = evaluate(parse_threshold(text), endpoints, 1.0)
        assert verdict.no_data and not verdict.passed and math.isnan(verdict.observed)
        assert verdict.statement == "no requests with a response time"
        assert not verdict.aborts(1000.0)
        assert verdict.display.endswith("=?")
    (empty,) = evaluate(parse_threshold("fail_ratio<1%"), [], 1.0)
    assert empty.no_data and empty.statement == "no requests"
    (rps,) = evaluate(parse_threshold("rps>1"), endpoints, 0.0)
    assert rps.no_data
    # the count statistics have a value even without requests: 0
    assert evaluate(parse_threshold("failures<1"), [], 1.0)[0].passed
    assert not evaluate(parse_threshold("requests>=1"), [], 1.0)[0].passed
    assert not evaluate(parse_threshold("requests>=1"), [], 1.0)[0].no_data


def test_a_selector_that_matches_nothing_fails_instead_of_passing_silently():
    endpoints = record([], {("GET", "/checkout"): [1.0]})
    for text, what in (("/checkuot:failures<1", "'/checkuot'"), ("POST /checkout:failures<1", "'POST /checkout'"),
                       ("each re:/api/.*:failures<1", "'each re:/api/.*'")):
        (verdict,) = evaluate(parse_threshold(text), endpoints, 1.0)
        assert verdict.no_data and not verdict.passed and verdict.statement == f"no endpoint matched {what}"
        assert verdict.method is None and verdict.name is None
    (each,) = evaluate(parse_threshold("each:failures<1"), [], 1.0)
    assert each.no_data and not each.passed and each.statement == "no requests"


def test_each_merges_entries_of_the_same_endpoint():
    bounds = (500.0,)
    parts = [EndpointData("GET", "/x", bounds, (3, 0), requests=3), EndpointData("GET", "/x", bounds, (0, 1), requests=1)]
    (verdict,) = evaluate(parse_threshold("each:p75<=500"), parts, 1.0)
    assert verdict.passed and verdict.statement.startswith("3 of 4 requests (75.00%) took at most 500")
    (failing,) = evaluate(parse_threshold("each:p76<=500"), parts, 1.0)
    assert not failing.passed


# ------------------------------------------------------------------------------------------------ display
def test_interpolated_percentile_is_histogram_quantile():
    # buckets le=100: 10, le=200: 30, le=400: 40, +Inf: 20  (n=100)
    data = [EndpointData("GET", "/x", (100.0, 200.0, 400.0), (10, 30, 40, 20), requests=100)]
    cases = {"p5": 0.05, "p10": 0.1, "p25": 0.15, "p50": 0.2 + 0.2 * (10 / 40), "p80": 0.4}
    for stat, seconds in cases.items():
        (verdict,) = evaluate(parse_threshold(f"{stat}<=400"), data, 1.0)
        assert verdict.interpolated and not verdict.above_buckets
        assert verdict.observed == pytest.approx(seconds), stat
    (high,) = evaluate(parse_threshold("p95<=400"), data, 1.0)
    assert high.above_buckets and high.observed == 0.4 and high.display == "p95>400ms" and not high.passed


def test_interpolation_pools_endpoints_on_their_common_bounds():
    a = EndpointData("GET", "/a", (100.0, 200.0), (1, 1, 0), requests=2)
    b = EndpointData("GET", "/b", (100.0, 150.0, 200.0), (0, 1, 1, 0), requests=2)
    (verdict,) = evaluate(parse_threshold("p75<=200"), [a, b], 1.0)
    # pooled at the common bounds: le=100: 1, le=200: 4; rank 3 lies 2/3 into (100, 200]
    assert verdict.passed and verdict.observed == pytest.approx((100 + 100 * 2 / 3) / 1000)


def test_the_maximum_is_shown_exactly_when_tracked_else_as_a_bound():
    data = [EndpointData("GET", "/x", (100.0, 200.0), (1, 1, 0), requests=2)]
    (bounded,) = evaluate(parse_threshold("max<=200"), data, 1.0)
    assert bounded.passed and bounded.interpolated and bounded.display == "max≤200ms"
    tracked = [EndpointData("GET", "/x", (100.0, 200.0), (1, 1, 0), requests=2, max_ms=187.5)]
    (exact,) = evaluate(parse_threshold("max<=200"), tracked, 1.0)
    assert not exact.interpolated and exact.observed == 0.1875 and exact.display == "max=187.5ms"
    above = [EndpointData("GET", "/x", (100.0, 200.0), (1, 1, 3), requests=5)]
    (over,) = evaluate(parse_threshold("max<=200"), above, 1.0)
    assert not over.passed and over.display == "max>200ms"
    assert over.statement == "3 of 5 requests took more than 200; passing needs none"


def test_statements_give_the_exact_counts():
    threshold = parse_threshold("p95<500ms")
    endpoints = record([threshold], {("GET", "/x"): [100.0] * 94 + [500.0] * 6})
    (verdict,) = evaluate(threshold, endpoints, 1.0)
    assert not verdict.passed  # 500 ms exactly is not < 500 ms: 94 of 100
    assert verdict.statement == ("94 of 100 requests (94.00%) took less than 500ms; passing needs at least 95 (95%)")
    (le,) = evaluate(parse_threshold("p95<=500ms"), endpoints, 1.0)
    assert le.passed and le.statement.startswith("100 of 100 requests (100.00%) took at most 500ms")
    (gt,) = evaluate(parse_threshold("p99.999>500ms"), endpoints, 1.0)
    assert gt.statement.endswith("passing needs fewer than 100 (99.999%)")


def test_shares_never_round_onto_the_threshold():
    assert format_share(94, 100, Fraction(95, 100)) == "94.00%"
    assert format_share(18999, 20000, Fraction(95, 100)) == "94.99%"  # 94.995% rounds down: not misleading
    assert format_share(189999, 200000, Fraction(95, 100)) == "94.999%"  # 94.9995%: "95.00%" would mislead
    assert format_share(95, 100, Fraction(95, 100)) == "95.00%"
    assert format_share(1999999, 2000000, Fraction(1)) == "99.9999%"  # not "100.00%"


def test_summary_lines_and_block():
    endpoints = record([], {("GET", "/a"): [100.0, 2000.0], ("GET", "/b"): [10.0]}, failures={("GET", "/a"): 1})
    verdicts = evaluate_all(parse_thresholds(["fail_ratio<1%", "each:slow_ratio<5%", "requests>=3"]), endpoints, 1.0)
    lines = summary_lines(verdicts)
    assert lines == [
        "✗ fail_ratio<1% ................. fail_ratio=33.33%  1 of 3 requests failed (33.33%)",
        "✗ each:slow_ratio<5% [GET /a] ... slow_ratio=50%  1 of 2 requests with a response time were slow (50%)",
        "✓ each:slow_ratio<5% [GET /b] ... slow_ratio=0%  0 of 1 requests with a response time were slow (0%)",
        "✓ requests>=3 ................... requests=3  3 requests",
    ]
    assert summary_lines(verdicts[:1], marks=("PASS", "FAIL"))[0].startswith("FAIL fail_ratio<1% ")
    block = summary(verdicts)
    assert block.splitlines()[0] == "Thresholds: 2 passed, 2 failed"
    assert block.splitlines()[1] == "  " + lines[0]
    assert summary([]) == ""


def test_exported_labels_and_values_are_in_base_units():
    endpoints = record([], {("GET", "/a"): [250.0, 750.0]})
    (avg,) = evaluate(parse_threshold("avg<1s"), endpoints, 1.0)
    assert avg.labels == {"threshold": "avg<1s"} and avg.observed == 0.5 and avg.display == "avg=500ms"
    (each,) = evaluate(parse_threshold("each:rps>=1"), endpoints, 4.0)
    assert each.labels == {"threshold": "each:rps>=1", "method": "GET", "name": "/a"} and each.observed == 0.5
    assert each.label == "each:rps>=1 [GET /a]" and each.display == "rps=0.50"


# ------------------------------------------------------------------------------------------------ abort and exit
def test_abort_waits_for_its_delay_and_names_the_threshold():
    thresholds = parse_thresholds(["p95<1s", "max<1s abort after 30s", "avg<1s abort"])
    endpoints = record(thresholds, {("GET", "/x"): [5000.0]})
    verdicts = evaluate_all(thresholds, endpoints, 1.0)
    assert [v.passed for v in verdicts] == [False, False, False]
    assert not verdicts[0].aborts(1e9)  # no abort flag
    assert not verdicts[1].aborts(29.9) and verdicts[1].aborts(30.0)
    assert abort_verdict(verdicts, 10.0) is verdicts[2]
    assert abort_verdict(verdicts[:2], 31.2) is verdicts[1]
    assert abort_verdict(verdicts[:2], 29.0) is None
    message = abort_message(verdicts[1], 31.24)
    assert message == ("threshold 'max<1s abort after 30s' failed at 31.2s: max≤5s (1 of 1 requests took 1s or "
                       "more; passing needs none); stopping the test (abort)")
    (each,) = evaluate(parse_threshold("each:avg<1s abort"), endpoints, 1.0)
    assert abort_message(each, 2).startswith("threshold 'each:avg<1s abort' [GET /x] failed at 2.0s: avg=5s")


def test_exit_code():
    endpoints = record(parse_thresholds(["max<1s", "max<1"]), {("GET", "/x"): [1.0]})
    passing = evaluate_all(parse_thresholds(["max<1s"]), endpoints, 1.0)
    failing = evaluate_all(parse_thresholds(["max<1s", "max<1"]), endpoints, 1.0)
    assert exit_code(passing) == 0 and exit_code(failing) == 3 and exit_code(failing, code=42) == 42
    assert exit_code(failing, current=1) == 1 and exit_code(passing, current=2) == 2 and exit_code([]) == 0


@example(text="p95<500ms")
@given(st.text(max_size=40))
def test_parsing_never_fails_with_anything_but_an_option_error(text):
    try:
        threshold = parse_threshold(text, "--metrics-threshold")
    except OptionError as exc:
        assert "--metrics-threshold" in str(exc)
    else:
        assert threshold.text == text.strip() and threshold == parse_threshold(threshold.text, "--metrics-threshold")


# ================================================================================================ reports
# JUnit XML (threshold_reports.junit_xml) and Prometheus alert rules (threshold_reports.alert_rules)

JUNIT_XSD = TESTS / "data" / "junit-strict.xsd"
HOSTILE_NAME = "/a<b>&\"c\" 'd' ]]> \x00\x1b\ufffe 🚀 {{x}}"


def junit_verdicts() -> list:
    bounds = (500.0, math.nextafter(500.0, 0), 1000.0)
    bounds = tuple(sorted(bounds))
    data = [
        EndpointData("GET", "/ok", bounds, (10, 0, 0, 0), requests=10),
        EndpointData("POST", HOSTILE_NAME, bounds, (1, 0, 0, 3), requests=4, failures=2),
    ]
    thresholds = parse_thresholds(["p95<500ms", "each:fail_ratio<1%", "/missing:p95<1s", "requests>=10"])
    return evaluate_all(thresholds, data, 60.0)


def test_junit_report_validates_and_holds_every_verdict():
    import xml.etree.ElementTree as ET

    import xmlschema

    from locust_metrics.threshold_reports import JUNIT_CLASSNAME, junit_xml

    verdicts = junit_verdicts()
    assert [v.passed for v in verdicts] == [False, False, True, False, True]  # each: sorted by name
    when = datetime.datetime(2026, 12, 1, 10, 20, 30, 123456, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    text = junit_xml(verdicts, timestamp=when, duration_s=61.25, hostname="ci-runner",
                     properties={"run_id": "abc", "host": "http://127.0.0.1:8080"})
    xmlschema.XMLSchema(str(JUNIT_XSD)).validate(text)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>')
    root = ET.fromstring(text.encode("utf-8"))
    (suite,) = root
    assert suite.attrib == {"name": "locust-metrics thresholds", "package": "locust-metrics", "id": "0",
                            "timestamp": "2026-12-01T08:20:30", "hostname": "ci-runner", "tests": "5",
                            "failures": "3", "errors": "0", "skipped": "0", "time": "61.250"}
    cases = suite.findall("testcase")
    clean_name = HOSTILE_NAME.replace("\x00", "\ufffd").replace("\x1b", "\ufffd").replace("\ufffe", "\ufffd")
    assert [c.get("name") for c in cases] == [
        "p95<500ms", f"each:fail_ratio<1% [POST {clean_name}]", "each:fail_ratio<1% [GET /ok]",
        "/missing:p95<1s", "requests>=10"]
    assert {c.get("classname") for c in cases} == {JUNIT_CLASSNAME}
    failures = {c.get("name"): c.find("failure") for c in cases}
    assert failures["each:fail_ratio<1% [GET /ok]"] is None and failures["requests>=10"] is None
    p95 = failures["p95<500ms"]
    assert p95.get("type") == "ThresholdFailed"
    assert p95.get("message") == "p95>1s: 11 of 14 requests (78.57%) took less than 500ms; passing needs at least 14 (95%)"
    assert "threshold p95<500ms failed" in p95.text
    assert failures[f"each:fail_ratio<1% [POST {clean_name}]"].get("message").startswith("fail_ratio=50%: 2 of 4")
    missing = failures["/missing:p95<1s"]
    assert missing.get("type") == "NoData" and "no endpoint matched '/missing'" in missing.get("message")
    assert [(p.get("name"), p.get("value")) for p in suite.find("properties")] == [
        ("run_id", "abc"), ("host", "http://127.0.0.1:8080")]
    out = suite.find("system-out").text
    assert out.startswith("Thresholds: 2 passed, 3 failed\n") and "✓ requests>=10" in out


def test_junit_report_without_verdicts_or_with_odd_arguments_still_validates():
    import xmlschema

    from locust_metrics.threshold_reports import junit_xml

    schema = xmlschema.XMLSchema(str(JUNIT_XSD))
    schema.validate(junit_xml([]))
    schema.validate(junit_xml(junit_verdicts(), suite_name="  ", hostname="\x00", duration_s=-1))


def test_junit_report_is_valid_for_the_schema_test_itself():
    """The schema is strict enough to reject what CI servers would not read (the check can fail)."""
    import xmlschema

    from locust_metrics.threshold_reports import junit_xml

    schema = xmlschema.XMLSchema(str(JUNIT_XSD))
    good = junit_xml(junit_verdicts(), timestamp=datetime.datetime(2026, 1, 2, 3, 4, 5))
    for bad in (good.replace('timestamp="2026-01-02T03:04:05"', 'timestamp="2026-01-02T03:04:05+00:00"'),
                good.replace(' classname="locust-metrics.thresholds"', "", 1),
                good.replace('type="ThresholdFailed"', "", 1),
                good.replace("<system-err />", ""),
                good.replace('time="0"', 'time="0s"', 1)):
        assert bad != good
        assert not schema.is_valid(bad)


# ------------------------------------------------------------------------------------------------ alert rules
RULE_THRESHOLDS = [
    "p95<500ms",
    "POST /orders:fail_ratio<1%",
    "each re:/api/.*:slow_ratio<5%",
    "avg<=200ms",
    "max<3s",
    "rps>=10",
    "failures<100",
    "each:p99<=1s",
    "requests>=1000",  # not alertable: no rule
]
ALERTABLE = [t for t in RULE_THRESHOLDS if t != "requests>=1000"]
TARGET = {"job": "locust", "instance": "master:9646"}


def _series(metric: str, labels: dict[str, str], per_step: float, steps: int = 60) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in {**TARGET, **labels}.items())
    return {"series": f"{metric}{{{inner}}}", "values": f"0+{per_step:g}x{steps}"}


def _endpoint_series(method: str, name: str, count: int, le: dict[str, int], sum_s: float, slow: int,
                     failures: int) -> list[dict[str, str]]:
    """Series of one endpoint, as locust-metrics exports them, growing by these amounts every 15 s."""
    ep = {"method": method, "name": name}
    series = [_series("locust_request_duration_seconds_bucket", {**ep, "le": bound}, n)
              for bound, n in {**le, "+Inf": count}.items()]
    series += [
        _series("locust_request_duration_seconds_count", ep, count),
        _series("locust_request_duration_seconds_sum", ep, sum_s),
        _series("locust_slow_requests_total", ep, slow),
        _series("locust_requests_total", {**ep, "status_code": "200"}, count - failures),
    ]
    if failures:
        series += [_series("locust_requests_total", {**ep, "status_code": "500"}, failures),
                   _series("locust_request_failures_total", {**ep, "error": "HTTP 500"}, failures)]
    return series


def _scenario(healthy: bool, running: bool = True) -> list[dict[str, str]]:
    if healthy:  # 30 requests/s; everything within its limits
        series = _endpoint_series("GET", "/api/products", 300, {"0.5": 297, "1.0": 300, "3.0": 300}, 30, 3, 0)
        series += _endpoint_series("POST", "/orders", 150, {"0.5": 150, "1.0": 150, "3.0": 150}, 15, 0, 1)
    else:  # 8 requests/s; /api/products: 90% <= 0.5 s, 96.7% <= 1 s, 1 above 3 s, 10% slow; /orders: 6.7% failed
        series = _endpoint_series("GET", "/api/products", 90, {"0.5": 81, "1.0": 87, "3.0": 89}, 27, 9, 0)
        series += _endpoint_series("POST", "/orders", 30, {"0.5": 30, "1.0": 30, "3.0": 30}, 3, 0, 2)
    state = {"series": 'locust_runner_state{job="locust",instance="master:9646",state="running"}',
             "values": f"{int(running)}x60"}
    return [*series, state]


def _expected_alert(threshold: str, method: str | None = None, name: str | None = None) -> dict:
    labels = {"severity": "warning", "threshold": threshold, **TARGET}
    where = ""
    if method is not None:
        labels.update(method=method, name=name)
        where = f" on {method} {name}"
    return {"exp_labels": labels, "exp_annotations": {"summary": f"Locust threshold {threshold} is failing{where}"}}


UNHEALTHY_ALERTS = [
    _expected_alert("p95<500ms"),
    _expected_alert("POST /orders:fail_ratio<1%"),
    _expected_alert("each re:/api/.*:slow_ratio<5%", "GET", "/api/products"),
    _expected_alert("avg<=200ms"),
    _expected_alert("max<3s"),
    _expected_alert("rps>=10"),
    _expected_alert("failures<100"),  # 2 failures every 15 s: 112 at 14 minutes
    _expected_alert("each:p99<=1s", "GET", "/api/products"),
]


def _write_rules(tmp_path: Path, thresholds: list) -> Path:
    """The generated rule file, and a copy without descriptions (their $value text is checked in Python)
    for promtool's unit tests, which compare annotations exactly."""
    from locust_metrics.threshold_reports import alert_rules_yaml

    rules = tmp_path / "thresholds.rules.yml"
    rules.write_text(alert_rules_yaml(thresholds))
    document = yaml.safe_load(rules.read_text())
    for rule in document["groups"][0]["rules"]:
        del rule["annotations"]["description"]
    (tmp_path / "unit.rules.yml").write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return rules


def _unit_tests(tmp_path: Path) -> Path:
    alerts = [
        ("healthy", _scenario(True), []),
        ("unhealthy", _scenario(False), UNHEALTHY_ALERTS),
        # the same, with no test running: every alert but rps>=10 (an idle Locust is not too slow)
        ("unhealthy, stopped", _scenario(False, running=False),
         [a for a in UNHEALTHY_ALERTS if a["exp_labels"]["threshold"] != "rps>=10"]),
    ]
    tests = [{"name": name, "interval": "15s", "input_series": series,
              "alert_rule_test": [{"eval_time": "14m", "alertname": "LocustThresholdFailing", "exp_alerts": exp},
                                  {"eval_time": "30s", "alertname": "LocustThresholdFailing", "exp_alerts": []}]}
             for name, series, exp in alerts]
    path = tmp_path / "thresholds.test.yml"
    path.write_text(yaml.safe_dump({"rule_files": ["unit.rules.yml"], "evaluation_interval": "15s", "tests": tests},
                                   sort_keys=False, allow_unicode=True))
    return path


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    binary = require_binary(*PROMTOOL_BINARIES)
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_generated_alert_rules_pass_promtool_check_rules(tmp_path):
    rules = _write_rules(tmp_path, RULE_THRESHOLDS + ['we{{ird}} "name":p50>1s', "each GET re:/a\\d+:max>=2s",
                                                      "requests<5", "rps>0.5"])
    result = promtool("check", "rules", str(rules), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout
    text = rules.read_text()
    assert "# not alertable: 'requests>=1000': requests>=... can only fail at the end of a test" in text


def test_generated_alert_rules_fire_exactly_when_the_thresholds_fail(tmp_path):
    _write_rules(tmp_path, RULE_THRESHOLDS)
    result = promtool("test", "rules", str(_unit_tests(tmp_path)), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("text", ALERTABLE)
def test_the_rule_unit_tests_catch_a_lost_limit(tmp_path, text):
    """With one threshold's limit made lax (same text, so the same labels), its expected alert is missing."""
    import dataclasses

    threshold = parse_threshold(text)
    lax = {"<": 1e12, "<=": 1e12, ">": 0.0, ">=": 0.0}[threshold.op]
    if threshold.stat in ("fail_ratio", "slow_ratio") and lax > 1:
        lax = 1.0
    loose = dataclasses.replace(threshold, value=lax, exact=Fraction(lax))
    _write_rules(tmp_path, [loose if t == text else t for t in RULE_THRESHOLDS])
    result = promtool("test", "rules", str(_unit_tests(tmp_path)), cwd=tmp_path)
    assert result.returncode != 0 and text in result.stdout + result.stderr, result.stdout


def test_alert_rule_shapes():
    from locust_metrics.threshold_reports import alert_expr, alert_rules, unalertable_reason

    group = alert_rules(RULE_THRESHOLDS, window="2m", for_="30s", severity="critical", group_name="g", alert_name="A")
    assert group["name"] == "g" and len(group["rules"]) == len(ALERTABLE)
    rule = group["rules"][0]
    assert rule == {
        "alert": "A",
        "expr": '(sum without (le, method, name) (rate(locust_request_duration_seconds_bucket{le="0.5"}[2m])) / '
                "sum without (method, name) (rate(locust_request_duration_seconds_count[2m])) or "
                "histogram_fraction(0, 0.5, sum without (method, name) (rate(locust_request_duration_seconds[2m])))) < 0.95",
        "for": "30s",
        "labels": {"severity": "critical", "threshold": "p95<500ms"},
        "annotations": {
            "summary": "Locust threshold p95<500ms is failing",
            "description": "{{ $value | humanizePercentage }} of the requests of the last 2m took at most 500ms; "
                           "p95<500ms needs at least 95%.",
        },
    }
    # le values are spelled as the exposition spells the bounds
    assert 'le="1.0"' in alert_expr(parse_threshold("p99<=1s"))
    assert 'le="0.2505"' in alert_expr(parse_threshold("max<250.5"))
    assert 'name=~"/a\\\\d+"' in alert_expr(parse_threshold("re:/a\\d+:avg<1"))
    assert 'method="POST", name="/x \\"y\\""' in alert_expr(parse_threshold('POST /x "y":avg<1'))
    assert unalertable_reason(parse_threshold("failures>=1")) and alert_expr(parse_threshold("failures>=1")) is None
    assert unalertable_reason(parse_threshold("failures<=1")) is None
    # Go templates: "{{" in a name is literal text
    (odd,) = alert_rules(["we{{ird}}:avg<1"])["rules"]
    assert odd["labels"]["threshold"] == 'we{{ "{{" }}ird}}:avg<1'
    with pytest.raises(ValueError, match="window='5 minutes'"):
        alert_rules(RULE_THRESHOLDS, window="5 minutes")
    with pytest.raises(OptionError):
        alert_rules(["p95<5x"])


def test_the_displayed_percentile_is_what_prometheus_histogram_quantile_gives(tmp_path):
    """Our interpolation (display only) against Prometheus's own histogram_quantile, run by promtool."""
    bounds = (100.0, 200.0, 400.0)
    endpoints = [EndpointData("GET", "/a", bounds, (10, 30, 40, 20), requests=100),
                 EndpointData("GET", "/b", bounds, (5, 5, 0, 0), requests=10)]
    series = []
    for endpoint in endpoints:
        running = 0
        for le, n in zip(["0.1", "0.2", "0.4", "+Inf"], endpoint.buckets):
            running += n
            labels = {"method": endpoint.method, "name": endpoint.name, "le": le}
            series.append({**_series("locust_request_duration_seconds_bucket", labels, 0), "values": f"{running}x10"})
    checks = []
    for stat in ("p1", "p5", "p25", "p50", "p80", "p90", "p95", "p99.9"):
        (verdict,) = evaluate(parse_threshold(f"{stat}<=400"), endpoints, 1.0)
        q = float(parse_threshold(f"{stat}<=400").quantile)
        expr = (f"abs(histogram_quantile({q!r}, sum without (method, name) (locust_request_duration_seconds_bucket))"
                f" - {verdict.observed!r}) < bool 1e-12")
        labels = "{" + ",".join(f'{k}="{v}"' for k, v in TARGET.items()) + "}"
        checks.append({"expr": expr, "eval_time": "1m", "exp_samples": [{"labels": labels, "value": 1}]})
    (tmp_path / "empty.rules.yml").write_text("groups: []\n")
    test = {"rule_files": ["empty.rules.yml"], "evaluation_interval": "15s",
            "tests": [{"interval": "15s", "input_series": series, "promql_expr_test": checks}]}
    path = tmp_path / "quantile.test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = promtool("test", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
