"""Many scrapers at once (issue 15): concurrent scrapes share renders, renders are bounded, the loop is paced.

In-process tests hold a render in flight at a chosen point (a ``pause`` that blocks) and check what other
scrapes get: the same bytes and snapshot time (same format and encoding), their own render (another
format), 503 with ``Retry-After`` (beyond ``--metrics-max-concurrent-renders``), 500 or 503 when the
render they share fails or takes too long; that a shared scrape whose snapshot predates the end of the
test is not the final scrape; and that :class:`~locust_metrics.scraping.LoopPacer` lets at most its budget
of queued work through per loop turn. Real-process tests scrape a running Locust from many threads at
once, with every combination of ``Accept`` / ``Accept-Encoding``: every answer is valid and of the format
asked for, same-format scrapes share renders, the bound answers 503, and the final-scrape wait and the
scrape counting still end the run with the exact final numbers.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import re
import threading
import time
from pathlib import Path

import gevent
import pytest
from gevent.event import Event
from prometheus_client import generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from support import (
    LOCUSTFILES,
    Samples,
    assert_exact_per_endpoint,
    child_env,
    csv_stats,
    free_port,
    locust,
    promtool_check_metrics,
    wait_for_http,
)
from test_rendering import PROMETHEUS_ACCEPT, TEXT_0_0_4, fill, make_exporter

from locust_metrics import scraping
from locust_metrics.scraping import OWN_ENDPOINT, LoopPacer, MetricsServer

OPENMETRICS_ACCEPT = "application/openmetrics-text; version=1.0.0"
FORMATS = [  # (Accept, Accept-Encoding): the four renders a scrape can ask for
    (PROMETHEUS_ACCEPT, "gzip"),
    (PROMETHEUS_ACCEPT, ""),
    ("", "gzip"),
    ("text/plain", ""),
]


class HeldPause:
    """A ``pause`` that holds the render at its ``hold_at``-th call until :meth:`release` (then one loop turn).

    With a loop budget too large to run out (:func:`start_render`), ``ScrapeRenderer.serve`` pauses only
    between its steps: after folding (call 1, before the snapshot), right after the snapshot (call 2),
    before gzip (call 3).
    """

    def __init__(self, hold_at: int) -> None:
        self.hold_at = hold_at
        self.calls = 0
        self.held = Event()
        self._go = Event()

    def __call__(self) -> None:
        self.calls += 1
        if self.calls == self.hold_at:
            self.held.set()
            self._go.wait(timeout=30)
        gevent.sleep(0.000001)

    def release(self) -> None:
        self._go.set()


def body_of(response) -> bytes:
    body = b"".join(response.body)
    return gzip.decompress(body) if dict(response.headers).get("Content-Encoding") == "gzip" else body


def start_render(renderer, accept: str, encoding: str, hold_at: int = 2):
    """A scrape whose render is held in flight (after its snapshot, by default); returns (greenlet, pause)."""
    renderer.pacer.budget_s = 60.0  # no pause but those between the steps, no pacing of the others
    pause = HeldPause(hold_at)
    greenlet = gevent.spawn(renderer.serve, accept, encoding, pause)
    assert pause.held.wait(timeout=10), "the render did not reach its pause"
    return greenlet, pause


# ---------------------------------------------------------------------------------------------- in process
def test_scrapes_of_a_format_in_flight_share_its_render_and_snapshot() -> None:
    exporter = make_exporter()
    fill(exporter, names=30)
    renderer = exporter.renderer
    leader, pause = start_render(renderer, PROMETHEUS_ACCEPT, "gzip")
    fill(exporter, names=30, per_name=1)  # requests recorded after the snapshot: served by nobody here
    joiners = [gevent.spawn(renderer.serve, PROMETHEUS_ACCEPT, "gzip, deflate") for _ in range(5)]
    # the same format asked another way (version 1.0.0 only): same render, its own Content-Type
    other_header = gevent.spawn(renderer.serve, OPENMETRICS_ACCEPT, "gzip")
    gevent.sleep(0.05)
    assert not any(g.ready() for g in [*joiners, other_header]), "they wait for the render in flight"
    assert renderer.renders_in_flight == 1, "a scrape that shares a render holds no slot"
    pause.release()
    gevent.joinall([leader, *joiners, other_header], timeout=10)
    first = leader.value
    assert first.status == "200 OK" and not first.shared
    for response in [*(g.value for g in joiners), other_header.value]:
        assert response.status == "200 OK" and response.shared
        assert b"".join(response.body) == b"".join(first.body)  # byte for byte, gzip included
        assert response.snapshot_time == first.snapshot_time
    assert dict(other_header.value.headers)["Content-Type"] == choose_encoder(OPENMETRICS_ACCEPT)[1]
    assert renderer.fast_scrapes == 1 and renderer.shared_scrapes == 6 and renderer.refused_scrapes == 0
    assert renderer.renders_in_flight == 0 and not renderer._in_flight and renderer._snapshot is None
    # what was served is the snapshot's: the requests recorded while it rendered are not in it
    served = Samples(body_of(first).decode().replace("# EOF\n", ""))
    assert served.sum("locust_requests_total") == 30 * 12
    after = renderer.serve(PROMETHEUS_ACCEPT, "gzip")  # nothing in flight: a new render, the new numbers
    assert not after.shared and after.snapshot_time > first.snapshot_time
    assert Samples(body_of(after).decode().replace("# EOF\n", "")).sum("locust_requests_total") == 30 * 13


def test_formats_never_mix_and_renders_beyond_the_bound_get_503() -> None:
    exporter = make_exporter(max_concurrent_renders=2)
    fill(exporter, names=10)
    renderer = exporter.renderer
    snapshots = []
    original = renderer.snapshot
    renderer.snapshot = lambda: snapshots.append(1) or original()
    # both held before their snapshots: scrapes that began before any snapshot
    text_plain, pause_text = start_render(renderer, "", "", hold_at=1)
    openmetrics_gzip, pause_om = start_render(renderer, PROMETHEUS_ACCEPT, "gzip", hold_at=1)
    assert renderer.renders_in_flight == 2
    refused = renderer.serve(PROMETHEUS_ACCEPT, "")  # a third format: no slot left, answered at once
    assert refused.status == "503 Service Unavailable" and refused.snapshot_time is None
    headers = dict(refused.headers)
    assert headers["Retry-After"] == "1" and int(headers["Content-Length"]) == len(b"".join(refused.body))
    assert b"--metrics-max-concurrent-renders" in b"".join(refused.body)
    # names[] (served by prometheus_client, never shared) needs a slot too
    assert renderer.serve("", "", names=["locust_users"]).status == "503 Service Unavailable"
    # the two formats in flight are shared as they are asked for, never one for the other
    shared = {fmt: gevent.spawn(renderer.serve, *fmt) for fmt in (("text/plain", "identity"), (OPENMETRICS_ACCEPT, "gzip"))}
    gevent.sleep(0.02)
    pause_text.release()
    pause_om.release()
    gevent.joinall([text_plain, openmetrics_gzip, *shared.values()], timeout=10)
    text = shared[("text/plain", "identity")].value
    om = shared[(OPENMETRICS_ACCEPT, "gzip")].value
    assert text.shared and om.shared
    assert dict(text.headers)["Content-Type"] == TEXT_0_0_4 and "Content-Encoding" not in dict(text.headers)
    assert b"".join(text.body) == b"".join(text_plain.value.body) == generate_latest(exporter.registry)
    assert dict(om.headers)["Content-Encoding"] == "gzip"
    assert body_of(om) == body_of(openmetrics_gzip.value) == generate_openmetrics(exporter.registry)
    # both renders started together: the data was copied once, and both are byte for byte prometheus_client's
    assert text.snapshot_time == om.snapshot_time and len(snapshots) == 1
    assert renderer.refused_scrapes == 2 and renderer.fast_scrapes == 2 and renderer.shared_scrapes == 2
    assert renderer.serve(PROMETHEUS_ACCEPT, "").status == "200 OK"  # slots are given back


def test_renders_of_other_formats_share_a_snapshot_only_if_it_was_taken_after_they_began() -> None:
    exporter = make_exporter()
    fill(exporter, names=10)
    renderer = exporter.renderer
    snapshots: list[float] = []
    original = renderer.snapshot

    def counting_snapshot():
        snapshots.append(time.time())
        return original()

    renderer.snapshot = counting_snapshot
    first, pause = start_render(renderer, "", "")  # held after its snapshot
    later = gevent.spawn(renderer.serve, PROMETHEUS_ACCEPT, "")  # began after that snapshot: takes its own
    gevent.joinall([later], timeout=10)
    pause.release()
    first.join(timeout=10)
    assert len(snapshots) == 2 and later.value.snapshot_time > first.value.snapshot_time


def test_a_shared_scrape_whose_snapshot_predates_the_stop_is_not_the_final_scrape() -> None:
    exporter = make_exporter()
    fill(exporter, names=10)
    tracker = exporter.scrapes
    # our endpoint, scraped every second until now (the final-scrape wait is for periodic scrapers)
    exporter.server = MetricsServer(exporter.registry, tracker, "127.0.0.1", free_port(), exporter.renderer)
    exporter.server.start()
    try:
        tracker.scraped(time.time() - 2)
        tracker.scraped(time.time() - 1)
        app = exporter.renderer.wsgi_app(tracker)
        statuses: list[str] = []

        def scrape() -> bytes:
            environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "HTTP_ACCEPT": PROMETHEUS_ACCEPT}
            return b"".join(app(environ, lambda status, headers: statuses.append(status)))

        renderer = exporter.renderer
        leader, pause = start_render(renderer, PROMETHEUS_ACCEPT, "")  # numbers read now, before the stop
        gevent.sleep(0.01)
        exporter.last_change_time = time.time()  # the test stops
        joiners = [gevent.spawn(scrape) for _ in range(2)]  # scrapes after the stop that share the render in flight
        gevent.sleep(0.01)
        pause.release()
        gevent.joinall([leader, *joiners], timeout=10)
        assert statuses == ["200 OK"] * 2 and tracker.count == 4
        assert tracker.last_time < exporter.last_change_time, "counted with its snapshot's time, not its start"
        assert tracker.last_time == leader.value.snapshot_time
        # the two that shared one render are one instant of the scraper's history, not a 0 s interval
        assert tracker.scrapes(OWN_ENDPOINT) == 3 and tracker.longest_gap(OWN_ENDPOINT) >= 0.9
        assert exporter.wait_for_final_scrape(timeout=0.2) is False  # still waiting for the final numbers
        scrape()  # a scrape with its own render, after the stop
        assert statuses == ["200 OK"] * 3 and tracker.count == 5 and tracker.last_time >= exporter.last_change_time
        assert exporter.wait_for_final_scrape(timeout=0.2) is True
    finally:
        exporter.server.stop()


def test_a_push_shares_only_a_render_that_reads_its_numbers_after_it_began_and_is_never_refused() -> None:
    exporter = make_exporter(max_concurrent_renders=1)
    fill(exporter, names=10)
    renderer = exporter.renderer
    def push() -> bytes:  # what the pusher sends: text 0.0.4 (native histograms are off)
        content_type, body = exporter._push_body()
        assert content_type.startswith("text/plain; version=0.0.4")
        return body

    # a text render in flight whose numbers were read already: a push renders its own, after the bound
    leader, pause = start_render(renderer, "", "")  # held after its snapshot; the one slot taken
    fill(exporter, names=10, per_name=1)  # requests after that snapshot: the push must carry them
    pushed = gevent.spawn(push)
    gevent.joinall([pushed], timeout=10)
    assert Samples(pushed.value.decode()).sum("locust_requests_total") == 10 * 13
    assert renderer.refused_scrapes == 0 and renderer.fast_scrapes == 1  # the push's own render
    pause.release()
    leader.join(timeout=10)
    assert Samples(b"".join(leader.value.body).decode()).sum("locust_requests_total") == 10 * 12
    # a text render that has not read its numbers yet: the push shares it
    leader, pause = start_render(renderer, "", "", hold_at=1)  # held before its snapshot
    pushed = gevent.spawn(push)
    gevent.sleep(0.02)
    assert not pushed.ready()
    pause.release()
    gevent.joinall([leader, pushed], timeout=10)
    assert pushed.value == b"".join(leader.value.body) and renderer.shared_scrapes == 1


def test_a_failed_render_answers_every_scrape_that_shared_it_and_frees_its_slot(monkeypatch, caplog) -> None:
    exporter = make_exporter(max_concurrent_renders=1)
    fill(exporter, names=5)
    renderer = exporter.renderer
    # the fast path fails: prometheus_client's output is rendered instead and shared as it is
    monkeypatch.setattr(renderer.encoder, "_render_endpoints", lambda *_args: 1 / 0)
    leader, pause = start_render(renderer, PROMETHEUS_ACCEPT, "gzip")
    joiner = gevent.spawn(renderer.serve, PROMETHEUS_ACCEPT, "gzip")
    gevent.sleep(0.01)
    with caplog.at_level(logging.ERROR, logger="locust_metrics.scraping"):
        pause.release()
        gevent.joinall([leader, joiner], timeout=10)
    assert body_of(leader.value) == body_of(joiner.value) == generate_openmetrics(exporter.registry)
    assert joiner.value.shared and renderer.library_scrapes == 1

    # prometheus_client fails too: the scrape that rendered gets the error, those that shared it a 500
    monkeypatch.setattr(renderer.encoder, "_render_endpoints", lambda *_args: gevent.sleep(0.05) or 1 / 0)
    monkeypatch.setattr(renderer, "registry", None)  # the library path breaks: AttributeError
    leader = gevent.spawn(renderer.serve, PROMETHEUS_ACCEPT, "")
    gevent.sleep(0.01)
    joiners = [gevent.spawn(renderer.serve, PROMETHEUS_ACCEPT, "") for _ in range(3)]
    gevent.joinall([leader, *joiners], timeout=10)
    assert isinstance(leader.exception, AttributeError)
    assert all(g.value.status == "500 Internal Server Error" and g.value.snapshot_time is None for g in joiners)
    assert renderer.renders_in_flight == 0 and not renderer._in_flight


def test_a_scrape_waits_for_a_shared_render_with_a_bound(monkeypatch) -> None:
    exporter = make_exporter()
    fill(exporter, names=5)
    renderer = exporter.renderer
    monkeypatch.setattr(scraping, "SHARED_RENDER_TIMEOUT_S", 0.1)
    leader, pause = start_render(renderer, "", "")
    started = time.monotonic()
    waited = renderer.serve("", "")
    assert waited.status == "503 Service Unavailable" and dict(waited.headers)["Retry-After"] == "1"
    assert 0.1 <= time.monotonic() - started < 5 and renderer.refused_scrapes == 1
    pause.release()
    leader.join(timeout=10)
    assert leader.value.status == "200 OK"


def test_the_pacer_lets_its_budget_of_queued_work_through_per_loop_turn_in_order() -> None:
    pacer = LoopPacer(budget_s=0.001)
    ran: list[tuple[int, int]] = []  # (greenlet, loop iteration)
    loop = gevent.get_hub().loop

    def work(index: int) -> None:
        pacer.wait()
        ran.append((index, loop.iteration))
        end = time.perf_counter() + 0.0003
        while time.perf_counter() < end:  # 0.3 ms of work that does not yield
            pass

    greenlets = [gevent.spawn(work, i) for i in range(20)]
    gevent.joinall(greenlets, timeout=10)
    assert [index for index, _ in ran] == list(range(20)), "first come, first served"
    per_turn: dict[int, int] = {}
    for _, iteration in ran:
        per_turn[iteration] = per_turn.get(iteration, 0) + 1
    # a turn starts at most 4 pieces of 0.3 ms (the 4th starts at 0.9 ms < 1 ms), so 20 take 5 turns or more
    assert max(per_turn.values()) <= 4 and len(per_turn) >= 5, per_turn
    assert pacer.queued == 0


# ---------------------------------------------------------------------------------------------- real processes
def _get(port: int, accept: str, encoding: str, path: str = "/metrics") -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Accept": accept} if accept else {}
        if encoding:
            headers["Accept-Encoding"] = encoding
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def burst(port: int, requests: list[tuple[str, str]]) -> list[tuple[tuple[str, str], int, dict[str, str], bytes]]:
    """Send ``requests`` (Accept, Accept-Encoding) at the same instant from one thread each."""
    barrier = threading.Barrier(len(requests))
    results: list = [None] * len(requests)

    def one(index: int) -> None:
        barrier.wait()
        results[index] = (requests[index], *_get(port, *requests[index]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(result is not None for result in results)
    return results


def check_answer(asked: tuple[str, str], status: int, headers: dict[str, str], body: bytes) -> bytes | None:
    """A 200 of exactly the format asked for, valid (promtool or the OpenMetrics parser), or a proper 503.

    Returns the uncompressed body of a 200, None for a 503."""
    accept, encoding = asked
    if status == 503:
        assert headers["Retry-After"] == "1" and b"--metrics-max-concurrent-renders" in body
        return None
    assert status == 200, (status, body[:300])
    assert headers["Content-Type"] == choose_encoder(accept)[1]
    assert (headers.get("Content-Encoding") == "gzip") == ("gzip" in encoding)
    assert int(headers["Content-Length"]) == len(body)
    text = gzip.decompress(body) if "gzip" in encoding else body
    if text in _VALID:  # each distinct body is checked once (the parsers take a while at 500 entries)
        return text
    if "openmetrics" in accept:
        assert text.endswith(b"# EOF\n")
        assert any(f.name == "locust_requests" for f in parse_openmetrics(text.decode()))
    else:
        assert b"# EOF" not in text
        result = promtool_check_metrics(text.decode())
        assert result.returncode == 0, result.stdout + result.stderr
    _VALID.add(text)
    return text


_VALID: set[bytes] = set()


def locust_args(port: int, workdir: Path, seconds: int, *extra: str) -> list[str]:
    return ["-f", str(LOCUSTFILES / "fast_events.py"), "--headless", "-u", "4", "-r", "4", "-t", f"{seconds}s",
            "--csv", str(workdir / "run"), "--metrics-port", str(port), "--metrics-host", "127.0.0.1", *extra]


def fast_events_env(**extra: str) -> dict[str, str]:
    # 500 entries (250 names, GET and POST) at full speed: every render differs from the one before, and
    # takes several milliseconds
    return child_env(FAST_EVENTS_NAMES="250", FAST_EVENTS_WAIT="0", **extra)


@pytest.mark.parametrize("endpoint", ["ours", "web UI"])
def test_concurrent_scrapes_of_a_running_locust_share_renders_and_never_mix_formats(workdir: Path, endpoint: str) -> None:
    port = free_port()
    args = locust_args(port, workdir, 300)
    if endpoint == "web UI":  # /metrics on Locust's web UI (its own gevent server and Flask), ours off
        args = ["-f", str(LOCUSTFILES / "fast_events.py"), "--web-host", "127.0.0.1", "--web-port", str(port),
                "--autostart", "-u", "4", "-r", "4", "-t", "300s", "--metrics-port", "0"]
    with locust(args, workdir, env=fast_events_env()) as process:
        wait_for_http(f"http://127.0.0.1:{port}/metrics", timeout=30)
        time.sleep(2)  # requests of every name recorded
        distinct: dict[tuple[str, str], list[int]] = {fmt: [] for fmt in FORMATS}
        for _ in range(4):
            results = burst(port, FORMATS * 6)  # 24 scrapes at once, 6 of each format
            bodies: dict[tuple[str, str], set[bytes]] = {fmt: set() for fmt in FORMATS}
            for asked, status, headers, body in results:
                text = check_answer(asked, status, headers, body)
                assert text is not None, "4 formats fit the default bound of 4"
                bodies[asked].add(text)
            for fmt in FORMATS:
                distinct[fmt].append(len(bodies[fmt]))
            time.sleep(0.3)
        assert process.running(), process.output()[-3000:]
    # the load test changes the numbers between any two renders, so unshared scrapes would differ (6 bodies
    # per format and burst); scrapes of one format that shared a render got the same bytes
    for fmt, counts in distinct.items():
        assert sum(counts) <= 2 * len(counts), (fmt, counts)


def test_beyond_the_bound_scrapes_get_503_and_the_others_stay_valid(workdir: Path) -> None:
    port = free_port()
    env = fast_events_env(LOCUST_METRICS_MAX_CONCURRENT_RENDERS="1")
    with locust(locust_args(port, workdir, 300), workdir, env=env) as process:
        wait_for_http(f"http://127.0.0.1:{port}/metrics", timeout=30)
        time.sleep(1)
        statuses: list[int] = []
        for _ in range(5):
            for asked, status, headers, body in burst(port, FORMATS * 4):
                check_answer(asked, status, headers, body)
                statuses.append(status)
            if 503 in statuses:
                break
            time.sleep(0.2)
        assert 503 in statuses and 200 in statuses, statuses
        assert process.running(), process.output()[-3000:]


def test_final_scrape_wait_and_exact_final_numbers_when_scrapes_coalesce(workdir: Path) -> None:
    port = free_port()
    seconds = 14
    args = locust_args(port, workdir, seconds, "--metrics-final-scrape-timeout", "30")
    with locust(args, workdir, env=fast_events_env()) as process:
        wait_for_http(f"http://127.0.0.1:{port}/metrics", timeout=30)
        end = None
        # every 5 s, 8 scrapers at once (two formats) during the run, as periodic scrapers would (two bursts at
        # least, however late Locust started); none in the last 1.5 s: at exit the exporter waits for their
        # next scrape, 6 s or more
        while end is None or time.time() < end - 1.5:
            for asked, status, headers, body in burst(port, [FORMATS[0]] * 4 + [FORMATS[3]] * 4):
                text = check_answer(asked, status, headers, body)
                if end is None and asked == FORMATS[3]:
                    start = Samples(text.decode()).sum("locust_test_start_time_seconds")
                    end = start + seconds if start else None
            time.sleep(5.0)
        deadline = time.monotonic() + 30
        pattern = r"waiting up to ([\d.]+)s for a final scrape of .* \(scraped every ([\d.]+)s\)"
        while not re.search(pattern, process.output()) and time.monotonic() < deadline:
            time.sleep(0.1)
        waited = re.search(pattern, process.output())
        assert waited, process.output()[-3000:]
        assert float(waited[2]) >= 4.5, "8 scrapes sharing renders are one instant of the scrapers' history"
        final = burst(port, [FORMATS[0]] * 8 + [FORMATS[3]] * 8)  # the final scrape, 16 at once
        asked_at = time.monotonic()
        assert process.wait(timeout=30) == 0, process.output()[-3000:]
        exited_after = time.monotonic() - asked_at
    # the exporter stopped waiting when the final scrape was counted, well before its wait ran out
    assert exited_after < float(waited[1]) - 2, (exited_after, waited[0])
    stats = csv_stats(workdir / "run")
    total = stats[("", "Aggregated")]["requests"]
    for asked, status, headers, body in final:
        text = check_answer(asked, status, headers, body)
        if "openmetrics" in asked[0]:
            families = {family.name: family for family in parse_openmetrics(text.decode())}
            assert sum(sample.value for sample in families["locust_requests"].samples) == total > 0
        else:
            samples = Samples(text.decode())
            assert_exact_per_endpoint(samples, stats)
            assert samples.select("locust_test_stop_time_seconds")
