"""Fast dispatch of Locust's ``request`` event to the recorder: the hot path's way in.

Locust calls every ``request`` listener as ``handler(**kwargs)``. For a Python function, CPython turns
that keyword dict into a fresh argument vector and binds nine keyword parameters one by one: on this
project's machine that costs about 250 ns per request, a third of what recording the request costs.
So the recorder's hot path (:meth:`RequestRecorder.record`) takes the six values it reads positionally,
and this module makes the event hand them over, read from its keyword dict.

:func:`attach` adds our listener to the hook as any listener (so it keeps its place in the order of
listeners, ``remove_listener`` works, and a hook we do not know still calls it) and, when the hook is
Locust's own :class:`locust.event.EventHook` with the ``fire`` we know, gives that one hook object a
``fire`` of its own (an instance attribute, so nothing else in Locust changes). That ``fire`` does
exactly what Locust's does: it calls every listener in order (over a copy of the list, where Locust's
does), in reverse when asked; it re-raises Locust's flow-control exceptions (``StopUser``, ``StopTest``, ``RescheduleTask``,
``RescheduleTaskImmediately``, ``InterruptTaskSet``) and logs any other exception of a listener as
Locust does. When the listener it meets is ours, it calls ``record(kwargs["request_type"], ...,
kwargs["exception"])`` (the keys of :data:`~locust_metrics.recorder.EVENT_DEFAULTS`; their defaults for
those the event was fired without) instead of ``listener(**kwargs)``.

"Known" means that the source text of Locust's ``EventHook.fire`` is exactly one of those we reproduce:
its sha256 is a key of :data:`KNOWN_FIRES`, which has one for every release from Locust 2.32.0 to 2.47.0.
Any other ``fire`` (a Locust that changed it, a subclass, a hook another plugin wrapped already, a
Locust installed without its source) keeps its own, and our listener is called the ordinary way: slower,
exactly as correct.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import textwrap
import traceback
from collections.abc import Callable, Iterable
from types import CodeType
from typing import Any, NamedTuple

from locust import log as locust_log
from locust.event import EventHook
from locust.exception import InterruptTaskSet, RescheduleTask, RescheduleTaskImmediately, StopUser

from .recorder import EVENT_DEFAULTS

try:  # Locust >= 2.43
    from locust.exception import StopTest
except ImportError:  # pragma: no cover - older Locust: its fire does not let StopTest through
    StopTest = None  # type: ignore[misc,assignment]

logger = logging.getLogger(__name__)


class FireForm(NamedTuple):
    """What a known ``EventHook.fire`` does, as :func:`_fast_fire` reproduces it."""

    over_copy: bool
    """It iterates over a copy of the listeners (else over the live list, ``reversed()`` for ``reverse``)."""
    stop_test: bool
    """It lets ``StopTest`` through (as it does ``StopUser``, ``RescheduleTask``,
    ``RescheduleTaskImmediately`` and ``InterruptTaskSet``; any other exception is logged as ``Uncaught
    exception in event handler``)."""
    locust: str
    """The Locust releases (every one on PyPI in that range) whose ``fire`` has this source text."""


KNOWN_FIRES: dict[str, FireForm] = {
    "7fc3df32a90fcad53461b796fb69eedd1d1db06303fe3f47a1a436f3e3c832f8": FireForm(False, False, "2.32.0-2.42.6"),
    "9d5e0a178ed31a4288491012864a4c5a6bf5565b82d5fd20f88fbbc1fab28695": FireForm(False, True, "2.43.0-2.46.7"),
    "16009a2bab6788cb0e915991fe4a0ad9aa7fcf1179c5111e72d77236e72d7165": FireForm(True, True, "2.47.0"),
}
"""The ``EventHook.fire`` we reproduce: ``{sha256 of its source text (see fire_digest): its form}``.

Read from the wheel of every Locust release on PyPI from 2.32.0 to 2.47.0 (77 releases): 2.43.0 added
``StopTest`` to the exceptions that pass, 2.47.0 made it iterate over a copy; nothing else changed.
``tests/test_dispatch.py`` holds the three source texts and runs each against ``_fast_fire`` in its form."""


def fire_digest(fire: Any) -> str | None:
    """The sha256 (hex) of the source text of the function ``fire``, as :data:`KNOWN_FIRES` keys it.

    The text is what :func:`inspect.getsource` gives for ``fire.__code__`` (read from the file the code
    was compiled from, without following ``__wrapped__``), dedented, encoded as UTF-8. None when the
    source cannot be read (a Locust installed without its ``.py`` files) or does not match the code
    that runs: compiled again, it must give the same names, locals and constants (the file may have
    changed since the import). Bytecode is not compared: one source compiles to different bytecode in
    different patch releases of one Python. About 1 ms; called once per :func:`attach`.
    """
    try:
        code = fire.__code__
        source = textwrap.dedent(inspect.getsource(code))
        compiled = next(c for c in compile(source, code.co_filename, "exec").co_consts if isinstance(c, CodeType))
        if any(getattr(compiled, a) != getattr(code, a) for a in ("co_names", "co_varnames", "co_consts")):
            return None
        return hashlib.sha256(source.encode("utf-8")).hexdigest()
    except Exception:  # no source, or not a plain function
        return None


def known_fire(hook: Any) -> FireForm | None:
    """The form (see :data:`KNOWN_FIRES`) of ``hook``'s ``fire`` when ``hook`` is a plain
    :class:`locust.event.EventHook` whose ``fire`` is Locust's, with a source text we know; else None."""
    try:
        if type(hook) is not EventHook or getattr(hook.fire, "__func__", None) is not EventHook.fire:
            return None  # a subclass, or a fire of its own (see _own_fire)
        form = KNOWN_FIRES.get(fire_digest(EventHook.fire))  # type: ignore[arg-type]
        return None if form is None or (form.stop_test and StopTest is None) else form
    except Exception:  # a Locust we cannot inspect: the ordinary way
        return None


def attach(hook: Any, listener: Callable[..., None], record: Callable[..., None]) -> bool:
    """Add ``listener`` to ``hook`` and, where possible, make ``hook`` call ``record`` in its place.

    Args:
        hook: Locust's ``environment.events.request`` (an :class:`~locust.event.EventHook`).
        listener: the ordinary listener (keyword arguments, as Locust calls listeners); it is what the
            hook's list holds, so its position, :meth:`~locust.event.EventHook.remove_listener` and any
            hook we do not know work as for every listener.
        record: does what ``listener`` does, taking the values of the event's keywords in
            :data:`~locust_metrics.recorder.EVENT_DEFAULTS`, in that order, positionally (their defaults
            for those the event was fired without). Must not raise (if it raises a ``KeyError``, it is
            called once more, with the defaults; any other exception is handled as Locust does).

    Returns:
        True when the fast ``fire`` is in place; False when the listener is called the ordinary way. A
        second call for the same hook and listener replaces ``record`` (idempotent otherwise).
    """
    if listener not in hook._handlers:
        hook.add_listener(listener)
    if _own_fire(hook, listener):
        del hook.fire  # ours, for this listener: made again below, with this record
    form = known_fire(hook)
    if form is None:
        logger.debug("locust-metrics: request event dispatched the ordinary way (unknown EventHook.fire)")
        return False
    hook.fire = _fast_fire(hook, listener, record, form.over_copy, form.stop_test)
    return True


def detach(hook: Any, listener: Callable[..., None]) -> None:
    """Undo :func:`attach`: remove ``listener`` and, if ``hook`` has our ``fire`` for it, Locust's again."""
    if listener in hook._handlers:
        hook.remove_listener(listener)
    if _own_fire(hook, listener):
        del hook.fire


def _own_fire(hook: Any, listener: Callable[..., None]) -> bool:
    """Whether ``hook.fire`` is the fire :func:`attach` gave it for ``listener``.

    Read as an attribute, not in ``vars(hook)``: ``vars()`` makes CPython (3.11+) give the object a real
    ``__dict__`` in place of its inline attribute values, and every ``hook._handlers`` of every fire then
    costs a dict lookup (about 270 instructions per request event here).
    """
    return getattr(hook.fire, "_locust_metrics_listener", None) is listener


def _fast_fire(
    hook: EventHook, ours: Callable[..., None], record: Callable[..., None], over_copy: bool, stop_test: bool
) -> Callable[..., None]:
    """``hook``'s ``fire``: Locust's ``EventHook.fire`` in the given form, with ``record(...)`` for ``ours``."""
    flow_control: tuple[type[BaseException], ...] = (StopUser, RescheduleTask, RescheduleTaskImmediately, InterruptTaskSet)
    if stop_test and StopTest is not None:  # (a Locust without StopTest cannot raise it)
        flow_control += (StopTest,)
    error = logging.error
    format_exc = traceback.format_exc
    keys, defaults = tuple(EVENT_DEFAULTS), tuple(EVENT_DEFAULTS.values())

    def fire(*, reverse: bool = False, **kwargs: Any) -> None:
        handlers: Iterable[Any]
        if over_copy:  # Locust 2.47: a copy, so that listeners can add or remove listeners while it fires
            handlers = hook._handlers[::-1] if reverse else hook._handlers.copy()
        else:
            handlers = reversed(hook._handlers) if reverse else hook._handlers
        for handler in handlers:
            try:
                if handler is ours:
                    try:  # EVENT_DEFAULTS' keys, in order (constants: cheaper than six closure variables)
                        record(kwargs["request_type"], kwargs["name"], kwargs["response_time"], kwargs["response_length"],
                               kwargs["response"], kwargs["exception"])
                    except KeyError:  # fired without some of them (a custom client): their defaults
                        record(*map(kwargs.get, keys, defaults))
                else:
                    handler(**kwargs)
            except flow_control:
                raise
            except Exception:
                error("Uncaught exception in event handler: \n%s", format_exc())
                locust_log.unhandled_greenlet_exception = True

    fire._locust_metrics_listener = ours  # type: ignore[attr-defined]
    fire.__doc__ = EventHook.fire.__doc__
    return fire
