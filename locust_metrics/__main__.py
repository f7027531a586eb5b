"""``python -m locust_metrics``: print the ``--metrics-*`` options (flags, env vars, defaults).

Locust prints ``locust --help`` before it imports the locustfile (locustio/locust#2917), so options that
a plugin adds from the locustfile never appear there; this prints them instead. They are still Locust
options: pass them to ``locust``, set them as ``LOCUST_METRICS_*`` environment variables, or in
``locust.conf``.
"""

from __future__ import annotations

import sys

from locust.argument_parser import get_empty_argument_parser

from .options import GROUP_TITLE, OPTIONS, add_arguments


def main(argv: list[str] | None = None) -> int:
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
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
