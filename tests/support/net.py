"""Network helpers for tests: a free port on 127.0.0.1, HTTP requests, waiting until a URL answers."""

from __future__ import annotations

import base64
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any, NamedTuple

from .waiting import wait_for


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_args(processes: int) -> list[str]:
    """Locust's ``--processes N`` with its master on a free port (the forked workers connect to
    ``--master-port``): Locust's default, 5557, would collide with another test run on the same machine."""
    port = str(free_port())
    return ["--processes", str(processes), "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
            "--master-port", port]


class Answer(NamedTuple):
    """An HTTP answer: ``status`` (int), ``body`` (bytes), ``headers`` (dict)."""

    status: int
    body: bytes
    headers: dict[str, str]


def http_request(
    url: str,
    *,
    method: str = "GET",
    form: Mapping[str, Any] | None = None,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
    context: ssl.SSLContext | None = None,
) -> Answer:
    """One HTTP(S) request with urllib; an error status is an answer too (not an exception).

    Args:
        url: the URL.
        method: the HTTP method.
        form: sent as ``application/x-www-form-urlencoded`` (sequences as repeated keys).
        data: the request body as it is (give its ``Content-Type`` in ``headers``); not with ``form``.
        headers: request headers.
        timeout: seconds for connecting and for each read.
        context: TLS client context (e.g. one trusting a test CA); default: the system's.

    Raises:
        OSError: nothing answers (``urllib.error.URLError``, refused, reset, TLS errors, timeouts).
    """
    all_headers = dict(headers or {})
    if form is not None:
        data = urllib.parse.urlencode(form, doseq=True).encode()
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return Answer(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read(), dict(exc.headers))


def http_get(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """GET ``url``; returns (status, body text). Raises ``OSError`` when nothing answers."""
    answer = http_request(url, headers=headers, timeout=timeout)
    return answer.status, answer.body.decode()


def basic_auth(user: str, password: str) -> str:
    """The ``Authorization`` header value of HTTP basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def wait_for_http(url: str, timeout: float = 20.0) -> None:
    """Wait until ``url`` answers anything (any status); raises ``TimeoutError``."""
    wait_for(lambda: http_get(url, timeout=1.0), timeout, interval=0.1, what=f"{url} to answer")
