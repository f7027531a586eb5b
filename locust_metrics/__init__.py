"""locust-metrics: exact, live Prometheus metrics of a Locust load test.

Add one line to a locustfile::

    import locust_metrics  # noqa: F401

and run Locust as usual; Prometheus scrapes ``http://<host>:9646/metrics`` (and ``/metrics`` on the web
UI). Importing registers listeners on ``locust.events`` (``init_command_line_parser`` for the
``--metrics-*`` options, ``init`` to build the exporter); nothing else happens at import time, so
``--processes`` forks stay clean. Importing twice is harmless.

For Locust used as a library, call :func:`install` on your Environment.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import locust

from ._version import __version__
from .options import OptionError, Settings, add_arguments
from .plugin import MetricsExporter

__all__ = ["__version__", "install", "MetricsExporter", "OptionError", "Settings"]

logger = logging.getLogger("locust_metrics")

_ATTRIBUTE = "_locust_metrics_exporter"


def install(environment: Any, **options: Any) -> MetricsExporter:
    """Export ``environment``'s test as Prometheus metrics; returns the :class:`MetricsExporter`.

    Keyword options (all optional; the same as the ``--metrics-*`` command-line options):

    * ``port`` (int, default 9646): our HTTP endpoint's port; 0 = no server of our own (serve
      ``exporter.registry`` yourself, e.g. ``prometheus_client.generate_latest(exporter.registry)``).
    * ``worker_port`` (int, default 0): on a worker, serve its own endpoint on this port + worker index.
    * ``host`` (str, default ``""``: all interfaces): bind address.
    * ``slow_threshold`` (float, **milliseconds**, default 1000): a request is slow when its response time
      is greater than this.
    * ``slow_thresholds`` (mapping, default none): per-endpoint thresholds in milliseconds, keyed by request
      name (exact), ``"re:REGEX"`` or a compiled ``re.Pattern`` (whole-name match).
    * ``buckets`` (iterable of float or comma-separated str, **seconds**): histogram bucket upper bounds;
      every slow threshold is added as a bound.
    * ``max_names`` (int >= 1, default 500): most (method, name) entries; the rest count under
      ``name="__overflow__"``.
    * ``labels`` (mapping or ``"k=v,..."``): constant labels on every series.
    * ``final_scrape_timeout`` (float, **seconds**, default 30): wait for a last scrape at exit.
    * ``serve_web_ui`` (bool, default True): add ``/metrics`` to the web UI when it exists.
    * ``web_config`` (str path, or a mapping of its content; default none): exporter-toolkit web config:
      ``tls_server_config`` (HTTPS) and ``basic_auth_users`` (bcrypt hashes); see
      :mod:`locust_metrics.security`.
    * ``max_concurrent_renders`` (int >= 1, default 4): most scrape renders in flight at once; scrapes of a
      format being rendered share that render, a scrape beyond the bound gets HTTP 503 with ``Retry-After``
      (see :mod:`locust_metrics.rendering`).
    * ``pushgateway`` (str URL, default ``""``: off): also push to this Pushgateway, periodically, at test
      stop, and in :meth:`MetricsExporter.stop` (Locust as a library has no ``quit`` event: call it at the
      end); see :mod:`locust_metrics.push`.
    * ``push_interval`` (float, **seconds** > 0, default 10), ``push_job`` (str, default ``"locust"``),
      ``push_run`` (str, default: the first test's ``run_id``): push period and grouping key.

    Idempotent: a second call on the same Environment returns the first exporter and changes nothing.
    Call it before the test starts (requests before it are not counted).

    Raises:
        OptionError: an option has an invalid value (the message names option and value).
        OSError: our port cannot be bound (the message names the address and ``--metrics-port``).
    """
    existing = getattr(environment, _ATTRIBUTE, None)
    if existing is not None:
        return existing
    exporter = MetricsExporter(environment, Settings.from_kwargs(**options))
    exporter.start()
    setattr(environment, _ATTRIBUTE, exporter)
    return exporter


def _install_from_options(environment: Any, **_kwargs: Any) -> None:
    """``init`` listener: build the exporter from Locust's parsed options; a bad setup ends Locust (exit 1)."""
    if getattr(environment, _ATTRIBUTE, None) is not None:
        return
    try:
        exporter = MetricsExporter(environment, Settings.from_options(environment.parsed_options), from_options=True)
        exporter.start()
    except (OptionError, OSError) as exc:
        logger.error("%s", exc)
        sys.exit(1)
    setattr(environment, _ATTRIBUTE, exporter)


def _register(events: Any) -> None:
    """Register our import-time listeners on ``events`` once (a second import or reload adds nothing)."""
    if getattr(events, "_locust_metrics_registered", False):
        return
    events._locust_metrics_registered = True
    events.init_command_line_parser.add_listener(add_arguments)
    events.init.add_listener(_install_from_options)


_register(locust.events)
