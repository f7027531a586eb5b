"""Hostile request data: names, methods, times, lengths, responses and exceptions that break naive exporters.

Two kinds:

* what Locust's own statistics survive: a real run fires it (``tests/locustfiles/hostile.py``), so Locust's exit
  code stays its own (1, from the failures) and any exception of ours would show (exit code 2, a traceback);
  ``tests/test_hostile_input.py`` feeds it to the recorder in process too;
* what only our recorder is fed, in process (``tests/test_hostile_input.py``): Locust's own statistics raise on
  it (a NaN or text response time, a name that is no ``str``) or its output cannot carry it (lone surrogates
  are no UTF-8), or it raises from ``__str__``, ``__bool__`` or ``status_code``.

Imported by a locustfile in a child process: ``locust`` only, no ``locust_metrics`` (its baseline run must not
load the plugin), no pytest.
"""

from __future__ import annotations

from locust.exception import CatchResponseError

from .fakes import NoStatus, Response


# ---------------------------------------------------------------------------------------------- raising values
class RaisingStatus:
    """A response whose ``status_code`` raises."""

    @property
    def status_code(self) -> int:
        raise RuntimeError("status_code raises")


class RaisingStr:
    """A request name whose ``str()`` raises (hashable, equal only to itself)."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ raises")

    def __hash__(self) -> int:
        return 7

    def __eq__(self, other: object) -> bool:
        return self is other


class RaisingMessage(CatchResponseError):
    """A ``response.failure(...)`` whose message raises."""

    def __str__(self) -> str:
        raise RuntimeError("the message raises")


class RaisingBool(Exception):
    """An exception whose truthiness raises."""

    def __bool__(self) -> bool:
        raise RuntimeError("truthiness raises")


# ---------------------------------------------------------------------------------------------- Locust survives
NAMES = [
    'q"uote', "back\\slash", "new\nline", "tab\tand\rreturn", "\r\t\x00\x1b\x7f", "nul\x00byte", "ünïcødé ✓ 🚀",
    "\u2028\ufeff", "", " ", "x" * 3000, "y" * 1000, "{}[]=,", 'le="0.1"', 'le="0.1"} 1\n# EOF', "__overflow__",
]
"""Request names: only strings (Locust's own statistics table sorts names and fails on anything else)."""

METHODS = ["GET", "post", 'M"E\\T\nH', "", "ü" * 5]

TIMES = [None, 0, 1.5, -1.0, -1e9, 1e300, 10**30, 250]
"""Response times in ms: none, negative, huge."""

LENGTHS = [0, 512, -5, 1e300, float("nan"), float("inf"), 10**30, 3.7]
"""Response lengths."""

RESPONSES = [None, Response(200), Response(404), Response("abc"), Response("200"), Response(None), Response(-1),
             Response(10**6), Response(200.0), NoStatus(), RaisingStatus()]

EXCEPTIONS = [None, None, None, CatchResponseError('a "quoted"\nmessage'), "a string failure \\ with backslash",
              CatchResponseError('"\\'), CatchResponseError(""), ConnectionRefusedError("[Errno 111] http://x")]
"""Failures (None: a success), as Locust passes them: exceptions, and plain strings from custom clients."""

HUGE = "boom " * 40_000
HUGE_ERRORS = [Exception(HUGE), CatchResponseError(HUGE), CatchResponseError("\n" * 5000 + HUGE)]
"""200 kB messages (a real run fires them on one name only: Locust prints every distinct error at exit)."""


# ---------------------------------------------------------------------------------------------- recorder only
UNENCODABLE_NAMES = ["lone \ud800 surrogate", "\udcff" * 2000]
"""Strings that are no UTF-8 (lone surrogates, from undecodable bytes)."""

NON_STR_NAMES = [42, None, RaisingStr(), ["unhashable"]]

TIMES_BEYOND_LOCUST = [float("nan"), float("inf"), float("-inf"), "12"]

EXCEPTIONS_BEYOND_LOCUST = [RaisingMessage(), "\ud800 surrogate failure", CatchResponseError("x\n" * 10**5)]
