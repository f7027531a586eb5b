"""The one way tests wait for something: poll a predicate until it holds or a deadline passes.

Start-up and shutdown times vary with the machine's load, so tests wait for the condition itself, never for a
fixed time that happens to be enough.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.25,
    what: str = "condition",
    *,
    retry_on: tuple[type[BaseException], ...] = (OSError,),
    explain: Callable[[], str] | None = None,
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy; return that.

    Args:
        predicate: called at least once, and once more when ``timeout`` has passed.
        timeout: seconds to wait at most.
        interval: seconds between two calls.
        what: what is waited for, e.g. ``"the demo target"`` (for the error message).
        retry_on: exception types that mean "not yet" (default ``OSError``: nothing answers yet, connection
            refused or reset); any other exception of ``predicate`` propagates at once. ``()``: none.
        explain: called on timeout; its text (e.g. the last output of a process) ends the error message.

    Raises:
        TimeoutError: ``timeout`` seconds passed; the message names ``what`` and the last retried exception.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except retry_on as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout}s waiting for {what}"
            if last_error is not None:
                message += f" (last error: {last_error!r})"
            if explain is not None:
                message += f"\n{explain()}"
            raise TimeoutError(message)
        time.sleep(interval)
