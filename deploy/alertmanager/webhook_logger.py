"""A minimal Alertmanager webhook receiver that prints every notification: the stack's example receiver.

Alertmanager POSTs a JSON document (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)
to every URL of a ``webhook_configs`` receiver. This server answers 200 and prints one line per alert:

    [webhook] FIRING LocustSlowRequests severity=warning GET /reports/sales: 100% of GET /reports/sales requests are slow

Run: ``python webhook_logger.py [--host 0.0.0.0] [--port 9095] [--json]`` (``--json`` also prints the raw payload).
Standard library only, so any Python 3 image runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def describe(payload: dict) -> list[str]:
    """One human-readable line per alert of an Alertmanager webhook ``payload``."""
    lines = []
    for alert in payload.get("alerts", []):
        labels = alert.get("labels", {})
        annotations = alert.get("annotations", {})
        where = " ".join(v for v in (labels.get("method"), labels.get("name"), labels.get("node")) if v)
        lines.append(
            "[webhook] {status} {alertname} severity={severity} {where}: {summary}".format(
                status=str(alert.get("status", payload.get("status", "?"))).upper(),
                alertname=labels.get("alertname", "?"),
                severity=labels.get("severity", "-"),
                where=where or labels.get("instance", ""),
                summary=annotations.get("summary", ""),
            )
        )
    return lines


class Handler(BaseHTTPRequestHandler):
    print_json = False

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            payload = json.loads(body)
        except ValueError:
            self.send_response(400)
            self.end_headers()
            return
        for line in describe(payload):
            print(line, flush=True)
        if self.print_json:
            print(json.dumps(payload, indent=2), flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        body = b"alertmanager webhook logger: POST notifications here\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet: one line per alert is enough
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=9095)
    parser.add_argument("--json", action="store_true", help="also print each raw payload")
    args = parser.parse_args(argv)
    Handler.print_json = args.json
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"[webhook] listening on http://{args.host}:{server.server_port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
