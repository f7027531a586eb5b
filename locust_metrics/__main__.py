"""``python -m locust_metrics``: the options, and the alert rules made from the thresholds.

* ``python -m locust_metrics`` prints the ``--metrics-*`` options (flags, env vars, defaults). Locust prints
  ``locust --help`` before it imports the locustfile (locustio/locust#2917), so options that a plugin adds
  from the locustfile never appear there. They are still Locust options: pass them to ``locust``, set them
  as ``LOCUST_METRICS_*`` environment variables, or in ``locust.conf``.
* ``python -m locust_metrics alert-rules [--window 5m] [--for 1m] [--severity warning] [locust options]``
  prints a Prometheus rule file (YAML) with one alert per ``--metrics-threshold`` threshold, read the way
  Locust reads options: flags, ``LOCUST_METRICS_THRESHOLD``, ``locust.conf`` (or ``--config FILE``). Exit
  code 2, naming the option and the value, for a bad threshold; 1 when there is none.
"""

from __future__ import annotations

import argparse
import sys

from locust.argument_parser import get_empty_argument_parser

from .errors import OptionError
from .options import BY_KEYWORD, GROUP_TITLE, OPTIONS, Settings, add_arguments, where


def print_options() -> int:
    """Print the options' help; returns 0."""
    parser = get_empty_argument_parser(add_help=False)
    parser.prog = "locust"
    add_arguments(parser)
    sys.stdout.write("locust-metrics adds these options to Locust (locust -f locustfile.py [options]):\n")
    for group in parser._action_groups:
        if group.title == GROUP_TITLE:
            formatter = parser._get_formatter()
            formatter.start_section(group.title)
            formatter.add_text(group.description)
            formatter.add_arguments(group._group_actions)
            formatter.end_section()
            sys.stdout.write(formatter.format_help())
    first = OPTIONS[0]
    sys.stdout.write(
        f"\nEach option is also an environment variable ({first.flag}: {first.env_var}) and a locust.conf\n"
        f"key ({first.conf_key} = {first.default}).\n"
        "python -m locust_metrics alert-rules [--window 5m] [--for 1m] [--severity warning] [options]: the\n"
        "Prometheus alert rules of the thresholds.\n"
    )
    return 0


def print_alert_rules(argv: list[str]) -> int:
    """Print the alert rules of the thresholds in ``argv`` / the environment / ``locust.conf``; the exit code."""
    from locust.argument_parser import get_parser

    from .threshold_reports import alert_rules_yaml

    prog = "python -m locust_metrics alert-rules"
    ours = argparse.ArgumentParser(prog=prog, add_help=False)
    ours.add_argument("--window", default="5m", help="range of the rates the alerts look at (PromQL duration)")
    ours.add_argument("--for", dest="for_", default="1m", help="how long a threshold must fail before it fires")
    ours.add_argument("--severity", default="warning", help="the alerts' severity label")
    own, rest = ours.parse_known_args(argv)
    parser = get_parser()  # Locust's, with ours added: flags, LOCUST_* variables and locust.conf, as locust does
    parser.prog = prog
    add_arguments(parser)
    options, _unknown = parser.parse_known_args(rest)
    try:
        settings = Settings.from_options(options)
    except OptionError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    if not settings.thresholds:
        sys.stderr.write(f"no thresholds: give {where('thresholds')} or a {BY_KEYWORD['thresholds'].conf_key} line in "
                         "locust.conf\n")
        return 1
    sys.stdout.write(alert_rules_yaml(settings.thresholds, window=own.window, for_=own.for_, severity=own.severity))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m locust_metrics [alert-rules ...]``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["alert-rules"]:
        return print_alert_rules(argv[1:])
    return print_options()


if __name__ == "__main__":
    sys.exit(main())
