#!/usr/bin/env python3
"""The Grafana dashboards of dashboards/, as code.

Builds ``dashboards/locust-metrics.json`` (*Locust load test*) and ``dashboards/locust-metrics-compare.json``
(*Locust load test: compare with a baseline*) with Grafana Labs' grafana-foundation-sdk (PyPI
``grafana-foundation-sdk``, the exact version pinned in pyproject.toml's ``test`` extra; its builders follow
Grafana 11.2's dashboard schema, ``schemaVersion`` 39). Edit this file, never the JSON::

    python dashboards/generate.py           # rewrite both JSON files
    python dashboards/generate.py --check   # exit 1, naming the files, if a committed file differs

tests/test_dashboards.py fails when the committed JSON is not what this script builds, and lints the result
(datasource variable, ids, layout, units, percentiles from summed buckets); tests/test_stack_e2e.py runs every
query against a real Prometheus.

The file reads top down: PromQL (every expression written once, parametrised by grouping, window and baseline
offset, shared by both dashboards), the panel helpers, then one function per dashboard listing its rows and panels
in grid order (one block per panel; the SDK places them left to right, ids are numbered in that order).
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import heatmap as heatmap_b
from grafana_foundation_sdk.builders import prometheus as prometheus_b
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import statetimeline as statetimeline_b
from grafana_foundation_sdk.builders import table as table_b
from grafana_foundation_sdk.builders import text as text_b
from grafana_foundation_sdk.builders import timeseries as timeseries_b
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, prometheus
from grafana_foundation_sdk.models import dashboard as dash

HERE = Path(__file__).resolve().parent

# ================================================================================================== PromQL
# Label matchers every selector carries: the dashboard's variables.
RUN = 'job=~"$job", instance=~"$instance"'  # any Locust series
ENDPOINT = RUN + ', method=~"$method", name=~"$name"'  # per-endpoint series
NODE = RUN + ', node=~"$node"'  # per-process series (main dashboard only)

# Windows, and the compare dashboard's shift.
LIVE = "$__rate_interval"  # panels over time
RANGE = "$__range"  # panels over the whole time range (instant queries)
NOW = ""  # no offset
BASELINE = " offset $baseline"  # the compare dashboard's baseline run

EACH_ENDPOINT = ("method", "name")
ALL = ()  # no grouping: all selected series together

RUNNER_STATES = {"ready": "blue", "spawning": "yellow", "running": "green", "cleanup": "purple",
                 "stopping": "orange", "stopped": "text", "missing": "red"}
"""Locust's runner states, numbered 1..7 in this order in the state timeline, and their colors there."""


def _agg(op: str, by: Sequence[str], inner: str) -> str:
    """``op by (by) (inner)``, or ``op(inner)`` without grouping."""
    return f"{op} by ({', '.join(by)}) ({inner})" if by else f"{op}({inner})"


def _sel(metric: str, labels: str = ENDPOINT) -> str:
    return f"{metric}{{{labels}}}"


def _over(fn: str, metric: str, window: str, offset: str = NOW, labels: str = ENDPOINT) -> str:
    """``fn(metric{labels}[window] offset)``: rate, increase, last_over_time."""
    return f"{fn}({_sel(metric, labels)}[{window}]{offset})"


# -------------------------------------------------------------------------------------------- requests
def request_rate(by: Sequence[str] = ALL, window: str = LIVE, offset: str = NOW) -> str:
    """Completed requests per second (req/s)."""
    return _agg("sum", by, _over("rate", "locust_requests_total", window, offset))


def requests(by: Sequence[str] = ALL, offset: str = NOW) -> str:
    """Completed requests over the time range (count)."""
    return _agg("sum", by, _over("increase", "locust_requests_total", RANGE, offset))


def failure_rate(by: Sequence[str]) -> str:
    """Failed requests per second (req/s)."""
    return _agg("sum", by, _over("rate", "locust_request_failures_total", LIVE))


def failures(by: Sequence[str]) -> str:
    """Failed requests over the time range (count)."""
    return _agg("sum", by, _over("increase", "locust_request_failures_total", RANGE))


def failure_ratio(by: Sequence[str] = ALL, window: str = LIVE, offset: str = NOW) -> str:
    """Failed / completed requests (0..1); 0, not empty, when nothing failed."""
    failed = _agg("sum", by, _over("rate", "locust_request_failures_total", window, offset))
    done = _agg("sum", by, _over("rate", "locust_requests_total", window, offset))
    none_failed = f"{done} * 0" if by else "vector(0)"  # `* 0` keeps each endpoint's labels
    return f"({failed} or {none_failed}) / {done}"


def response_bytes_rate(by: Sequence[str]) -> str:
    """Response body bytes per second (B/s)."""
    return _agg("sum", by, _over("rate", "locust_response_size_bytes_total", LIVE))


# -------------------------------------------------------------------------------------------- response times
def buckets(by: Sequence[str] = ALL, window: str = LIVE, offset: str = NOW) -> str:
    """Response time histogram buckets per second, summed by ``le`` (and ``by``)."""
    return _agg("sum", ("le", *by), _over("rate", "locust_request_duration_seconds_bucket", window, offset))


def native(by: Sequence[str] = ALL, window: str = LIVE, offset: str = NOW) -> str:
    """The native response time histogram's rate, summed by ``by`` (where Prometheus ingested it natively)."""
    return _agg("sum", by, _over("rate", "locust_request_duration_seconds", window, offset))


def classic_unless_native(by: Sequence[str] = ALL, window: str = LIVE, offset: str = NOW) -> str:
    """The classic buckets (:func:`buckets`) only where Prometheus has no native histogram (:func:`native`) at
    that time: where it stores both (3.x with ``always_scrape_classic_histograms``), the native one alone."""
    return f"{buckets(by, window, offset)} unless on() {native(by, window, offset)}"


def quantile(q: float, by: Sequence[str] = ALL, window: str = LIVE, offset: str = NOW) -> str:
    """Response time percentile in seconds, from buckets summed first (never an average of percentiles): from
    the native histogram where Prometheus has it (exact buckets at any percentile), else the classic buckets."""
    return (f"histogram_quantile({q}, {native(by, window, offset)}) "
            f"or histogram_quantile({q}, {buckets(by, window, offset)})")


def p95_change(by: Sequence[str]) -> str:
    """p95 now / p95 baseline - 1 over the time range (0.1 = 10% slower)."""
    return f"({quantile(0.95, by, RANGE)}) / ({quantile(0.95, by, RANGE, BASELINE)}) - 1"


def slow_rate(by: Sequence[str]) -> str:
    """Requests slower than their endpoint's slow threshold, per second (req/s)."""
    return _agg("sum", by, _over("rate", "locust_slow_requests_total", LIVE))


def slow_ratio(by: Sequence[str] = ALL, window: str = LIVE, offset: str = NOW) -> str:
    """Slow requests / requests with a response time (0..1)."""
    slow = _agg("sum", by, _over("rate", "locust_slow_requests_total", window, offset))
    timed = _agg("sum", by, _over("rate", "locust_request_duration_seconds_count", window, offset))
    timed_native = f"histogram_count({native(by, window, offset)})"  # no _count series where ingested natively
    return f"{slow} / ({timed} or {timed_native})"


def slow_threshold() -> str:
    """Each endpoint's slow threshold in force, seconds."""
    return _agg("max", EACH_ENDPOINT, _sel("locust_slow_request_threshold_seconds"))


def slow_threshold_in_range() -> str:
    """Each endpoint's last slow threshold in the time range, seconds."""
    return _agg("max", EACH_ENDPOINT, _over("last_over_time", "locust_slow_request_threshold_seconds", RANGE))


def recorded(series: str) -> str:
    """A per-endpoint series recorded by deploy/prometheus/rules (what an alert compares with its limit)."""
    return _sel(series)


# -------------------------------------------------------------------------------------------- users, runner, nodes
def users(by: Sequence[str] = ALL, offset: str = NOW) -> str:
    """Running users."""
    return _agg("sum", by, _sel("locust_users", RUN) + offset)


def users_target(op: str) -> str:
    """The target user count (``op``: how to combine several masters)."""
    return _agg(op, ALL, _sel("locust_users_target", RUN))


def workers(state: str = "") -> str:
    """Workers in ``state`` (a label matcher such as ``state="missing"``), or by state."""
    if state:
        return _agg("sum", ALL, _sel("locust_workers", f"{RUN}, {state}"))
    return _agg("sum", ("state",), _sel("locust_workers", RUN))


def runner_state_now() -> str:
    """The runner state seen last in the past minute, as a series labelled ``state``."""
    return _agg("max", ("state",), _over("last_over_time", "locust_runner_state", "1m", labels=RUN)) + " == 1"


def runner_state_number() -> str:
    """The runner state as a number 1..7 (RUNNER_STATES' order) per Locust instance."""
    return "\n+ ".join(f"{number} * " + _agg("max", ("job", "instance"),
                                             _sel("locust_runner_state", f'{RUN}, state="{state}"'))
                       for number, state in enumerate(RUNNER_STATES, 1))


def node_gauge(metric: str, by: Sequence[str]) -> str:
    """A per-process gauge: the highest of the selected nodes (by ``by``)."""
    return _agg("max", by, _sel(metric, NODE))


# -------------------------------------------------------------------------------------------- test runs, exporter
def firing_alerts() -> str:
    """The Locust alerts firing now (Prometheus' ALERTS series)."""
    return _sel("ALERTS", f'alertname=~"Locust.*", alertstate="firing", {RUN}')


def last_in_range(metric: str, by: Sequence[str]) -> str:
    """The last value of an info-style series in the time range, by ``by``."""
    return _agg("max", by, _over("last_over_time", metric, RANGE, labels=RUN))


def started_ms() -> str:
    """When the current test started, in milliseconds (for the dateTime units)."""
    return _agg("max", ALL, _sel("locust_test_start_time_seconds", RUN)) + " * 1000"


def start_stop_ms(metric: str) -> str:
    """A test start/stop timestamp per Locust instance, in milliseconds (annotations use it as their time)."""
    return _agg("max", ("job", "instance"), _over("last_over_time", metric, "1m", labels=RUN)) + " * 1000"


def dropped_names() -> str:
    """Requests folded into name="__overflow__" over the time range."""
    return _agg("sum", ALL, _over("increase", "locust_metrics_dropped_names_total", RANGE, labels=RUN))


def exporter_faults() -> str:
    """Faults of locust-metrics itself over the time range: errors, render fallbacks, failed pushes."""
    return " + ".join(f"({_agg('sum', ALL, _over('increase', metric, RANGE, labels=RUN))} or vector(0))" for metric in
                      ("locust_metrics_errors_total", "locust_metrics_fallbacks_total",
                       "locust_metrics_push_failures_total"))


def exporter_faults_by(metric: str, label: str) -> str:
    """One of locust-metrics' fault counters per ``label`` (source, path), as increases per rate interval."""
    return _agg("sum", (label,), _over("increase", metric, LIVE, labels=RUN))


def label_values(metric: str, label: str, matchers: str = "") -> str:
    """A variable's query: the values of ``label`` on ``metric{matchers}``."""
    return f"label_values({_sel(metric, matchers) if matchers else metric}, {label})"


# ================================================================================================== helpers
DS = dash.DataSourceRef(type_val="prometheus", uid="${DS_PROMETHEUS}")
"""Every panel, query, variable and annotation uses the dashboard's datasource variable."""

# Grafana units, named by what a query returns (tests/test_dashboards.py checks each query gets a fitting one).
REQ_PER_S = "reqps"
SECONDS = "s"
RATIO = "percentunit"  # 0..1, shown as %
COUNT = "short"
BYTES = "bytes"
BYTES_PER_S = "Bps"
NO_UNIT = "none"  # text from labels (states, versions)
TIME_AGO = "dateTimeFromNow"  # a timestamp in ms

GREEN = ("green", None)


def shown() -> common_b.HideSeriesConfig:
    """Series hidden nowhere (legend, tooltip, graph)."""
    return common_b.HideSeriesConfig().legend(False).tooltip(False).viz(False)


def thresholds(*steps: tuple[str, float | None]) -> dash_b.ThresholdsConfig:
    """Absolute thresholds: ``("green", None)`` (the base), then ``(color, from value)``."""
    return (dash_b.ThresholdsConfig().mode(dash.ThresholdsMode.ABSOLUTE)
            .steps([dash.Threshold(value=value, color=color) for color, value in steps]))


RATIO_STEPS = (GREEN, ("orange", 0.01), ("red", 0.05))  # failure and slow ratios: 1% orange, 5% red
ALERT_RATIO_STEPS = (GREEN, ("red", 0.05))  # the alerts' 5% limit


def prop(id_: str, value: Any) -> dash.DynamicConfigValue:
    """One property of a field override."""
    return dash.DynamicConfigValue(id_val=id_, value=value)


DASHED = prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]})
NO_FILL = prop("custom.fillOpacity", 0)


def fixed_color(color: str) -> dash.DynamicConfigValue:
    return prop("color", {"mode": "fixed", "fixedColor": color})


REF_IDS = string.ascii_uppercase


@dataclass
class Q:
    """One query of a panel: PromQL and its legend (refIds are given in order: A, B, C, ...)."""

    expr: str
    legend: str = "__auto"


def targets(queries: Sequence[Q], *, instant: bool = False, fmt: prometheus.PromQueryFormat | None = None
            ) -> list[prometheus_b.Dataquery]:
    """Prometheus queries in code mode on the datasource variable, refIds A, B, C, ..."""
    built = []
    for i, q in enumerate(queries):
        t = (prometheus_b.Dataquery().datasource(DS).editor_mode(prometheus.QueryEditorMode.CODE)
             .expr(q.expr).legend_format(q.legend).ref_id(REF_IDS[i]))
        t = t.instant() if instant else t.range()
        if fmt is not None:
            t = t.format(fmt)
        built.append(t)
    return built


def stat(title: str, description: str, unit: str, queries: Sequence[Q], *, w: int, h: int,
         steps: Sequence[tuple[str, float | None]] = (GREEN,), decimals: float | None = None,
         color: common.BigValueColorMode = common.BigValueColorMode.VALUE,
         graph: common.BigValueGraphMode = common.BigValueGraphMode.AREA,
         text: common.BigValueTextMode = common.BigValueTextMode.AUTO, instant: bool = False) -> stat_b.Panel:
    """A stat panel: the last value of each query."""
    panel = (stat_b.Panel().title(title).description(description).datasource(DS).span(w).height(h)
             .unit(unit).color_scheme(dash_b.FieldColor().mode(dash.FieldColorModeId.THRESHOLDS))
             .thresholds(thresholds(*steps)).mappings([])
             .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
             .orientation(common.VizOrientation.AUTO).text_mode(text).color_mode(color).graph_mode(graph)
             .justify_mode(common.BigValueJustifyMode.AUTO).wide_layout(True).show_percent_change(False)
             .targets(targets(queries, instant=instant)))
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def timeseries(title: str, description: str, unit: str, queries: Sequence[Q], *, w: int, h: int,
               steps: Sequence[tuple[str, float | None]] = (GREEN,), decimals: float | None = None,
               stacked: bool = False) -> timeseries_b.Panel:
    """A time series panel: lines from 0, a table legend with mean/max/last, shared tooltip.

    ``steps`` beyond the base draw dashed threshold lines (an alert's limit).
    """
    stacking = common.StackingMode.NORMAL if stacked else common.StackingMode.NONE
    limit_lines = common.GraphThresholdsStyleMode.DASHED if len(steps) > 1 else common.GraphThresholdsStyleMode.OFF
    panel = (timeseries_b.Panel().title(title).description(description).datasource(DS).span(w).height(h)
             .unit(unit).color_scheme(dash_b.FieldColor().mode(dash.FieldColorModeId.PALETTE_CLASSIC))
             .draw_style(common.GraphDrawStyle.LINE).line_width(1).fill_opacity(10)
             .gradient_mode(common.GraphGradientMode.NONE).show_points(common.VisibilityMode.NEVER).point_size(4)
             .line_interpolation(common.LineInterpolation.LINEAR).span_nulls(False).insert_nulls(False)
             .axis_placement(common.AxisPlacement.AUTO).axis_label("").axis_border_show(False)
             .axis_centered_zero(False).axis_color_mode(common.AxisColorMode.TEXT)
             .bar_alignment(common.BarAlignment.CENTER)
             .scale_distribution(common_b.ScaleDistributionConfig().type(common.ScaleDistribution.LINEAR))
             .hide_from(shown())
             .stacking(common_b.StackingConfig().mode(stacking).group("A"))
             .thresholds_style(common_b.GraphThresholdsStyleConfig().mode(limit_lines))
             .mappings([]).thresholds(thresholds(*steps)).min(0)
             .legend(common_b.VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.TABLE)
                     .placement(common.LegendPlacement.BOTTOM).calcs(["mean", "max", "lastNotNull"]))
             .tooltip(common_b.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                      .sort(common.SortOrder.DESCENDING))
             .targets(targets(queries)))
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def per_endpoint(title: str, description: str, unit: str, expr: str, **kwargs: Any) -> timeseries_b.Panel:
    """A time series with one line per endpoint."""
    return timeseries(title, description, unit, [Q(expr, "{{method}} {{name}}")], **kwargs)


def now_vs_baseline(title: str, description: str, unit: str, query: Callable[..., str], *, w: int, h: int,
                    **kwargs: Any) -> timeseries_b.Panel:
    """A compare time series: ``query(offset=NOW)``, and ``query(offset=BASELINE)`` dashed."""
    return (timeseries(title, description, unit, [Q(query(offset=NOW), "now"), Q(query(offset=BASELINE), "baseline")],
                       w=w, h=h, **kwargs)
            .override_by_query("B", [DASHED, NO_FILL]))


def bucket_heatmap(title: str, description: str, native_expr: str, classic_expr: str, *, w: int, h: int
                   ) -> heatmap_b.Panel:
    """A heatmap of response time buckets as Prometheus returns them (no recalculation), bounds in seconds.

    Query A, ``native_expr``, returns native histogram samples where Prometheus stores them: Grafana's Prometheus
    datasource turns each into a sparse ``heatmap-cells`` frame (one cell per non-empty bucket, from its lower to
    its upper bound), which the heatmap draws on a log2 y axis in preference to any other frame of the panel.
    Query B, ``classic_expr`` (``format: heatmap``, legend ``{{le}}``), returns the classic ``le`` buckets,
    which Grafana de-accumulates into rows; it must return nothing where A has data (``unless on() ...``), so the
    panel never holds both.
    """
    native_query = (prometheus_b.Dataquery().datasource(DS).editor_mode(prometheus.QueryEditorMode.CODE)
                    .expr(native_expr).legend_format("native").ref_id("A").range()
                    .format(prometheus.PromQueryFormat.TIME_SERIES))
    classic_query = (prometheus_b.Dataquery().datasource(DS).editor_mode(prometheus.QueryEditorMode.CODE)
                     .expr(classic_expr).legend_format("{{le}}").ref_id("B").range()
                     .format(prometheus.PromQueryFormat.HEATMAP))
    return (heatmap_b.Panel().title(title).description(description).datasource(DS).span(w).height(h)
            .unit(REQ_PER_S).hide_from(shown())
            .scale_distribution(common_b.ScaleDistributionConfig().type(common.ScaleDistribution.LINEAR))
            .calculate(False).cell_gap(1).cell_values(heatmap_b.CellValues().unit(REQ_PER_S))
            .color(heatmap_b.HeatmapColorOptions().mode("scheme").scheme("Oranges").fill("dark-orange")
                   .scale("exponential").exponent(0.5).steps(64).reverse(False))
            .exemplars_color("rgba(255,0,255,0.7)").filter_values(heatmap_b.FilterValueRange().le(1e-09))
            .show_legend().rows_frame(heatmap_b.RowsHeatmapOptions().layout("auto"))
            .mode(common.TooltipDisplayMode.SINGLE).show_y_histogram().show_color_scale(False)
            .y_axis(heatmap_b.YAxisConfig().axis_placement(common.AxisPlacement.LEFT).reverse(False).unit(SECONDS))
            .targets([native_query, classic_query]))


def state_timeline(title: str, description: str, expr: str, states: dict[str, str], *, w: int, h: int
                   ) -> statetimeline_b.Panel:
    """A state timeline of a query whose value is a state's number: 1 = the first of ``states`` (name: color)."""
    mappings = {str(number): dash.ValueMappingResult(text=state, color=color, index=number - 1)
                for number, (state, color) in enumerate(states.items(), 1)}
    return (statetimeline_b.Panel().title(title).description(description).datasource(DS).span(w).height(h)
            .unit(NO_UNIT).color_scheme(dash_b.FieldColor().mode(dash.FieldColorModeId.THRESHOLDS))
            .thresholds(thresholds(GREEN)).fill_opacity(80).line_width(0).hide_from(shown())
            .mappings([dash.ValueMap(options=mappings)])
            .merge_values(True).show_value(common.VisibilityMode.AUTO).align_value("left").row_height(0.9)
            .legend(common_b.VizLegendOptions().show_legend(False).display_mode(common.LegendDisplayMode.LIST)
                    .placement(common.LegendPlacement.BOTTOM))
            .tooltip(common_b.VizTooltipOptions().mode(common.TooltipDisplayMode.SINGLE).sort(common.SortOrder.NONE))
            .targets(targets([Q(expr, "{{instance}}")])))


def info_table(title: str, description: str, query: Q, *, w: int, h: int,
               exclude: Iterable[str], order: Sequence[str] = ()) -> table_b.Panel:
    """A table of one instant query's series labels (``exclude``d columns hidden, ``order`` first)."""
    return (table_b.Panel().title(title).description(description).datasource(DS).span(w).height(h)
            .unit(NO_UNIT).align(common.FieldTextAlignment.AUTO).cell_options(common.TableAutoCellOptions())
            .inspect(False).mappings([]).thresholds(thresholds(GREEN))
            .show_header(True).cell_height(common.TableCellHeight.SM).footer(_no_footer())
            .transformations([_organize(exclude, {}, order)])
            .targets(targets([query], instant=True, fmt=prometheus.PromQueryFormat.TABLE)))


@dataclass
class Column:
    """One value column of an endpoint table: its header, query, unit and cell thresholds (colored text)."""

    name: str
    expr: str
    unit: str
    decimals: float | None = None
    steps: Sequence[tuple[str, float | None]] = ()


def endpoint_table(title: str, description: str, columns: Sequence[Column], *, sort_by: str, w: int, h: int
                   ) -> table_b.Panel:
    """One row per endpoint over the time range: one instant query per column, merged on method and name."""
    panel = (table_b.Panel().title(title).description(description).datasource(DS).span(w).height(h)
             .unit(COUNT).align(common.FieldTextAlignment.AUTO).cell_options(common.TableAutoCellOptions())
             .inspect(False).filterable(True).mappings([]).thresholds(thresholds(GREEN))
             .show_header(True).cell_height(common.TableCellHeight.SM).footer(_no_footer())
             .sort_by([common_b.TableSortByFieldState().display_name(sort_by).desc(True)]))
    for c in columns:
        unit = [prop("unit", c.unit)] + ([prop("decimals", c.decimals)] if c.decimals is not None else [])
        panel = panel.override_by_name(c.name, unit)
    for c in columns:
        if c.steps:
            panel = panel.override_by_name(c.name, [prop("custom.cellOptions", {"type": "color-text"}),
                                                    prop("thresholds", thresholds(*c.steps).build())])
    rename = {f"Value #{REF_IDS[i]}": c.name for i, c in enumerate(columns)}
    order = ["method", "name", *(c.name for c in columns)]
    return (panel.transformations([dash.DataTransformerConfig(id_val="merge", options={}),
                                   _organize(["Time"], rename, order)])
            .targets(targets([Q(c.expr) for c in columns], instant=True, fmt=prometheus.PromQueryFormat.TABLE)))


def _no_footer() -> common_b.TableFooterOptions:
    return common_b.TableFooterOptions().show(False).reducer(["sum"]).count_rows(False).fields("")


def _organize(exclude: Iterable[str], rename: dict[str, str], order: Sequence[str]) -> dash.DataTransformerConfig:
    return dash.DataTransformerConfig(id_val="organize", options={
        "excludeByName": {name: True for name in exclude}, "renameByName": rename,
        "indexByName": {name: i for i, name in enumerate(order)}})


class _WithFields(cogbuilder.Builder[Any]):
    """A builder whose built object's JSON gets ``fields`` the SDK's model lacks, after the model's own.

    Used for a query variable's ``definition``, an ad hoc variable's ``filters``, and the Prometheus annotation
    fields (``step``, ``titleFormat``, ``useValueForTime``, ...; grafana/grafana-foundation-sdk issue 282).
    """

    def __init__(self, builder: Any, **fields: Any) -> None:
        self.builder, self.fields = builder, fields

    def build(self) -> Any:
        built = self.builder.build()
        model_json = built.to_json
        built.to_json = lambda: {**model_json(), **self.fields}
        return built


def query_variable(name: str, label: str, description: str, query: str) -> _WithFields:
    """A multi-value variable on the values of a label, *All* by default (matched as the regex ``.*``)."""
    return _WithFields(
        dash_b.QueryVariable(name).label(label).description(description).datasource(DS)
        .query({"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"})
        .refresh(dash.VariableRefresh.ON_TIME_RANGE_CHANGED).regex("").sort(dash.VariableSort.ALPHABETICAL_ASC)
        .multi(True).include_all(True).all_value(".*")
        .current(dash.VariableOption(selected=True, text=["All"], value=["$__all"])).options([])
        .hide(dash.VariableHide.DONT_HIDE),
        definition=query)


def common_variables() -> list[Any]:
    """Datasource, job, instance, method and name: the variables both dashboards start with."""
    return [
        dash_b.DatasourceVariable("DS_PROMETHEUS").label("Data source")
        .description("The Prometheus that scrapes your Locust master.").type("prometheus").regex("")
        .multi(False).include_all(False).hide(dash.VariableHide.DONT_HIDE),
        query_variable("job", "Job", "Prometheus job of the Locust master(s).",
                       label_values("locust_metrics_info", "job")),
        query_variable("instance", "Instance", "The scraped Locust master (or single Locust process).",
                       label_values("locust_metrics_info", "instance", 'job=~"$job"')),
        query_variable("method", "Method", "Locust request type (HTTP method, or your own for non-HTTP users).",
                       label_values("locust_requests_total", "method", RUN)),
        query_variable("name", "Name", "Locust request name (endpoint).",
                       label_values("locust_requests_total", "name", RUN + ', method=~"$method"')),
    ]


def filters_variable() -> _WithFields:
    return _WithFields(
        dash_b.AdHocVariable("filters").label("Filters").description(
            "Extra label filters added to every query, e.g. the constant labels you give Locust with "
            "--metrics-label env=staging.").datasource(DS).hide(dash.VariableHide.DONT_HIDE),
        filters=[])


def start_stop_annotation(name: str, metric: str, color: str) -> _WithFields:
    """Marks each test's start or stop at the timestamp the exporter reports (one per Locust instance)."""
    return _WithFields(
        dash_b.AnnotationQuery().name(name).datasource(DS).enable(True).hide(False).icon_color(color)
        .expr(start_stop_ms(metric)),
        step="5s", titleFormat=name, textFormat="{{instance}}", tagKeys="instance", useValueForTime=True,
        refId=name.replace(" ", ""))


def base_dashboard(uid: str, title: str, description: str, *, time_from: str, refresh: str) -> dash_b.Dashboard:
    """What both dashboards share: tags, time settings, shared crosshair, the built-in annotations, the link menu."""
    return (dash_b.Dashboard(title).uid(uid).description(description).tags(["locust", "load-testing", "locust-metrics"])
            .editable().tooltip(dash.DashboardCursorSync.CROSSHAIR).time(time_from, "now").refresh(refresh)
            .timepicker(dash_b.TimePicker().refresh_intervals(["5s", "10s", "30s", "1m", "5m"]))
            .timezone("browser").fiscal_year_start_month(0).live_now(False).week_start("").version(1)
            .annotation(dash_b.AnnotationQuery().built_in(1).datasource(dash.DataSourceRef(type_val="grafana",
                                                                                          uid="-- Grafana --"))
                        .enable(True).hide(True).icon_color("rgba(0, 211, 255, 1)").name("Annotations & Alerts")
                        .type("dashboard"))
            .annotation(start_stop_annotation("Test start", "locust_test_start_time_seconds", "green"))
            .annotation(start_stop_annotation("Test stop", "locust_test_stop_time_seconds", "red"))
            .link(dash_b.DashboardLink("Locust dashboards").type(dash.DashboardLinkType.DASHBOARDS).tags(["locust"])
                  .as_dropdown(True).include_vars(True).keep_time(True).icon("external link").target_blank(False)
                  .tooltip("").url("")))


def row(title: str) -> dash_b.Row:
    return dash_b.Row(title)


def layout(board: dash_b.Dashboard, items: Sequence[Any]) -> dash_b.Dashboard:
    """Adds rows and panels in grid order, with ids 1, 2, 3, ... (the SDK places each after the previous)."""
    for number, item in enumerate(items, 1):
        item.id(number)
        if isinstance(item, dash_b.Row):
            board.with_row(item)
        else:
            board.with_panel(item)
    return board


# ================================================================================================== main dashboard
def main_dashboard() -> dash_b.Dashboard:
    """*Locust load test*: a running test at a glance."""
    board = base_dashboard(
        "locust-metrics", "Locust load test",
        "Live view of a Locust load test exported by locust-metrics: throughput, failures, response time "
        "percentiles from histogram buckets, slow requests, users, workers and load generator health.",
        time_from="now-15m", refresh="5s")
    for variable in common_variables():
        board.with_variable(variable)
    board.with_variable(query_variable("node", "Node", "Locust process: local, master or worker-<index>.",
                                       label_values("locust_process_cpu_usage_ratio", "node", RUN)))
    board.with_variable(filters_variable())

    return layout(board, [
        row("Overview"),
        stat("Requests/s", "Completed requests per second, all selected endpoints.", REQ_PER_S,
             [Q(request_rate(), "requests/s")], w=3, h=4, decimals=1),
        stat("Failure ratio", "Failed requests / completed requests, all selected endpoints.", RATIO,
             [Q(failure_ratio(), "failures")], w=3, h=4, steps=RATIO_STEPS, decimals=2),
        stat("p95 response time", "95th percentile response time of all selected endpoints together, from the "
             "summed histogram buckets.", SECONDS,
             [Q(quantile(0.95), "p95")], w=3, h=4, steps=(GREEN, ("orange", 1), ("red", 2))),
        stat("Slow ratio", "Requests slower than their endpoint's slow threshold / requests with a response time.",
             RATIO, [Q(slow_ratio(), "slow")], w=3, h=4, steps=RATIO_STEPS, decimals=2),
        stat("Users", "Running users (all user classes) and the target user count.", COUNT,
             [Q(users(), "running"), Q(users_target("sum"), "target")], w=3, h=4,
             color=common.BigValueColorMode.NONE),
        stat("Runner state now", "Current state of the Locust runner (ready, spawning, running, cleanup, stopping, "
             "stopped, missing); the last one seen in the past minute.", NO_UNIT,
             [Q(runner_state_now(), "{{state}}")], w=3, h=4, instant=True, color=common.BigValueColorMode.NONE,
             graph=common.BigValueGraphMode.NONE, text=common.BigValueTextMode.NAME),
        stat("Workers", "Workers connected to the master, and missing ones (distributed runs only).", COUNT,
             [Q(workers('state!="missing"'), "connected"), Q(workers('state="missing"'), "missing")], w=3, h=4,
             color=common.BigValueColorMode.NONE),
        stat("Busiest node CPU", "CPU use of the busiest Locust process (1 = 100% of one core). At 90% Locust warns "
             "that its numbers become unreliable.", RATIO,
             [Q(node_gauge("locust_process_cpu_usage_ratio", ALL), "cpu")], w=3, h=4,
             steps=(GREEN, ("orange", 0.75), ("red", 0.9)), decimals=0),

        row("Requests"),
        per_endpoint("Requests/s by endpoint", "Completed requests per second (success or failure) by method and "
                     "name.", REQ_PER_S, request_rate(EACH_ENDPOINT), w=12, h=8),
        timeseries("Failures/s by error", "Failed requests per second by endpoint and error (\"HTTP 500\", a failure "
                   "message, or an exception class).", REQ_PER_S,
                   [Q(failure_rate(("method", "name", "error")), "{{method}} {{name}}: {{error}}")], w=12, h=8),
        timeseries("Failure ratio", "Failed / completed requests by endpoint, and for all selected endpoints. The "
                   "dashed line is the LocustHighFailureRatio limit (5%).", RATIO,
                   [Q(failure_ratio(EACH_ENDPOINT), "{{method}} {{name}}"), Q(failure_ratio(), "all selected")],
                   w=12, h=8, steps=ALERT_RATIO_STEPS)
        .override_by_query("B", [prop("custom.lineWidth", 2), fixed_color("red")]),
        timeseries("Requests/s by status code", "Completed requests per second by HTTP status code (\"0\": no "
                   "response, or a non-HTTP request).", REQ_PER_S,
                   [Q(request_rate(("status_code",)), "{{status_code}}")], w=12, h=8, stacked=True),

        row("Response times"),
        timeseries("Response time percentiles (all selected endpoints)", "p50, p90, p95 and p99 of all selected "
                   "endpoints together: histogram_quantile over the summed buckets (percentiles of different "
                   "endpoints are never averaged).", SECONDS,
                   [Q(quantile(q), f"p{round(q * 100)}") for q in (0.5, 0.9, 0.95, 0.99)], w=12, h=9),
        bucket_heatmap("Response time heatmap", "Requests per second in each response time bucket (all selected "
                       "endpoints). Where Prometheus stores the native histogram (--metrics-native-histograms), its "
                       "exponential buckets (about 1% wide at the default schema 6) on a logarithmic axis; "
                       "otherwise the classic buckets: the exporter's --metrics-buckets plus every slow threshold.",
                       native(), classic_unless_native(), w=12, h=9),
        per_endpoint("p95 by endpoint", "95th percentile response time of each endpoint, from its own buckets.",
                     SECONDS, quantile(0.95, EACH_ENDPOINT), w=12, h=8),
        per_endpoint("p99 by endpoint", "99th percentile response time of each endpoint, from its own buckets.",
                     SECONDS, quantile(0.99, EACH_ENDPOINT), w=12, h=8),

        row("Slow requests"),
        per_endpoint("Slow requests/s by endpoint", "Requests per second slower than their endpoint's slow threshold "
                     "(--metrics-slow-threshold, --metrics-slow-threshold-for).", REQ_PER_S,
                     slow_rate(EACH_ENDPOINT), w=12, h=8),
        timeseries("Slow ratio against the threshold", "Share of each endpoint's requests slower than its slow "
                   "threshold (left axis), and the threshold in force (dashed, right axis). The red dashed line is "
                   "the LocustSlowRequests limit (5%).", RATIO,
                   [Q(slow_ratio(EACH_ENDPOINT), "{{method}} {{name}}"),
                    Q(slow_threshold(), "threshold {{method}} {{name}}")], w=12, h=8, steps=ALERT_RATIO_STEPS)
        .override_by_query("B", [prop("unit", SECONDS), prop("custom.axisPlacement", "right"), DASHED, NO_FILL,
                                 prop("custom.axisLabel", "threshold")]),

        row("Users and runner"),
        timeseries("Users by class and target", "Running users by user class; the dashed line is the target user "
                   "count.", COUNT,
                   [Q(users(("user_class",)), "{{user_class}}"), Q(users_target("max"), "target")], w=8, h=8,
                   decimals=0)
        .override_by_query("B", [DASHED, NO_FILL, fixed_color("text")]),
        state_timeline("Runner state", "State of each Locust runner over time.", runner_state_number(),
                       RUNNER_STATES, w=8, h=8),
        timeseries("Workers by state", "Workers connected to the master by state (distributed runs only).", COUNT,
                   [Q(workers(), "{{state}}")], w=8, h=8, decimals=0, stacked=True)
        .override_by_name("missing", [fixed_color("red")]),

        row("Load generators"),
        timeseries("CPU per node", "CPU use of each Locust process (1 = 100% of one core). Above the 0.9 line Locust "
                   "warns that the load generator is saturated: response times become unreliable "
                   "(LocustLoadGeneratorCpuSaturated).", RATIO,
                   [Q(node_gauge("locust_process_cpu_usage_ratio", ("node",)), "{{node}}")], w=8, h=8,
                   steps=(GREEN, ("red", 0.9))),
        timeseries("Memory per node", "Resident memory of each Locust process.", BYTES,
                   [Q(node_gauge("locust_process_resident_memory_bytes", ("node",)), "{{node}}")], w=8, h=8),
        per_endpoint("Response bytes/s by endpoint", "Bytes of response bodies received per second.", BYTES_PER_S,
                     response_bytes_rate(EACH_ENDPOINT), w=8, h=8),

        row("Endpoints (over the selected time range)"),
        endpoint_table("Endpoints", "Per endpoint over the dashboard's time range: requests, failures, percentiles "
                       "from the endpoint's own buckets, and the share of slow requests against the threshold in "
                       "force.", [
                           Column("Requests", requests(EACH_ENDPOINT), COUNT, 0),
                           Column("Requests/s", request_rate(EACH_ENDPOINT, RANGE), REQ_PER_S, 2),
                           Column("Failures", failures(EACH_ENDPOINT), COUNT, 0),
                           Column("Failure %", failure_ratio(EACH_ENDPOINT, RANGE), RATIO, 2, RATIO_STEPS),
                           Column("p50", quantile(0.5, EACH_ENDPOINT, RANGE), SECONDS),
                           Column("p95", quantile(0.95, EACH_ENDPOINT, RANGE), SECONDS),
                           Column("p99", quantile(0.99, EACH_ENDPOINT, RANGE), SECONDS),
                           Column("Slow %", slow_ratio(EACH_ENDPOINT, RANGE), RATIO, 2, RATIO_STEPS),
                           Column("Slow threshold", slow_threshold_in_range(), SECONDS),
                       ], sort_by="Requests", w=24, h=10),

        row("Alert signals (recording rules of deploy/prometheus/rules)"),
        info_table("Firing alerts", "Locust alerts firing now (Prometheus' ALERTS series; needs the shipped alert "
                   "rules).", Q(firing_alerts()), w=24, h=5, exclude=["Time", "Value", "__name__", "alertstate"],
                   order=["alertname", "severity", "method", "name", "node"]),
        per_endpoint("Slow ratio, 1m (LocustSlowRequests)", "endpoint:locust_slow_request_ratio:rate1m, what "
                     "LocustSlowRequests compares with its limit (dashed, 5%).", RATIO,
                     recorded("endpoint:locust_slow_request_ratio:rate1m"), w=8, h=8, steps=ALERT_RATIO_STEPS),
        per_endpoint("p95, 1m (LocustHighLatencyP95)", "endpoint:locust_request_duration_seconds:p95_rate1m, what "
                     "LocustHighLatencyP95 compares with its limit (dashed, 2 s).", SECONDS,
                     recorded("endpoint:locust_request_duration_seconds:p95_rate1m"), w=8, h=8,
                     steps=(GREEN, ("red", 2))),
        per_endpoint("Failure ratio, 1m (LocustHighFailureRatio)", "endpoint:locust_request_failure_ratio:rate1m, "
                     "what LocustHighFailureRatio compares with its limit (dashed, 5%).", RATIO,
                     recorded("endpoint:locust_request_failure_ratio:rate1m"), w=8, h=8, steps=ALERT_RATIO_STEPS),

        row("Test run and exporter"),
        info_table("Test runs", "Every test run in the time range (locust_test_info): master, run id, target host "
                   "and locustfile.",
                   Q(last_in_range("locust_test_info", ("instance", "run_id", "host", "locustfile"))),
                   w=12, h=5, exclude=["Time", "Value"]),
        stat("Test started", "When the current test started (locust_test_start_time_seconds).", TIME_AGO,
             [Q(started_ms(), "started")], w=4, h=5,
             color=common.BigValueColorMode.NONE, graph=common.BigValueGraphMode.NONE),
        stat("Versions", "locust-metrics and Locust versions of the exporter (locust_metrics_info).", NO_UNIT,
             [Q(last_in_range("locust_metrics_info", ("version", "locust_version")),
                "locust-metrics {{version}}, Locust {{locust_version}}")], w=4, h=5, instant=True,
             color=common.BigValueColorMode.NONE, graph=common.BigValueGraphMode.NONE,
             text=common.BigValueTextMode.NAME),
        stat("Requests folded into __overflow__", "Requests counted under name=\"__overflow__\" because of "
             "--metrics-max-names, over the time range (should be 0).", COUNT,
             [Q(dropped_names(), "dropped")],
             w=4, h=5, instant=True, steps=(GREEN, ("orange", 1)), decimals=0, graph=common.BigValueGraphMode.NONE),
        stat("locust-metrics faults", "Faults of locust-metrics itself over the time range: its listener errors, "
             "parts of scrapes left out, requests it could not record, scrapes that fell back to the slow encoder, "
             "failed pushes (should be 0; the LocustMetricsDegraded alert fires on any).", COUNT,
             [Q(exporter_faults(), "faults")],
             w=6, h=6, instant=True, steps=(GREEN, ("red", 1)), decimals=0, graph=common.BigValueGraphMode.NONE),
        timeseries("locust-metrics faults by source", "locust_metrics_errors_total by source (listener, recorder, "
                   "runner, nodes, test, thresholds), locust_metrics_fallbacks_total by path and "
                   "locust_metrics_push_failures_total: each is also logged once in the Locust output.", COUNT,
                   [Q(exporter_faults_by("locust_metrics_errors_total", "source"), "error: {{source}}"),
                    Q(exporter_faults_by("locust_metrics_fallbacks_total", "path"), "fallback: {{path}}"),
                    Q(_agg("sum", ALL, _over("increase", "locust_metrics_push_failures_total", LIVE, labels=RUN)),
                      "push failures")],
                   w=18, h=6, decimals=0),
    ])


# ================================================================================================== compare dashboard
def compare_dashboard() -> dash_b.Dashboard:
    """*Locust load test: compare with a baseline*: the selected time range against the same range earlier."""
    board = base_dashboard(
        "locust-metrics-compare", "Locust load test: compare with a baseline",
        "Compares a Locust run (the selected time range) with a baseline run the same length earlier (Baseline "
        "offset): throughput, percentiles from histogram buckets, failures and slow requests.",
        time_from="now-30m", refresh="")
    for variable in common_variables():
        board.with_variable(variable)
    baseline = dash.VariableOption(selected=True, text="1d", value="1d")
    board.with_variable(dash_b.TextBoxVariable("baseline").label("Baseline offset").description(
        "How far back the baseline run is: a Prometheus duration such as 1d, 3h or 90m.")
        .default_value("1d").current(baseline).options([baseline]).hide(dash.VariableHide.DONT_HIDE))
    board.with_variable(filters_variable())

    def summary(title: str, description: str, unit: str, query: Callable[..., str], **kwargs: Any) -> stat_b.Panel:
        """A stat over the time range: ``query(offset=NOW)`` and ``query(offset=BASELINE)``."""
        return stat(title, description, unit, [Q(query(offset=NOW), "now"), Q(query(offset=BASELINE), "baseline")],
                    w=6, h=5, instant=True, color=common.BigValueColorMode.NONE, graph=common.BigValueGraphMode.NONE,
                    **kwargs)

    return layout(board, [
        text_b.Panel().title("How to compare").description("").span(24).height(3).mode("markdown").content(
            "Compares the selected time range (**now**) with the same range shifted back by **Baseline offset** "
            "(**baseline**). Put the time picker on the run you want to judge, and set the offset to the time "
            "between the starts of the two runs (e.g. `1d`, `3h`, `90m`; the *Test start* annotations help). All "
            "percentiles come from summed histogram buckets.")
        .code(text_b.CodeOptions().language("plaintext").show_line_numbers(False).show_mini_map(False)),

        row("Summary over the time range"),
        summary("Requests", "Completed requests in the range, now and baseline.", COUNT,
                requests, decimals=0),
        summary("p95 response time", "p95 of all selected endpoints over the range, now and baseline.", SECONDS,
                partial(quantile, 0.95, window=RANGE)),
        summary("Failure ratio", "Failed / completed requests over the range, now and baseline.", RATIO,
                partial(failure_ratio, window=RANGE), decimals=2),
        summary("Slow ratio", "Slow requests / requests with a response time over the range, now and baseline.",
                RATIO, partial(slow_ratio, window=RANGE), decimals=2),

        row("Over time"),
        now_vs_baseline("Requests/s: now vs baseline", "All selected endpoints.", REQ_PER_S,
                        request_rate, w=12, h=8),
        now_vs_baseline("p95: now vs baseline", "All selected endpoints, from the summed buckets.", SECONDS,
                        partial(quantile, 0.95), w=12, h=8),
        now_vs_baseline("Failure ratio: now vs baseline", "All selected endpoints.", RATIO,
                        failure_ratio, w=12, h=8),
        now_vs_baseline("Users: now vs baseline", "Running users, all classes.", COUNT,
                        users, w=12, h=8, decimals=0),

        row("Per endpoint over the time range"),
        endpoint_table("Endpoints: now vs baseline", "p95 and slow share per endpoint over the range, now and "
                       "baseline; \"p95 change\" is now / baseline - 1.", [
                           Column("Requests", requests(EACH_ENDPOINT), COUNT, 0),
                           Column("Requests (baseline)", requests(EACH_ENDPOINT, BASELINE), COUNT, 0),
                           Column("p95", quantile(0.95, EACH_ENDPOINT, RANGE), SECONDS),
                           Column("p95 (baseline)", quantile(0.95, EACH_ENDPOINT, RANGE, BASELINE), SECONDS),
                           Column("p95 change", p95_change(EACH_ENDPOINT), RATIO, 1,
                                  (GREEN, ("orange", 0.1), ("red", 0.25))),
                           Column("Slow %", slow_ratio(EACH_ENDPOINT, RANGE), RATIO, 2),
                           Column("Slow % (baseline)", slow_ratio(EACH_ENDPOINT, RANGE, BASELINE), RATIO, 2),
                           Column("Failure %", failure_ratio(EACH_ENDPOINT, RANGE), RATIO, 2),
                           Column("Failure % (baseline)", failure_ratio(EACH_ENDPOINT, RANGE, BASELINE),
                                  RATIO, 2),
                       ], sort_by="p95 change", w=24, h=10),
    ])


# ================================================================================================== output
DASHBOARDS = {"locust-metrics.json": main_dashboard, "locust-metrics-compare.json": compare_dashboard}
"""File name in dashboards/ -> the function that builds it (the uid is the file name's stem)."""

PANEL_NAMES = {"heatmap": "Heatmap", "stat": "Stat", "state-timeline": "State timeline", "table": "Table",
               "text": "Text", "timeseries": "Time series"}


def render(board: dash_b.Dashboard) -> str:
    """The dashboard as Grafana's "export for sharing externally" JSON: ``__inputs`` asks for the Prometheus
    datasource on import, ``__requires`` lists Grafana 11 and the panel plugins used, ``id`` is null so every
    Grafana gives it its own."""
    model = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    panel_types = sorted({p["type"] for p in model["panels"]} - {"row"})
    export = {
        "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus",
                      "description": "The Prometheus that scrapes your Locust master", "type": "datasource",
                      "pluginId": "prometheus", "pluginName": "Prometheus"}],
        "__elements": {},
        "__requires": [{"type": "grafana", "id": "grafana", "name": "Grafana", "version": "11.0.0"},
                       {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
                       *({"type": "panel", "id": t, "name": PANEL_NAMES[t], "version": ""} for t in panel_types)],
        "id": None,
    }
    return json.dumps({**export, **model}, indent=2) + "\n"


def build_all() -> dict[str, str]:
    """``{file name: JSON text}`` of every dashboard."""
    return {name: render(build()) for name, build in DASHBOARDS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the dashboards (only files that change), or ``--check`` them; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1, naming the files, if a file differs from what this script builds")
    parser.add_argument("--out", type=Path, default=HERE, metavar="DIR",
                        help="the directory of the JSON files (default: the dashboards/ directory of this script)")
    args = parser.parse_args(argv)
    stale = []
    for name, text in build_all().items():
        path = args.out / name
        if path.is_file() and path.read_text() == text:
            continue
        if args.check:
            stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"out of date in {args.out}: {', '.join(stale)}; run python dashboards/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
