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
from .errors import OptionError
from .exporter import MetricsExporter
from .options import Settings, add_arguments, keywords_doc

__all__ = ["__version__", "install", "MetricsExporter", "OptionError", "Settings"]

logger = logging.getLogger("locust_metrics")

_ATTRIBUTE = "_locust_metrics_exporter"


def install(environment: Any, **options: Any) -> MetricsExporter:
    """Export ``environment``'s test as Prometheus metrics; returns the :class:`MetricsExporter`.

    Keyword options (all optional; the same as the ``--metrics-*`` command-line options, declared in
    :data:`locust_metrics.options.OPTIONS`; **milliseconds** for slow thresholds, **seconds** for buckets,
    timeouts and intervals; ``slow_thresholds`` also takes a mapping ``{name, "re:REGEX" or re.Pattern: ms}``,
    ``labels`` a mapping, ``buckets`` an iterable of seconds, ``web_config`` a mapping of the file's content):

    {keywords}

    Idempotent: a second call on the same Environment returns the first exporter and changes nothing.
    Call it before the test starts (requests before it are not counted).

    Raises:
        OptionError: an option has an invalid value (the message names option and value).
        OSError: our port cannot be bound (the message names the address and ``--metrics-port``).
    """
    existing: MetricsExporter | None = getattr(environment, _ATTRIBUTE, None)
    if existing is not None:
        return existing
    exporter = MetricsExporter(environment, Settings.from_kwargs(**options))
    exporter.start()
    setattr(environment, _ATTRIBUTE, exporter)
    return exporter


if install.__doc__:  # the keywords, from the option declarations (not under python -OO)
    install.__doc__ = install.__doc__.replace("{keywords}", keywords_doc().replace("\n", "\n    "))


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
