"""Real Prometheus, Alertmanager and Pushgateway servers for tests, a webhook receiver, promtool. All on 127.0.0.1,
all bounded.

Reusable from any test::

    from support import PrometheusServer, AlertmanagerServer, WebhookReceiver, prometheus_config

    with WebhookReceiver() as hook, \\
         AlertmanagerServer(tmp_path / "am", alertmanager_config(hook.url)) as am, \\
         PrometheusServer(tmp_path / "prom", prometheus_config(["127.0.0.1:9646"], alertmanagers=[am.address]),
                          rule_files=[REPO / "deploy/prometheus/rules/locust.rules.yml"]) as prom:
        prom.wait_for_targets_up()
        prom.query('sum(rate(locust_requests_total[10s]))')          # -> list of {"metric": {...}, "value": [t, "v"]}
        prom.wait_for(lambda: prom.alerts(state="firing"), timeout=60, what="a firing alert")
        hook.wait_for_alert("LocustSlowRequests", status="firing", timeout=60)

* :class:`PrometheusServer` runs the ``prometheus`` binary (Debian package ``prometheus``) with a config you give
  as a dict (written as YAML) or as text, and rule files copied next to it; ``query``/``query_range``/``series``/
  ``label_values``/``alerts``/``rules``/``targets`` wrap its HTTP API and raise :class:`PrometheusAPIError` on an
  error answer.
* :class:`AlertmanagerServer` runs ``prometheus-alertmanager`` (Debian package ``prometheus-alertmanager``) or an
  upstream ``alertmanager`` binary, clustering off.
* :class:`WebhookReceiver` is an in-process HTTP server recording every Alertmanager webhook payload.
* :class:`PushgatewayServer` runs ``prometheus-pushgateway`` (Debian package ``prometheus-pushgateway``).
* :func:`promtool_check_metrics` runs ``promtool check metrics`` on an exposition.

Every server binds a free port on 127.0.0.1, starts in its own process group, is waited for with a timeout, and
is terminated (then killed) by ``stop()`` / the ``with`` block. A missing binary skips the test with the Debian
package to install (under ``CI`` it fails instead, so CI cannot pass by skipping).
"""

from __future__ import annotations

import json
import math
import shutil
import ssl
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .net import Answer, basic_auth, free_port, http_request
from .processes import ChildProcess, require_binary
from .scrapes import Samples
from .waiting import wait_for

T = TypeVar("T")

PROMETHEUS_BINARIES = ("prometheus",)
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")
PROMTOOL_BINARIES = ("promtool",)
AMTOOL_BINARIES = ("amtool",)
PUSHGATEWAY_BINARIES = ("prometheus-pushgateway", "pushgateway")


class PrometheusAPIError(RuntimeError):
    """The server answered an API call with an error (bad query, ...); the message has its errorType/error."""


# ----------------------------------------------------------------------------------------------- configs
def prometheus_config(
    targets: Sequence[str],
    *,
    job: str = "locust",
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    alertmanagers: Sequence[str] = (),
    extra_scrape_configs: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A minimal Prometheus config dict: one static job scraping ``targets`` ("host:port"), optional Alertmanagers."""
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}, *extra_scrape_configs],
    }
    if alertmanagers:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}
    return config


PROMETHEUS_3_SCRAPE_KEYS = ("scrape_native_histograms", "always_scrape_classic_histograms")
"""Scrape-config keys of Prometheus 3.x (``scrape_native_histograms`` since 3.9) that Debian's 2.42 rejects."""


def for_prometheus_2(config: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """``config`` (a Prometheus config dict) without the keys of :data:`PROMETHEUS_3_SCRAPE_KEYS`, so that
    Debian's Prometheus 2.42 loads it; returns ``(the new config, the keys removed)``."""
    removed: set[str] = set()
    scrape_configs = []
    for job in config.get("scrape_configs", []):
        removed |= set(job) & set(PROMETHEUS_3_SCRAPE_KEYS)
        scrape_configs.append({k: v for k, v in job.items() if k not in PROMETHEUS_3_SCRAPE_KEYS})
    return {**config, "scrape_configs": scrape_configs}, removed


def sample_points(series: Mapping[str, Any]) -> list[tuple[float, Any]]:
    """The samples of one series of a query result, float samples and native histogram samples alike:
    ``[(unix time, value)]``. A float sample (``value`` / ``values`` in the API's answer) gives its value as
    Prometheus writes it (a string, ``"NaN"`` included); a native histogram sample (``histogram`` /
    ``histograms``, Prometheus 2.40+ with native histograms) a dict ``{"count", "sum", "buckets"}``, each bucket
    ``[boundary rule, lower, upper, count]`` with strings for numbers (empty buckets left out)."""
    points = [series[key] for key in ("value", "histogram") if key in series]
    for key in ("values", "histograms"):
        points.extend(series.get(key, ()))
    return [(float(t), v) for t, v in points]


def final_count(prometheus: PrometheusServer, count_expr: str, start: float, end: float,
                step: float = 0.25) -> tuple[float, int] | None:
    """``(t, n)``: the last time ``t`` between ``start`` and ``end`` (``step`` apart) where ``count_expr``, one
    series, has its highest value ``n``: a run's final numbers as one Prometheus stored them (a later scrape of
    the stopped process writes stale markers; of two scrapers, the exporter's final-scrape wait may serve only
    one). None when the query has no series."""
    series = prometheus.query_range(count_expr, start, end, step=step)
    if not series:
        return None
    assert len(series) == 1, (count_expr, series)
    values = [(float(t), float(v)) for t, v in series[0]["values"]]
    top = max(v for _, v in values)
    return max(t for t, v in values if v == top), int(top)


def native_totals(histogram: Mapping[str, Any]) -> tuple[float, float]:
    """One native histogram sample of the HTTP API (:func:`sample_points`' dict): ``(count, in buckets)``.

    ``count`` is what ``histogram_count`` gives: Prometheus takes it from the exposition's ``sample_count``, which
    we fill with the classic histogram's count, so it says nothing of the native buckets. ``in buckets`` is the
    sum of the counts of the native buckets themselves, the zero bucket included: what the native histogram
    holds. A check of the native histogram compares the second; both, to see that they agree."""
    return float(histogram["count"]), sum(float(bucket[3]) for bucket in histogram.get("buckets") or ())


def native_schema(histogram: Mapping[str, Any]) -> int:
    """One native histogram sample of the HTTP API (:func:`sample_points`' dict): its schema, from the ratio of a
    positive bucket's bounds (``2 ** 2 ** -schema``; the zero bucket is left out). A percentile from it is within
    one bucket of the truth, ``2 ** 2 ** -schema - 1`` (4.4% at schema 4, 2.2% at 5, 1.09% at 6). Raises
    ``StopIteration`` without a positive bucket."""
    lower, upper = next((float(b[1]), float(b[2])) for b in histogram["buckets"] if float(b[1]) > 0)
    return round(-math.log2(math.log2(upper / lower)))


def alertmanager_config(webhook_url: str, *, group_wait: str = "0s", group_interval: str = "1s",
                        repeat_interval: str = "1h") -> dict[str, Any]:
    """A minimal Alertmanager config dict: every alert, at once, to one webhook (``send_resolved`` on)."""
    return {
        "route": {
            "receiver": "webhook",
            "group_by": ["alertname", "job", "instance", "method", "name", "node"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [{"name": "webhook", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
    }


class _Server:
    """A server binary (:class:`~support.processes.ChildProcess`) on 127.0.0.1:``port``, waited for until ready,
    stopped for sure."""

    name = "server"

    def __init__(self, workdir: Path, port: int | None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: ChildProcess | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, e.g. for a scrape target or an Alertmanager target."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def _get(self, path: str, timeout: float = 10.0) -> Answer:
        return http_request(f"{self.url}{path}", timeout=timeout)

    def _start(self, args: list[str], timeout: float) -> None:
        """Run ``args`` and wait until ``/-/ready`` answers 200; raises ``RuntimeError`` if the server exits,
        ``TimeoutError`` (with its log) if it is not ready within ``timeout`` s; stopped then."""
        self.process = ChildProcess(args, self.workdir, name=self.name)

        def ready() -> bool:
            if not self.running():
                raise RuntimeError(f"{self.name} exited with {self.process.proc.returncode}:\n{self.output()[-3000:]}")
            return self._get("/-/ready", timeout=2).status == 200

        try:
            wait_for(ready, timeout, interval=0.1, what=f"{self.name} on {self.address} to be ready",
                     explain=lambda: self.output()[-3000:])
        except BaseException:
            self.stop()
            raise

    def running(self) -> bool:
        return self.process is not None and self.process.running()

    def output(self) -> str:
        """Everything the server printed so far."""
        return self.process.output() if self.process is not None else ""

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate (SIGTERM, then SIGKILL after ``timeout`` s) the server's process group. Idempotent."""
        if self.process is not None:
            self.process.stop(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0):  # pragma: no cover - overridden
        raise NotImplementedError


def _write_config(path: Path, config: Mapping[str, Any] | str) -> Path:
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(dict(config), sort_keys=False))
    return path


# ----------------------------------------------------------------------------------------------- Prometheus
class PrometheusServer(_Server):
    """A real Prometheus on 127.0.0.1:<free port>, with its TSDB and config in ``workdir``.

    Args:
        workdir: folder for ``prometheus.yml``, ``rules/``, ``data/`` and ``prometheus.log`` (created).
        config: the configuration, a dict (dumped as YAML) or YAML text. Relative paths in it resolve against
            ``workdir``.
        rule_files: rule files to load: copied into ``workdir/rules/`` and listed as the config's ``rule_files``
            (replacing any there). A dict value is dumped as YAML into a file of that key's name instead::

                rule_files=[REPO / "deploy/prometheus/rules/locust.rules.yml"]
                rule_files={"fast.rules.yml": {"groups": [...]}}
        port: fixed port (default: a free one).
        binary: path of the ``prometheus`` binary (default: found on PATH; the test is skipped if missing).
        extra_args: more command-line flags.
    """

    name = "prometheus"

    def __init__(
        self,
        workdir: Path,
        config: Mapping[str, Any] | str,
        rule_files: Iterable[Path] | Mapping[str, Any] = (),
        *,
        port: int | None = None,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(workdir, port)
        self.binary = binary or require_binary(*PROMETHEUS_BINARIES)
        self.extra_args = list(extra_args)
        parsed = yaml.safe_load(config) if isinstance(config, str) else dict(config)
        rules_dir = self.workdir / "rules"
        copied: list[str] = []
        if isinstance(rule_files, Mapping):
            items = list(rule_files.items())
        else:
            items = [(Path(p).name, Path(p)) for p in rule_files]
        for file_name, source in items:
            rules_dir.mkdir(exist_ok=True)
            destination = rules_dir / file_name
            if isinstance(source, Path):
                shutil.copyfile(source, destination)
            else:
                _write_config(destination, source)
            copied.append(str(destination))
        if copied:
            parsed["rule_files"] = copied
        self.config = parsed
        self.config_path = _write_config(self.workdir / "prometheus.yml", parsed)

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        """Start and wait until ``/-/ready`` answers 200; raises ``TimeoutError`` (with the log) otherwise."""
        self._start([
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={self.address}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=info",
            *self.extra_args,
        ], timeout)
        return self

    # ---------------------------------------------------------------- HTTP API
    def api(self, path: str, params: Mapping[str, Any] | None = None, timeout: float = 20.0) -> Any:
        """POST ``/api/v1/<path>`` with form ``params``; returns ``data``; raises :class:`PrometheusAPIError`."""
        status, body, _ = http_request(f"{self.url}/api/v1/{path}", method="POST", form=dict(params or {}),
                                       timeout=timeout)
        try:
            answer = json.loads(body)
        except ValueError:
            raise PrometheusAPIError(f"{path}: HTTP {status}: {body[:300]!r}") from None
        if answer.get("status") != "success":
            raise PrometheusAPIError(f"{path} {dict(params or {})}: {answer.get('errorType')}: {answer.get('error')}")
        return answer["data"]

    def query_data(self, expr: str, time: float | None = None) -> dict[str, Any]:
        """Instant query; the whole ``data`` (``resultType`` and ``result``)."""
        params: dict[str, Any] = {"query": expr}
        if time is not None:
            params["time"] = f"{time:.3f}"
        return self.api("query", params)

    def query(self, expr: str, time: float | None = None) -> list[dict[str, Any]]:
        """Instant query at ``time`` (unix s; default now): the result list (vector samples, ``"histogram"``
        instead of ``"value"`` for a native histogram sample; for a scalar or string result a one-element list
        ``[{"metric": {}, "value": [t, "v"]}]``)."""
        data = self.query_data(expr, time)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def query_value(self, expr: str, time: float | None = None) -> float | None:
        """The value of a query with a single-sample result, None when empty (raises if more than one)."""
        result = self.query(expr, time)
        if not result:
            return None
        assert len(result) == 1, f"{expr}: {len(result)} samples"
        return float(result[0]["value"][1])

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list[dict[str, Any]]:
        """Range query: list of ``{"metric": {...}, "values": [[t, "v"], ...]}`` (``"histograms": [[t, {...}],
        ...]`` instead for native histogram samples: :func:`sample_points` reads both)."""
        data = self.api("query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                        "step": f"{step:g}"})
        return data["result"]

    def series(self, match: str, start: float | None = None, end: float | None = None) -> list[dict[str, str]]:
        """Label sets of the series matching selector ``match``."""
        params: dict[str, Any] = {"match[]": match}
        if start is not None:
            params["start"] = f"{start:.3f}"
        if end is not None:
            params["end"] = f"{end:.3f}"
        return self.api("series", params)

    def label_values(self, label: str, match: str | None = None, start: float | None = None,
                     end: float | None = None) -> list[str]:
        """Values of ``label`` (of the series matching ``match``): what Grafana's ``label_values()`` does."""
        params: dict[str, Any] = {}
        if match:
            params["match[]"] = match
        if start is not None:
            params["start"] = f"{start:.3f}"
        if end is not None:
            params["end"] = f"{end:.3f}"
        body = self._get(f"/api/v1/label/{urllib.parse.quote(label)}/values?"
                         + urllib.parse.urlencode(params, doseq=True)).body
        answer = json.loads(body)
        if answer.get("status") != "success":
            raise PrometheusAPIError(f"label values {label} {match}: {answer.get('error')}")
        return answer["data"]

    def alerts(self, state: str | None = None, alertname: str | None = None) -> list[dict[str, Any]]:
        """Active alerts (``pending`` and ``firing``), optionally only those in ``state`` / named ``alertname``."""
        body = self._get("/api/v1/alerts").body
        alerts = json.loads(body)["data"]["alerts"]
        return [a for a in alerts if (state is None or a["state"] == state)
                and (alertname is None or a["labels"].get("alertname") == alertname)]

    def rules(self) -> list[dict[str, Any]]:
        """Loaded rule groups (``/api/v1/rules``), with each rule's health and last error."""
        body = self._get("/api/v1/rules").body
        return json.loads(body)["data"]["groups"]

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets with ``health`` ("up"/"down"/"unknown") and ``lastError``."""
        body = self._get("/api/v1/targets").body
        return json.loads(body)["data"]["activeTargets"]

    def wait_for_targets_up(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until every active target has been scraped successfully at least once."""
        return self.wait_for(lambda: (t := self.targets()) and all(x["health"] == "up" for x in t) and t,
                             timeout, what="all scrape targets up")

    def wait_for(self, predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.25,
                 what: str = "condition") -> T:
        """:func:`~support.waiting.wait_for` that also retries on :class:`PrometheusAPIError` (e.g. a query of
        series not scraped yet) and fails at once if the server died."""
        def checked() -> T:
            if not self.running():
                raise RuntimeError(f"{self.name} exited:\n{self.output()[-3000:]}")
            return predicate()
        return wait_for(checked, timeout, interval, what, retry_on=(OSError, PrometheusAPIError))


# ----------------------------------------------------------------------------------------------- Alertmanager
class AlertmanagerServer(_Server):
    """A real Alertmanager on 127.0.0.1:<free port> (clustering off), with config and data in ``workdir``.

    Args:
        workdir: folder for ``alertmanager.yml``, ``data/`` and ``alertmanager.log`` (created).
        config: a dict (dumped as YAML) or YAML text, e.g. :func:`alertmanager_config`.
        port, binary, extra_args: as for :class:`PrometheusServer`.
    """

    name = "alertmanager"

    def __init__(self, workdir: Path, config: Mapping[str, Any] | str, *, port: int | None = None,
                 binary: str | None = None, extra_args: Sequence[str] = ()) -> None:
        super().__init__(workdir, port)
        self.binary = binary or require_binary(*ALERTMANAGER_BINARIES)
        self.extra_args = list(extra_args)
        self.config_path = _write_config(self.workdir / "alertmanager.yml", config)

    def start(self, timeout: float = 30.0) -> AlertmanagerServer:
        """Start and wait until ``/-/ready`` answers 200."""
        self._start([
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address={self.address}",
            "--cluster.listen-address=",
            *self.extra_args,
        ], timeout)
        return self

    def alerts(self, alertname: str | None = None) -> list[dict[str, Any]]:
        """Alerts Alertmanager holds (``/api/v2/alerts``), optionally only ``alertname``."""
        body = self._get("/api/v2/alerts").body
        alerts = json.loads(body)
        return [a for a in alerts if alertname is None or a["labels"].get("alertname") == alertname]


# ----------------------------------------------------------------------------------------------- webhook
class WebhookReceiver:
    """In-process HTTP server on 127.0.0.1 recording every JSON document POSTed to it (Alertmanager webhooks).

    ``url`` is what to put in a ``webhook_configs`` entry; ``payloads`` is the list of received documents (in
    order); ``alerts()`` flattens their alerts. Thread-safe; runs in a daemon thread until ``stop()``.
    """

    def __init__(self, path: str = "/alerts") -> None:
        self.path = path
        self.payloads: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"invalid": body.decode(errors="replace")}
                with receiver._lock:
                    receiver.payloads.append(payload)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{self.path}"

    def start(self) -> WebhookReceiver:
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every payload so far, each with the payload's ``receiver`` added."""
        with self._lock:
            payloads = list(self.payloads)
        return [dict(alert, receiver=p.get("receiver")) for p in payloads for alert in p.get("alerts", [])]

    def wait_for_alert(self, alertname: str, status: str = "firing", timeout: float = 60.0,
                       **labels: str) -> dict[str, Any]:
        """The first received alert named ``alertname`` with ``status`` and ``labels``; ``TimeoutError`` if none."""
        def found() -> dict[str, Any] | None:
            for alert in self.alerts():
                alert_labels = alert.get("labels", {})
                if (alert_labels.get("alertname") == alertname and alert.get("status") == status
                        and all(alert_labels.get(k) == v for k, v in labels.items())):
                    return alert
            return None
        return wait_for(found, timeout, interval=0.2, what=f"webhook with {status} {alertname} {labels or ''}")

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

# ----------------------------------------------------------------------------------------------- Pushgateway

class PushgatewayServer(_Server):
    """A Pushgateway on 127.0.0.1:<port> with ``--persistence.file`` in ``workdir``::

        with PushgatewayServer(tmp_path / "pgw") as gateway:
            ...  # push to gateway.url
            samples = gateway.samples()              # Samples of everything it holds
            samples.sum("locust_requests_total", job="locust")

    Started on a free port (or a given one, e.g. to bring a gateway up late), in its own process group, waited
    for with a timeout, stopped for sure. A missing binary skips the test (fails under ``CI``).

    With ``web_config`` (an exporter-toolkit web config file) it serves HTTPS and/or basic auth; then give
    ``ca_file`` (to trust its certificate) and ``auth`` (user, password) for our own requests to it.
    """

    name = "pushgateway"

    def __init__(self, workdir: Path, port: int | None = None, *, web_config: Path | None = None,
                 ca_file: Path | None = None, auth: tuple[str, str] | None = None) -> None:
        super().__init__(workdir, port)
        self.binary = require_binary(*PUSHGATEWAY_BINARIES)
        self.web_config = web_config
        self.context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
        self.auth = auth

    @property
    def url(self) -> str:
        return f"{'https' if self.context else 'http'}://{self.address}"

    def start(self, timeout: float = 30.0) -> PushgatewayServer:
        """Start and wait until ``/-/ready`` answers 200."""
        args = [
            self.binary,
            f"--web.listen-address={self.address}",
            f"--persistence.file={self.workdir / 'pushgateway.data'}",
            "--persistence.interval=1s",
            "--log.level=info",
        ]
        if self.web_config is not None:
            args.append(f"--web.config.file={self.web_config}")
        self._start(args, timeout)
        return self

    def _get(self, path: str, timeout: float = 10.0) -> Answer:
        return self.get(path, timeout=timeout)

    def get(self, path: str, auth: tuple[str, str] | None | str = "default", timeout: float = 10) -> Answer:
        """GET ``path`` (status, body bytes, headers); ``auth``: (user, password), None for none, or (the default)
        the server's own credentials."""
        auth = self.auth if auth == "default" else auth
        headers = {"Authorization": basic_auth(*auth)} if auth else {}
        return http_request(f"{self.url}{path}", headers=headers, timeout=timeout, context=self.context)

    def status(self, path: str, auth: tuple[str, str] | None | str = "default") -> int:
        """HTTP status of GET ``path``."""
        return self.get(path, auth)[0]

    def text(self) -> str:
        """The Pushgateway's own ``/metrics`` (every pushed series, with its grouping labels)."""
        status, body, _ = self.get("/metrics")
        assert status == 200, (status, body[:300])
        return body.decode()

    def samples(self) -> Samples:
        """:meth:`text` parsed."""
        return Samples(self.text())


# ----------------------------------------------------------------------------------------------- promtool
def promtool_check_metrics(text: str) -> subprocess.CompletedProcess:
    """Run ``promtool check metrics`` on exposition ``text``."""
    promtool = require_binary(*PROMTOOL_BINARIES)
    return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
