"""Test support: helpers the tests share, one of each, in modules named for what they hold.

* :mod:`support.paths`: ``REPO``, ``TESTS``, ``LOCUSTFILES``.
* :mod:`support.waiting`: :func:`~support.waiting.wait_for`, the one polling helper.
* :mod:`support.net`: a free port, HTTP requests, waiting until a URL answers.
* :mod:`support.processes`: the environment of child processes, any child process, real Locust processes, the
  demo target, binaries a test needs.
* :mod:`support.scrapes`: parsed scrapes (:class:`~support.scrapes.Samples`), Locust's ``--csv`` files, and the
  checks that compare them.
* :mod:`support.prometheus`: real Prometheus, Alertmanager and Pushgateway servers, a webhook receiver, promtool.
* :mod:`support.tls`: certificates, bcrypt hashes and web config files made in the test.
* :mod:`support.fakes`: stand-ins for what Locust hands us (responses, an environment); light, for locustfiles too.
* :mod:`support.hostile`: hostile request data, shared by ``test_hostile_input.py`` and ``locustfiles/hostile.py``
  (import its lists from the module: ``from support.hostile import NAMES``).
* :mod:`support.recorders`: recorders for unit tests (built from options; counting careful-path calls).

``from support import X`` works for every public name of these modules (listed in :data:`_EXPORTS`). The names
are imported on first use, so importing one light module (say from a locustfile in a child process) does not
import the heavy ones (pytest, cryptography, ...).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # paths
    "REPO": "paths", "TESTS": "paths", "LOCUSTFILES": "paths",
    # waiting
    "wait_for": "waiting",
    # net
    "free_port": "net", "Answer": "net", "http_request": "net", "http_get": "net", "basic_auth": "net",
    "wait_for_http": "net", "processes_args": "net",
    # processes
    "child_env": "processes", "require_binary": "processes", "DEBIAN_PACKAGES": "processes",
    "ChildProcess": "processes", "LocustProcess": "processes", "locust": "processes", "run_locust": "processes",
    "start_demo_target": "processes",
    # scrapes
    "Samples": "scrapes", "scrape": "scrapes", "scrape_until_exit": "scrapes", "csv_stats": "scrapes",
    "csv_failures": "scrapes", "assert_exact_per_endpoint": "scrapes", "assert_counters_never_decrease": "scrapes",
    "interrupted_in_locust_statistics": "scrapes",
    # prometheus
    "PrometheusServer": "prometheus", "AlertmanagerServer": "prometheus", "WebhookReceiver": "prometheus",
    "PushgatewayServer": "prometheus", "PrometheusAPIError": "prometheus", "prometheus_config": "prometheus",
    "for_prometheus_2": "prometheus", "PROMETHEUS_3_SCRAPE_KEYS": "prometheus", "alertmanager_config": "prometheus", "promtool_check_metrics": "prometheus",
    "PROMETHEUS_BINARIES": "prometheus", "ALERTMANAGER_BINARIES": "prometheus", "PROMTOOL_BINARIES": "prometheus",
    "AMTOOL_BINARIES": "prometheus", "PUSHGATEWAY_BINARIES": "prometheus",
    "sample_points": "prometheus", "native_totals": "prometheus", "native_schema": "prometheus", "final_count": "prometheus",
    # tls
    "Pki": "tls", "make_pki": "tls", "bcrypt_hash": "tls", "write_web_config": "tls",
    # fakes
    "Response": "fakes", "NoStatus": "fakes", "FakeEnvironment": "fakes",
    # recorders
    "make_recorder": "recorders", "CountingRecorder": "recorders",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    except AttributeError as exc:  # else Python reports "cannot import name", hiding the real error
        raise ImportError(f"{name} from {__name__}.{module}: {exc!r}") from exc
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
