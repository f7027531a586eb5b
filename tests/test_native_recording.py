"""Native histograms in the recorder and in worker reports (no processes): the listener's native buckets equal
the reference (``NativeHistogram.observe`` of the values the classic histogram takes, sanitized as it does),
hostile values included; off changes nothing; merges are exact across schemas."""

from __future__ import annotations

import math

import pytest
from support import CountingRecorder, Response, make_recorder

from locust_metrics.distributed import PayloadMerger, take_payload
from locust_metrics.native import DEFAULT_MAX_BUCKETS, NativeHistogram, native_index, upper_bound
from locust_metrics.options import Settings
from locust_metrics.recorder import MAX_RESPONSE_TIME_MS, RequestRecorder, _warned_bad_delta


def log_bad_delta_warned() -> bool:
    """Whether an earlier test of this process already logged the one warning (it is logged once per process)."""
    return _warned_bad_delta[0]


def sanitized(ms: float) -> float | None:
    """What the classic histogram takes of a response time (recorder.py's careful path): NaN and infinities
    nothing, negatives 0, huge ones MAX_RESPONSE_TIME_MS."""
    if ms != ms or ms in (math.inf, -math.inf):
        return None
    return 0.0 if ms < 0 else min(ms, MAX_RESPONSE_TIME_MS)


def bound_neighbours(schema: int, indices: range) -> list[float]:
    """Every bucket bound of ``indices`` at ``schema`` in ms, and the doubles just below and above it."""
    values = []
    for k in indices:
        ms = upper_bound(k, schema) * 1000.0
        values += [math.nextafter(ms, 0.0), ms, math.nextafter(ms, math.inf)]
    return values


HOSTILE = [0.0, -0.0, -1.0, -1e300, math.nan, math.inf, -math.inf, 1e-300, 5e-324, 1e12, 2e12, 1e15,
           65_535.9, 65_536.0, 65_536.5, 70_000.0, 131_073.0]

# bounds from 0.001 ms up to 60 s at schema 6 (FINER, fine, mid and coarse cells) and hostile values
VALUES = bound_neighbours(6, range(-1280, 380)) + HOSTILE + [i / 7 for i in range(1, 3000)]


def reference(values: list[float], schema: int, max_buckets: int) -> NativeHistogram:
    expected = NativeHistogram(schema, max_buckets)
    for ms in values:
        t = sanitized(ms)
        if t is not None:
            expected.observe(t)
    return expected


@pytest.mark.parametrize("schema", [6, 0, 8, -4, 3])
def test_native_buckets_equal_the_reference_hostile_values_included(schema: int) -> None:
    recorder = make_recorder(native_histograms=True, native_schema=schema, native_max_buckets=0)
    for _ in range(2):
        for ms in VALUES:
            recorder.record("GET", "/a", ms, 10, Response(200), None)
    endpoint = recorder.endpoints[("GET", "/a")]
    expected = reference(VALUES + VALUES, schema, 0)
    assert endpoint.copy_native().total() == expected  # before the fold: snapshot copy adds the hot counts
    endpoint.fold()
    assert endpoint.native == expected
    assert endpoint.native.count == endpoint.count == sum(sanitized(v) is not None for v in VALUES) * 2


def test_hostile_values_land_where_the_classic_histogram_puts_them() -> None:
    recorder = make_recorder(native_histograms=True)
    for ms in HOSTILE:
        recorder.record("GET", "/h", ms, 0, Response(200), None)
    native = recorder.endpoints[("GET", "/h")].folded() and recorder.endpoints[("GET", "/h")].native
    # 0, -0, -1, -1e300 count as 0; 1e-300 and 5e-324 ms are below the zero threshold (2^-128 s): zero bucket
    assert native.zero_count == 6
    assert native.count == recorder.endpoints[("GET", "/h")].count == len(HOSTILE) - 3  # NaN, +-inf: not observed
    capped = native_index(MAX_RESPONSE_TIME_MS, native.schema)
    assert native.buckets[capped] == 3  # 1e12 and, capped to it, 2e12 and 1e15


def test_the_fast_path_keeps_response_times_and_a_fold_counts_them() -> None:
    """After an endpoint's first request (the careful path), every request takes the fast path, zeros and
    minute-long ones alike: it keeps the response time, and a fold counts and frees them."""
    settings = Settings.from_kwargs(native_histograms=True)
    recorder = CountingRecorder(settings.bounds_ms(), settings.slow_threshold_ms, (), 500, settings.native())
    times = [0.0, 0.05, 0.5, 3.0, 40.0, 333.3, 5000.0, 60_000.0]  # each in a power of two of its own
    for ms in times:
        recorder.record("GET", "/a", ms, 1, Response(200), None)
    assert recorder.careful_calls == 1  # the new endpoint (with 0.0)
    endpoint = recorder.endpoints[("GET", "/a")]
    assert endpoint.native_times == times[1:]
    for _ in range(3):
        for ms in times:
            recorder.record("GET", "/a", ms, 1, Response(200), None)
        endpoint.fold()
        assert endpoint.native_times == []
    assert recorder.careful_calls == 1
    assert endpoint.native == reference(times * 4, 6, DEFAULT_MAX_BUCKETS) and endpoint.native.count == endpoint.count == 32


def test_a_snapshot_buckets_the_kept_times_first() -> None:
    """With native histograms on, the classic buckets, sum and slow count come from the kept times too: a
    snapshot's copies fold first, and agree with the classic reference."""
    recorder = make_recorder(native_histograms=True, slow_threshold=300)
    times = [120.0 * math.exp(0.6 * z) for z in (i / 1000 - 3 for i in range(6001))]  # lognormal-like
    for ms in times:
        recorder.record("GET", "/a", ms, 1, Response(200 if ms < 400 else 503), None)
    endpoint = recorder.endpoints[("GET", "/a")]
    assert len(endpoint.native_times) == sum(ms >= 400 for ms in times) - 1  # after the first 503 (careful: folds)
    unfolded = endpoint.copy_unfolded()
    assert endpoint.native_times == [] and not unfolded.hot
    assert endpoint.copy_native().total() == reference(times, 6, DEFAULT_MAX_BUCKETS)
    classic = make_recorder(slow_threshold=300)
    for ms in times:
        classic.record("GET", "/a", ms, 1, Response(200 if ms < 400 else 503), None)
    expected = classic.endpoints[("GET", "/a")].folded()
    totals = unfolded.totals
    assert list(totals.buckets) == expected.buckets and dict(totals.statuses) == expected.statuses
    assert (totals.slow, totals.response_bytes) == (expected.slow, expected.response_bytes)
    assert 0 < expected.slow < len(times)
    assert totals.sum_ms == pytest.approx(expected.sum_ms, rel=1e-12)


def test_off_keeps_the_classic_listener_and_records_no_native() -> None:
    off = make_recorder()
    on = make_recorder(native_histograms=True)
    assert off.native is None and on.native == (6, DEFAULT_MAX_BUCKETS)
    assert off.record.__qualname__ == "RequestRecorder._make_listener.<locals>.record"
    assert on.record.__qualname__ == "RequestRecorder._make_native_listener.<locals>.record"
    off.record("GET", "/a", 3.0, 1, Response(200), None)
    assert off.endpoints[("GET", "/a")].native is None and off.endpoints[("GET", "/a")].copy_native() is None


def test_configure_turns_native_on_and_off_with_a_new_listener() -> None:
    recorder = make_recorder()
    classic = recorder.record
    recorder.configure(recorder.bounds_ms, recorder.default_slow_ms, (), 500, (5, 100))
    assert recorder.record is not classic and recorder.native == (5, 100)
    recorder.record("GET", "/a", 3.0, 1, Response(200), None)
    assert recorder.endpoints[("GET", "/a")].native.schema == 5
    recorder.clear()
    same = recorder.record
    recorder.configure(recorder.bounds_ms, recorder.default_slow_ms, (), 500, (5, 100))
    assert recorder.record is same  # unchanged settings: the same listener
    recorder.configure(recorder.bounds_ms, recorder.default_slow_ms, (), 500, None)
    assert recorder.record.__qualname__ == "RequestRecorder._make_listener.<locals>.record"
    with pytest.raises(ValueError, match="schema 9"):
        recorder.configure(recorder.bounds_ms, recorder.default_slow_ms, (), 500, (9, 100))


def test_the_bucket_bound_reduces_the_schema_and_keeps_totals_exact() -> None:
    recorder = make_recorder(native_histograms=True, native_max_buckets=8)
    values = [1.01**i for i in range(1, 900)]  # about 13 powers of two: 830 buckets at schema 6
    for ms in values:
        recorder.record("GET", "/w", ms, 0, Response(200), None)
    endpoint = recorder.endpoints[("GET", "/w")]
    endpoint.fold()
    assert len(endpoint.native.buckets) <= 8 and endpoint.native.schema < 6
    assert endpoint.native == reference(values, 6, 8)
    assert endpoint.native.count == endpoint.count == len(values)
    assert endpoint.native_times == []


def test_worker_payloads_merge_exactly_across_schemas() -> None:
    master = make_recorder(native_histograms=True, native_schema=5)
    merger = PayloadMerger(master)
    workers = [make_recorder(native_histograms=True, native_schema=s) for s in (8, 5, 2)]
    everything: list[float] = []
    for round_ in range(3):
        for w, worker in enumerate(workers):
            values = [(i * 7.3 + w + round_) % 900 for i in range(500)] + [-1.0, math.nan, 2e12]
            for ms in values:
                worker.record("GET", "/m", ms, 5, Response(200), None)
            everything += values
            assert merger.merge(take_payload(worker, f"w{w}", None)) == len(values)
    endpoint = master.endpoints[("GET", "/m")]
    endpoint.fold()
    assert endpoint.native.schema == 2
    assert endpoint.native == reference(everything, 2, DEFAULT_MAX_BUCKETS)
    assert endpoint.native.count == endpoint.count


def test_a_payload_without_native_is_merged_classic_only_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    master = make_recorder(native_histograms=True)
    worker = make_recorder()
    worker.record("GET", "/x", 3.0, 5, Response(200), None)
    payload = take_payload(worker, "w0", None)
    assert "native" not in payload
    PayloadMerger(master).merge(payload)
    assert master.endpoints[("GET", "/x")].count == 1 and master.endpoints[("GET", "/x")].native.count == 0
    assert "sent no native histograms" in caplog.text


def test_a_malformed_native_delta_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    """Its shape at the merge (ValueError); its pairs when it is added (left out, logged)."""
    master = make_recorder(native_histograms=True)
    worker = make_recorder(native_histograms=True)
    worker.record("GET", "/x", 3.0, 5, Response(200), None)
    payload = take_payload(worker, "w0", None)
    for bad in ([9, 0, [1, 1]], [6, -1, [1, 1]], [6, 0, [1, 1, 2]], [6, 0, (1, 1)], "x"):
        wrong = dict(payload, native=[bad])
        with pytest.raises(ValueError, match="malformed native histogram"):
            PayloadMerger(master).merge(wrong)
    good = master.endpoints[("GET", "/x")].native.count
    for bad in ([1, -5], [1.5, 1], [1, "2"], [10**12, 1], [-8192, 1, 5, 1]):  # (indices beyond a double's: the
        # dense store would allocate for them)
        PayloadMerger(master).merge(dict(payload, native=[[6, 0, bad]]))
        endpoint = master.endpoints[("GET", "/x")]
        endpoint.copy_native().total()  # a scrape adds it to a copy: not counted there
        endpoint.fold()
        assert endpoint.native.count == good
    assert master.errors == 5, "each left out once, as a fault of the recorder (locust_metrics_errors_total)"
    assert "native histogram delta is malformed" in caplog.text or log_bad_delta_warned()


def test_a_recorder_without_native_ignores_native_deltas() -> None:
    master = make_recorder()
    worker = make_recorder(native_histograms=True)
    worker.record("GET", "/x", 3.0, 5, Response(200), None)
    PayloadMerger(master).merge(take_payload(worker, "w0", None))
    assert master.endpoints[("GET", "/x")].count == 1


def test_recorder_keyword() -> None:
    assert RequestRecorder([10.0], 10.0, native=(4, 20)).native == (4, 20)


def test_native_deltas_are_checked_at_the_merge_and_added_at_the_next_fold() -> None:
    """A merge only takes the deltas (the master's loop is not held by 70,000 dict updates per report); a
    scrape's sliced fold, or a snapshot's copy, adds them."""
    master = make_recorder(native_histograms=True)
    merger = PayloadMerger(master)
    worker = make_recorder(native_histograms=True)
    for report in range(3):
        for ms in (1.0, 20.0, 300.0 + report):
            worker.record("GET", "/p", ms, 5, Response(200), None)
        merger.merge(take_payload(worker, "w0", None))
    endpoint = master.endpoints[("GET", "/p")]
    assert len(endpoint.native_pending) == 3 and endpoint.native.count == 0  # the classic merge did not fold them
    expected = reference([1.0, 20.0, 300.0, 1.0, 20.0, 301.0, 1.0, 20.0, 302.0], 6, DEFAULT_MAX_BUCKETS)
    assert endpoint.copy_native().total() == expected and len(endpoint.native_pending) == 3  # a copy adds to itself
    endpoint.fold()
    assert endpoint.native == expected and not endpoint.native_pending


def test_native_deltas_wait_for_a_fold_in_bounded_numbers() -> None:
    from locust_metrics.recorder import MAX_PENDING_NATIVE

    master = make_recorder(native_histograms=True)
    merger = PayloadMerger(master)
    worker = make_recorder(native_histograms=True)
    for report in range(3 * MAX_PENDING_NATIVE):
        worker.record("GET", "/p", 1.0 + report, 5, Response(200), None)
        merger.merge(take_payload(worker, "w0", None))
        assert len(master.endpoints[("GET", "/p")].native_pending) <= MAX_PENDING_NATIVE
    endpoint = master.endpoints[("GET", "/p")]
    endpoint.fold()
    assert endpoint.native.count == endpoint.count == 3 * MAX_PENDING_NATIVE


def test_a_snapshot_copy_is_not_changed_by_what_comes_after_it() -> None:
    """copy_native shares the histogram (no dict copy in the scrape's unsplittable snapshot); the entry copies
    it before its next change."""
    recorder = make_recorder(native_histograms=True)
    for ms in (1.0, 2.0, 3.0):
        recorder.record("GET", "/c", ms, 0, Response(200), None)
    endpoint = recorder.endpoints[("GET", "/c")]
    endpoint.fold()
    copy = endpoint.copy_native()
    assert copy.histogram is endpoint.native  # shared
    for ms in (1.0, 500.0, -1.0, 1e15):  # fast path, careful path (new bucket? no: hot list), hostile ones
        recorder.record("GET", "/c", ms, 0, Response(200), None)
    endpoint.fold()
    worker = make_recorder(native_histograms=True)
    worker.record("GET", "/c", 7.0, 0, Response(200), None)
    PayloadMerger(recorder).merge(take_payload(worker, "w", None))
    endpoint.fold()
    assert copy.total() == reference([1.0, 2.0, 3.0], 6, DEFAULT_MAX_BUCKETS)
    assert endpoint.native == reference([1.0, 2.0, 3.0, 1.0, 500.0, -1.0, 1e15, 7.0], 6, DEFAULT_MAX_BUCKETS)


def test_a_worker_adopting_native_histograms_records_them_for_its_own_endpoint_too() -> None:
    """--metrics-worker-port: the cumulative copy the worker serves takes the adopted settings while it is empty."""
    from locust_metrics.distributed import DistributedSync

    recorder, totals = make_recorder(), make_recorder()
    sync = DistributedSync(recorder, totals)
    sync.reconfigure("worker-0", lambda r: r.configure(r.bounds_ms, r.default_slow_ms, (), 500, (6, 160)))
    assert recorder.native == totals.native == (6, 160)
    recorder.record("GET", "/w", 12.0, 0, Response(200), None)
    sync.report({}, "worker-0", None)
    endpoint = totals.endpoints[("GET", "/w")]
    endpoint.fold()
    assert endpoint.native.count == endpoint.count == 1
    # once it holds data, it keeps its settings (what it served stays as it was)
    sync.reconfigure("worker-0", lambda r: r.configure(r.bounds_ms, r.default_slow_ms, (), 500, None))
    assert recorder.native is None and totals.native == (6, 160)


def test_the_exporter_folds_the_kept_times_every_second() -> None:
    """Nobody scrapes: the exporter's fold loop buckets and frees the kept response times every
    FOLD_INTERVAL_S, with native histograms on; off, it leaves the hot records for a scrape."""
    import gevent
    from locust import User, task
    from locust.env import Environment

    from locust_metrics.exporter import FOLD_INTERVAL_S, MetricsExporter

    class _User(User):
        @task
        def nothing(self) -> None:  # pragma: no cover - never runs
            pass

    for native in (True, False):
        env = Environment(user_classes=[_User])
        exporter = MetricsExporter(env, Settings.from_kwargs(port=0, native_histograms=native)).start()
        try:
            for ms in (0.0, 12.5, 12.5, 340.0, 7_000.0):
                env.events.request.fire(request_type="GET", name="/m", response_time=ms, response_length=10,
                                        response=Response(200), exception=None, context={})
            endpoint = exporter.recorder.endpoints[("GET", "/m")]
            assert any(map(any, endpoint.hot.values())) and (not native or len(endpoint.native_times) == 4)
            gevent.sleep(FOLD_INTERVAL_S + 0.3)
            if native:
                assert endpoint.native_times == [] and not any(map(any, endpoint.hot.values()))
                assert endpoint.native.count == endpoint.count == 5 and endpoint.slow == 1
            else:
                assert any(map(any, endpoint.hot.values()))
        finally:
            exporter.stop()
        assert exporter._folder is None


def test_the_exporter_folds_a_busy_endpoint_sooner() -> None:
    """An endpoint that kept FOLD_AT_TIMES response times is folded at the next FOLD_CHECK_S (its fold is not
    split: it should not grow for a whole second); a check folds no quieter endpoint, the full fold does."""
    import gevent
    from locust.env import Environment

    from locust_metrics.exporter import FOLD_AT_TIMES, FOLD_CHECK_S, FOLD_INTERVAL_S, MetricsExporter

    assert FOLD_CHECK_S < FOLD_INTERVAL_S
    env = Environment(user_classes=[])
    exporter = MetricsExporter(env, Settings.from_kwargs(port=0, native_histograms=True)).start()
    try:
        def fire(name: str, n: int) -> None:
            for i in range(n):
                env.events.request.fire(request_type="GET", name=name, response_time=1.0 + i % 300,
                                        response_length=10, response=Response(200), exception=None, context={})

        fire("/quiet", 4)
        fire("/busy", FOLD_AT_TIMES + 1)
        busy, quiet = (exporter.recorder.endpoints[("GET", name)] for name in ("/busy", "/quiet"))
        exporter._fold_native(everything=False)  # what a check does
        assert busy.native_times == [] and busy.native.count == busy.count == FOLD_AT_TIMES + 1
        assert len(quiet.native_times) == 3 and quiet.native.count == 1  # the first request: careful path
        fire("/busy", FOLD_AT_TIMES)
        gevent.sleep(2 * FOLD_CHECK_S + 0.1)  # the loop's next check (a slower machine only folds more)
        assert busy.native_times == [] and busy.native.count == busy.count == 2 * FOLD_AT_TIMES + 1
        exporter._fold_native()  # what a full fold does
        assert quiet.native_times == [] and quiet.native.count == quiet.count == 4
    finally:
        exporter.stop()


def test_the_fold_loop_leaves_the_full_fold_to_scrapes_that_folded_within_the_interval() -> None:
    """Scraped every second or more often, the scrapes' folds free the kept times: the loop's full fold would
    only halve the batches. ``folded_at`` is when the last full fold (a scrape's) began; the loop's full fold
    waits until it is FOLD_INTERVAL_S old, and a real scrape sets it."""
    import time as clock

    import gevent
    from locust.env import Environment

    from locust_metrics.exporter import FOLD_INTERVAL_S, MetricsExporter

    env = Environment(user_classes=[])
    exporter = MetricsExporter(env, Settings.from_kwargs(port=0, native_histograms=True)).start()
    try:
        def fire(n: int) -> None:
            for i in range(n):
                env.events.request.fire(request_type="GET", name="/q", response_time=5.0 + i, response_length=1,
                                        response=Response(200), exception=None, context={})

        fire(4)
        endpoint = exporter.recorder.endpoints[("GET", "/q")]
        exporter.renderer.folded_at = clock.monotonic() + 3 * FOLD_INTERVAL_S  # "a scrape folded just now", for 3 s
        gevent.sleep(FOLD_INTERVAL_S + 0.5)
        assert len(endpoint.native_times) == 3  # the loop left them to the scrapes
        before = clock.monotonic()
        exporter.renderer.fold(None)  # what a scrape does first
        assert before <= exporter.renderer.folded_at <= clock.monotonic() and endpoint.native_times == []
        exporter.renderer.folded_at = -math.inf  # nobody scrapes any more
        fire(2)
        gevent.sleep(FOLD_INTERVAL_S + 0.5)
        assert endpoint.native_times == [] and endpoint.native.count == endpoint.count == 6
    finally:
        exporter.stop()
