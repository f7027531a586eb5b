"""The request event's fast dispatch (locust_metrics/dispatch.py): the same behaviour as Locust's own
``EventHook.fire``, the same counts as an ordinary listener, and a clean fallback."""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import textwrap
import traceback
from pathlib import Path

import locust
import locust.exception
import pytest
from locust import log as locust_log
from locust.env import Environment
from locust.event import EventHook
from locust.exception import CatchResponseError, InterruptTaskSet, RescheduleTask, RescheduleTaskImmediately, StopUser
from support import CountingRecorder, NoStatus, Response, make_recorder

import locust_metrics
from locust_metrics.dispatch import KNOWN_FIRES, _fast_fire, attach, detach, fire_digest, known_fire
from locust_metrics.recorder import EVENT_DEFAULTS

StopTest = getattr(locust.exception, "StopTest", None)  # Locust >= 2.43
NO_STOP_TEST = "this Locust (< 2.43) has no StopTest"

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


def _values(event: dict) -> list:
    """What ``record`` takes for ``event``: the values of EVENT_DEFAULTS' keys, in order, else their defaults."""
    return [event.get(key, default) for key, default in EVENT_DEFAULTS.items()]


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
    """A canary: fails the day a Locust release changes EventHook.fire (we then fall back to the ordinary listener)."""
    if known_fire(EventHook()) is None:
        code = EventHook.fire.__code__
        digest = fire_digest(EventHook.fire)
        try:
            source = inspect.getsource(code)
        except (OSError, TypeError):
            source = "(no source)"
        what = (f"has the source sha256 {digest}, which dispatch.KNOWN_FIRES does not know" if digest else
                "has no source that matches its code (dispatch.fire_digest gives None)")
        pytest.fail(
            f"Locust {locust.__version__}'s EventHook.fire ({code.co_filename}) {what}: the request event now reaches "
            "locust-metrics the ordinary, slower way. Read the new fire (below). If dispatch._fast_fire does exactly "
            f"what it does in one of its forms, add {digest!r}: FireForm(over_copy, stop_test, '<Locust releases>') to "
            "dispatch.KNOWN_FIRES and its text to LOCUST_FIRES in tests/test_dispatch.py; if not, teach _fast_fire the "
            "new form first (and its flag to FireForm).\n" + source
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
            direct.record(*_values(event))
    assert _state(fast) == _state(ordinary) == _state(direct)
    assert fast.totals() == {"requests": 33, "failures": 12, "count": 24, "slow": 6}
    assert fast.endpoints[("grpc", "Say")].folded().statuses == {0: 6}


def test_the_ordinary_listener_takes_the_keys_record_reads_with_their_defaults() -> None:
    """``on_request``'s parameters are EVENT_DEFAULTS' keys, in order (positional calls), with their defaults,
    then Locust's keywords that are not read, then any other."""
    parameters = list(inspect.signature(make_recorder().on_request).parameters.values())
    assert [(p.name, p.default) for p in parameters[:6]] == list(EVENT_DEFAULTS.items())
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in parameters[:6])
    assert [p.name for p in parameters[6:9]] == ["context", "start_time", "url"]
    assert parameters[-1].kind is parameters[-1].VAR_KEYWORD


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

    def record(*values):  # what the fast fire calls in its place
        trace.append(("ours", values[1]))
        rec.record(*values)

    return ours, record


def test_fast_fire_behaves_as_locusts_fire(caplog: pytest.LogCaptureFixture) -> None:
    """Same calls, same order, same exceptions through, same logging, same requests recorded, as the installed
    Locust's own fire."""
    form = known_fire(EventHook())
    assert form is not None
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
        assert len(errors) == (5 if form.over_copy else 4) and "a listener's bug" in errors[0].getMessage()
        assert locust_log.unhandled_greenlet_exception
        states.append(_state(rec))
    locust_log.unhandled_greenlet_exception = False
    assert traces[0] == traces[1]
    assert ("raised StopUser", "/stop") in traces[1] and ("once", "/b") not in traces[1]
    # over a copy, 'once' removing itself skips nothing; over the live list, the next listener is skipped
    assert (("failing", "/a") in traces[1]) == form.over_copy
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


def test_a_hook_we_do_not_know_calls_the_ordinary_listener(monkeypatch: pytest.MonkeyPatch) -> None:
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
                expected.record(*_values({**event, "name": event["name"].upper()} if isinstance(hook, CustomHook) else event))
        assert _state(rec) == _state(expected)
        detach(hook, rec.on_request)
        assert hook._handlers == []

    # another plugin wrapped EventHook.fire itself, functools.wraps and all: its source is not Locust's
    calls = []
    locusts_fire = EventHook.fire

    @functools.wraps(locusts_fire)
    def wrapper(self, **kwargs):
        calls.append(kwargs["name"])
        locusts_fire(self, **kwargs)

    monkeypatch.setattr(EventHook, "fire", wrapper)
    hook, rec = EventHook(), make_recorder()
    assert known_fire(hook) is None and not attach(hook, rec.on_request, rec.record)
    hook.fire(**EVENTS[0])
    assert calls == ["/a"] and rec.totals()["requests"] == 1


def test_a_fire_without_its_source_or_with_another_one_is_not_known(tmp_path: Path) -> None:
    """Locust's exact text, but compiled from nowhere (no .py file) or from a file that changed since: unknown."""
    text = textwrap.dedent(LOCUST_FIRES["2.47.0"])
    assert hashlib.sha256(text.encode()).hexdigest() in KNOWN_FIRES
    namespace: dict = {}
    exec(compile(text, "<no file>", "exec"), namespace)
    assert fire_digest(namespace["fire"]) is None
    # a file that held 2.47's fire when it was imported and now holds 2.43's: its digest would be a known one
    module = tmp_path / "event_changed.py"
    module.write_text(text)
    exec(compile(text, str(module), "exec"), namespace)
    assert fire_digest(namespace["fire"]) in KNOWN_FIRES
    module.write_text(textwrap.dedent(LOCUST_FIRES["2.43.0-2.46.7"]))
    assert fire_digest(namespace["fire"]) is None
    assert fire_digest(len) is None and fire_digest(None) is None


LOCUST_FIRES = {
    "2.32.0-2.42.6": """\
    def fire(self, *, reverse=False, **kwargs):
        if reverse:
            handlers = reversed(self._handlers)
        else:
            handlers = self._handlers
        for handler in handlers:
            try:
                handler(**kwargs)
            except (StopUser, RescheduleTask, RescheduleTaskImmediately, InterruptTaskSet):
                # These exceptions could be thrown by, for example, a request handler,
                # in which case they are entirely appropriate and should not be caught
                raise
            except Exception:
                logging.error("Uncaught exception in event handler: \\n%s", traceback.format_exc())
                log.unhandled_greenlet_exception = True
""",
    "2.43.0-2.46.7": """\
    def fire(self, *, reverse=False, **kwargs):
        if reverse:
            handlers = reversed(self._handlers)
        else:
            handlers = self._handlers
        for handler in handlers:
            try:
                handler(**kwargs)
            except (StopUser, StopTest, RescheduleTask, RescheduleTaskImmediately, InterruptTaskSet):
                # These exceptions could be thrown by, for example, a request handler,
                # in which case they are entirely appropriate and should not be caught
                raise
            except Exception:
                logging.error("Uncaught exception in event handler: \\n%s", traceback.format_exc())
                log.unhandled_greenlet_exception = True
""",
    "2.47.0": """\
    def fire(self, *, reverse=False, **kwargs):
        # iterate over a copy, so that listeners can add or remove listeners while the event is firing
        handlers = self._handlers[::-1] if reverse else self._handlers.copy()
        for handler in handlers:
            try:
                handler(**kwargs)
            except (StopUser, StopTest, RescheduleTask, RescheduleTaskImmediately, InterruptTaskSet):
                # These exceptions could be thrown by, for example, a request handler,
                # in which case they are entirely appropriate and should not be caught
                raise
            except Exception:
                logging.error("Uncaught exception in event handler: \\n%s", traceback.format_exc())
                log.unhandled_greenlet_exception = True
""",
}
"""``EventHook.fire`` as in Locust's wheels, every release from 2.32.0 to 2.47.0, by releases: exact copies
(text and indentation) of their source, the reference for dispatch.KNOWN_FIRES and its forms."""


class _NeverRaised(Exception):
    """StopTest in the reference copies on a Locust that has none (< 2.43)."""


@pytest.fixture(scope="module")
def reference_hooks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, type[EventHook]]:
    """``{releases: an EventHook subclass whose fire is the copy in LOCUST_FIRES}``, each compiled from a file of
    its own, in a class, as in Locust's locust/event.py."""
    hooks = {}
    for index, (releases, text) in enumerate(LOCUST_FIRES.items()):
        module = tmp_path_factory.mktemp("locust_fires") / f"event_{index}.py"
        module.write_text(f"class ReferenceEventHook(EventHook):\n{text}")
        namespace = dict(
            EventHook=EventHook, StopUser=StopUser, StopTest=StopTest or _NeverRaised, RescheduleTask=RescheduleTask,
            RescheduleTaskImmediately=RescheduleTaskImmediately, InterruptTaskSet=InterruptTaskSet, logging=logging,
            traceback=traceback, log=locust_log,
        )
        exec(compile(module.read_text(), str(module), "exec"), namespace)
        hooks[releases] = namespace["ReferenceEventHook"]
    return hooks


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3])


def test_known_fires_are_the_sources_of_locusts_releases(reference_hooks) -> None:
    """Each reference copy's digest is in KNOWN_FIRES with its releases; KNOWN_FIRES has nothing else; the
    installed Locust's fire is the one of its release."""
    digests = {}
    for releases, hook in reference_hooks.items():
        digest = fire_digest(hook.fire)
        assert digest == hashlib.sha256(textwrap.dedent(LOCUST_FIRES[releases]).encode()).hexdigest()
        assert KNOWN_FIRES[digest].locust == releases
        digests[releases] = digest
    assert set(digests.values()) == set(KNOWN_FIRES)
    installed = _version(locust.__version__)
    for releases, digest in digests.items():
        first, _, last = releases.partition("-")
        if _version(first) <= installed <= _version(last or first):
            assert fire_digest(EventHook.fire) == digest, f"Locust {locust.__version__} should have {releases}'s fire"


@pytest.mark.parametrize("releases", list(LOCUST_FIRES))
def test_fast_fire_of_each_known_form_behaves_as_its_locusts_fire(releases: str, reference_hooks) -> None:
    """``_fast_fire`` in the form KNOWN_FIRES gives a digest makes the same calls, in the same order, with the
    same exceptions through and the same requests recorded, as that digest's source."""
    form = KNOWN_FIRES[fire_digest(reference_hooks[releases].fire)]
    traces, states = [], []
    for fast in (False, True):
        rec, trace = make_recorder(), []

        ours, record = _traced(rec, trace)
        hook = EventHook() if fast else reference_hooks[releases]()

        def setup(hook, fast=fast, ours=ours, record=record):
            if fast:
                hook.fire = _fast_fire(hook, ours, record, form.over_copy, form.stop_test)

        traces.append(_trace_run(hook, ours, trace, setup))
        states.append(_state(rec))
        locust_log.unhandled_greenlet_exception = False
    assert traces[0] == traces[1] and states[0] == states[1]
    # over the live list, a listener that removes itself makes the loop skip the next one
    assert (("failing", "/a") in traces[1]) == form.over_copy


@pytest.mark.skipif(StopTest is None, reason=NO_STOP_TEST)
@pytest.mark.parametrize("releases", list(LOCUST_FIRES))
def test_stop_test_passes_where_its_locusts_fire_lets_it(releases: str, reference_hooks) -> None:
    form = KNOWN_FIRES[fire_digest(reference_hooks[releases].fire)]

    def stop_the_test(**_kw):
        raise StopTest()

    for fast in (False, True):
        hook = EventHook() if fast else reference_hooks[releases]()
        if fast:
            hook.fire = _fast_fire(hook, stop_the_test, lambda *values: stop_the_test(), form.over_copy, form.stop_test)
        hook.add_listener(stop_the_test)
        locust_log.unhandled_greenlet_exception = False
        if form.stop_test:
            with pytest.raises(StopTest):
                hook.fire(name="/x")
        else:  # logged, not raised, before Locust 2.43
            hook.fire(name="/x")
            assert locust_log.unhandled_greenlet_exception
    locust_log.unhandled_greenlet_exception = False
