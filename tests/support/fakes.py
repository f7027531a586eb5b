"""Stand-ins for what Locust hands us, for in-process unit tests and for the test locustfiles.

Light on purpose: no ``locust`` or ``locust_metrics`` import, so a locustfile that imports this in a child
process (``tests/`` is on its PYTHONPATH: :func:`support.processes.child_env`) loads nothing else with it.
"""

from __future__ import annotations

from typing import Any


class Response:
    """A response as a request event carries it: we read ``status_code`` only, whatever it holds (int, text,
    None, ...). ``__slots__``: cheap enough for locustfiles that fire events at full speed."""

    __slots__ = ("status_code",)

    def __init__(self, status_code: Any) -> None:
        self.status_code = status_code

    def __repr__(self) -> str:
        return f"Response({self.status_code!r})"


class NoStatus:
    """A response object without ``status_code`` (what a custom client may pass)."""

    __slots__ = ()


class FakeEnvironment:
    """A Locust environment without runner, events, web UI or parsed options: what a
    :class:`~locust_metrics.exporter.MetricsExporter` needs to render its registry in a unit test."""

    runner = None
    parsed_options = None
    events = None

    def __init__(self, host: str = "http://127.0.0.1:1") -> None:
        self.host = host
        self.user_classes: list[type] = []
