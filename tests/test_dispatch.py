"""The request event's fast dispatch (locust_metrics/dispatch.py): the same behaviour as Locust's own
``EventHook.fire``, the same counts as an ordinary listener, and a clean fallback."""

from __future__ import annotations

import logging
import traceback

import pytest
from locust import exception as locust_exceptions
from locust import log as locust_log
from locust.env import Environment
from locust.event import EventHook
from locust.exception import (
    CatchResponseError,
    InterruptTaskSet,
    RescheduleTask,
    RescheduleTaskImmediately,
    StopUser,
)
from support import CountingRecorder, NoStatus, Response, make_recorder

import locust_metrics
from locust_metrics.dispatch import _fast_fire, attach, detach, known_fire

StopTest = getattr(locust_exceptions, "StopTest", None)
"""Locust's StopTest (2.43 and later); None on older Locusts, whose fire has no form that lets it through."""

EVENTS = [
    dict(request_type="GET", name="/a", response_time=12.5, response_length=100, response=Response(200), exception=None),
    dict(request_type="GET", name="/a", response_time=1500.0, response_length=10, response=Response(200), exception=None),
    dict(request_type="GET", name="/a", response_time=3.0, response_length=0, response=Response(404),
         exception=Exception("404 Client Error for url: http://x/a")),
    dict(request_type="POST", name="/a", response_time=None, response_length=0, response=None,
         exception=ConnectionRefusedError("[Errno 111]")),
    dict(request_type="GET", name="/b", response_time=0.0, response_length=5, response=Response(200),
         exception=CatchResponseError("bad body")),
    dict(request_type="GET", name="/b", response_time=float("nan"), response_length=-3, response=NoStatus(), exception=None),
    dict(request_type="GET", name="/b", response_time=-2.0, response_length=1, response=Response("abc"), exception=None),
    dict(request_type="GET", name="/b", response_time=7e12, response_length=1, response=Response(503), exception="a string"),
    # fired the way a custom client might: without response and exception, or with extra keys
    dict(request_type="grpc", name="Say", response_time=4.2, response_length=7),
    dict(request_type="grpc", name="Say", response_time=4.2, response_length=7, context={"x": 1}, url=None, extra=1),
    dict(request_type=None, name=["unhashable"], response_time="12", response_length=None, response=Response(200), exception=None),
]


def _state(rec) -> dict:
    return {
        key: (e.folded(), e.failures)
        for key, e in sorted(rec.endpoints.items(), key=repr)
    }


def _fast_hook(rec) -> EventHook:
    hook = EventHook()
    assert attach(hook, rec.on_request, rec.record)
    return hook


def test_this_locust_gets_the_fast_dispatch() -> None:
    """A canary: if a Locust release changes EventHook.fire, this fails (we then fall back, slower)."""
    code = EventHook.fire.__code__
    assert known_fire(EventHook()) is not None, (
        f"Locust's EventHook.fire changed (names {sorted(code.co_names)}, locals {code.co_varnames}): the request "
        "event now reaches locust-metrics the ordinary, slower way. Read the new fire, reproduce it in "
        "dispatch._fast_fire and add its form to dispatch.KNOWN_FIRES"
    )
    env = Environment()
    exporter = locust_metrics.install(env, port=0)
    assert exporter.fast_dispatch
    assert vars(env.events.request)["fire"]._locust_metrics_listener is exporter.recorder.on_request
    env.events.request.fire(request_type="GET", name="/x", response_time=1.0, response_length=2,
                            response=Response(200), context={}, exception=None)
    assert exporter.recorder.totals()["requests"] == 1
    exporter.stop()
    assert "fire" not in vars(env.events.request) and not exporter.fast_dispatch
    env.events.request.fire(request_type="GET", name="/x", response_time=1.0, response_length=2,
                            response=Response(200), context={}, exception=None)
    assert exporter.recorder.totals()["requests"] == 1  # detached: not recorded


def test_fast_and_ordinary_dispatch_record_the_same() -> None:
    fast, ordinary, direct = make_recorder(slow_threshold=1000), make_recorder(slow_threshold=1000), make_recorder(slow_threshold=1000)
    fast_hook, ordinary_hook = _fast_hook(fast), EventHook()
    ordinary_hook.add_listener(ordinary.on_request)
    for _ in range(3):  # first sightings (careful path), then the fast path
        for event in EVENTS:
            fast_hook.fire(**event)
            ordinary_hook.fire(**event)
            direct.record(dict(event))
    assert _state(fast) == _state(ordinary) == _state(direct)
    assert fast.totals() == {"requests": 33, "failures": 12, "count": 24, "slow": 6}
    assert fast.endpoints[("grpc", "Say")].folded().statuses == {0: 6}


def test_missing_keys_take_the_fast_path_after_the_first_sighting() -> None:
    rec = CountingRecorder(make_recorder().bounds_ms, 1000.0)
    hook = _fast_hook(rec)
    for _ in range(100):
        hook.fire(request_type="grpc", name="Say", response_time=4.2, response_length=7)
    assert rec.careful_calls == 1 and rec.endpoints[("grpc", "Say")].requests == 100


def _trace_run(hook: EventHook, ours, trace: list, setup) -> list:
    """Fire ``hook`` through listeners around ours that log, raise, stop the user and remove themselves."""

    def first(**kw):
        trace.append(("first", kw["name"]))

    def failing(**kw):
        trace.append(("failing", kw["name"]))
        raise ValueError("a listener's bug")

    def stopper(**kw):
        trace.append(("stopper", kw["name"]))
        if kw["name"] == "/stop":
            raise StopUser()

    def once(**kw):
        trace.append(("once", kw["name"]))
        hook.remove_listener(once)

    for listener in (first, once, failing, ours, stopper):
        hook.add_listener(listener)
    setup(hook)
    for name in ("/a", "/b", "/stop", "/c"):
        try:
            hook.fire(request_type="GET", name=name, response_time=1.0, response_length=1, response=None, exception=None)
        except StopUser:
            trace.append(("raised StopUser", name))
    hook.fire(reverse=True, request_type="GET", name="/reverse", response_time=1.0, response_length=1,
              response=None, exception=None)
    return trace


def _traced(rec, trace: list):
    """``(listener, record)`` for ``rec`` that also note ``("ours", name)`` in ``trace`` when called."""

    def ours(**kw):  # the listener as Locust sees it
        trace.append(("ours", kw["name"]))
        rec.on_request(**kw)

    def record(event):  # what the fast fire calls in its place
        trace.append(("ours", event["name"]))
        rec.record(event)

    return ours, record


def test_fast_fire_behaves_as_locusts_fire(caplog: pytest.LogCaptureFixture) -> None:
    """Same calls, same order, same exceptions through, same logging, same requests recorded."""
    traces, states = [], []
    for fast in (False, True):
        rec = make_recorder()
        trace: list = []

        ours, record = _traced(rec, trace)
        hook = EventHook()

        def setup(hook, fast=fast, ours=ours, record=record):
            assert attach(hook, ours, record) if fast else known_fire(hook)
            assert hook._handlers.count(ours) == 1

        locust_log.unhandled_greenlet_exception = False
        with caplog.at_level(logging.ERROR):
            caplog.clear()
            traces.append(_trace_run(hook, ours, trace, setup))
        errors = [r for r in caplog.records if "Uncaught exception in event handler" in r.getMessage()]
        # 5 failing calls; 4 on Locust < 2.47, whose fire iterates the live list: once's removal skips one
        assert len(errors) == (5 if known_fire(EventHook())[0] else 4) and "a listener's bug" in errors[0].getMessage()
        assert locust_log.unhandled_greenlet_exception
        states.append(_state(rec))
    locust_log.unhandled_greenlet_exception = False
    assert traces[0] == traces[1]
    assert ("raised StopUser", "/stop") in traces[1] and ("once", "/b") not in traces[1]
    copies = known_fire(EventHook())[0]
    assert (("failing", "/a") in traces[1]) == copies, "over a copy 'once' removing itself skips nothing; over the list, one"
    assert traces[1][-4:] == [("stopper", "/reverse"), ("ours", "/reverse"), ("failing", "/reverse"), ("first", "/reverse")]
    assert states[0] == states[1]


def test_attach_is_idempotent_and_detach_restores_locusts_fire() -> None:
    rec = make_recorder()
    hook = EventHook()
    assert attach(hook, rec.on_request, rec.record) and attach(hook, rec.on_request, rec.record)
    assert hook._handlers == [rec.on_request]
    hook.fire(request_type="GET", name="/x", response_time=1.0, response_length=1, response=None, exception=None)
    detach(hook, rec.on_request)
    assert hook._handlers == [] and "fire" not in vars(hook)
    hook.fire(request_type="GET", name="/x", response_time=1.0, response_length=1, response=None, exception=None)
    assert rec.totals()["requests"] == 1


class CustomHook(EventHook):
    def fire(self, *, reverse=False, **kwargs):
        kwargs["name"] = kwargs["name"].upper()  # a hook that does something of its own
        super().fire(reverse=reverse, **kwargs)


def test_a_hook_we_do_not_know_calls_the_ordinary_listener() -> None:
    wrapped = EventHook()
    own_fire = wrapped.fire
    wrapped.fire = lambda **kw: own_fire(**kw)  # another plugin wrapped it already
    for hook in (CustomHook(), wrapped):
        rec = make_recorder()
        assert known_fire(hook) is None
        assert not attach(hook, rec.on_request, rec.record)
        for _ in range(2):
            for event in EVENTS[:4]:
                hook.fire(**event)
        expected = make_recorder()
        for _ in range(2):
            for event in EVENTS[:4]:
                expected.record({**event, "name": event["name"].upper()} if isinstance(hook, CustomHook) else event)
        assert _state(rec) == _state(expected)
        detach(hook, rec.on_request)
        assert hook._handlers == []


class Locust243EventHook(EventHook):
    """EventHook.fire as in Locust 2.32-2.46 (from their wheels; 2.43-2.46 added StopTest): over the live
    list, ``reversed()`` for reverse. The reference for the forms of dispatch.KNOWN_FIRES we cannot install."""

    stop_test = True

    def fire(self, *, reverse=False, **kwargs):
        if reverse:
            handlers = reversed(self._handlers)
        else:
            handlers = self._handlers
        passing = (StopUser, RescheduleTask, RescheduleTaskImmediately, InterruptTaskSet) + ((StopTest,) if self.stop_test else ())
        for handler in handlers:
            try:
                handler(**kwargs)
            except passing:
                raise
            except Exception:
                logging.error("Uncaught exception in event handler: \n%s", traceback.format_exc())
                locust_log.unhandled_greenlet_exception = True


@pytest.mark.parametrize("stop_test", [True, False], ids=["2.43-2.46", "2.32-2.42"])
def test_fast_fire_of_older_locust_forms_behaves_as_their_fire(stop_test: bool) -> None:
    """Over the live list, a listener that removes itself makes the next one be skipped: as in those Locusts."""
    if stop_test and StopTest is None:
        pytest.skip("this Locust has no StopTest (< 2.43): no fire form lets it through")
    traces = []
    for fast in (False, True):
        rec, trace = make_recorder(), []

        ours, record = _traced(rec, trace)
        reference = Locust243EventHook()
        reference.stop_test = stop_test
        hook = EventHook() if fast else reference

        def setup(hook, fast=fast, ours=ours, record=record):
            if fast:
                hook.fire = _fast_fire(hook, ours, record, False, stop_test)

        traces.append(_trace_run(hook, ours, trace, setup))
        locust_log.unhandled_greenlet_exception = False
    assert traces[0] == traces[1]
    assert ("failing", "/a") not in traces[1], "the live list: removing 'once' made the loop skip the next one"

    stop_error = StopTest or type("StopTest", (Exception,), {})  # older Locusts: an ordinary exception

    def stop_the_test(**_kw):
        raise stop_error()

    for fast in (False, True):
        hook = EventHook()
        if fast:
            hook.fire = _fast_fire(hook, stop_the_test, lambda event: stop_the_test(), False, stop_test)
        else:
            hook = Locust243EventHook()
            hook.stop_test = stop_test
        hook.add_listener(stop_the_test)
        if stop_test:
            with pytest.raises(stop_error):
                hook.fire(name="/x")
        else:  # logged, not raised, before Locust 2.43
            hook.fire(name="/x")
            assert locust_log.unhandled_greenlet_exception
            locust_log.unhandled_greenlet_exception = False
