"""A real Prometheus Pushgateway for tests (Debian package ``prometheus-pushgateway``), on 127.0.0.1.

    with PushgatewayServer(tmp_path / "pgw") as gateway:
        ...  # push to gateway.url
        samples = gateway.samples()              # support.Samples of everything it holds
        samples.sum("locust_requests_total", job="locust")

Started on a free port (or a given one, e.g. to bring a gateway up late), in its own process group, waited
for with a timeout, stopped for sure. A missing binary skips the test (fails under ``CI``).
"""

from __future__ import annotations

import base64
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_server import _Process, require_binary, wait_for
from support import Samples

PUSHGATEWAY_BINARIES = ("prometheus-pushgateway", "pushgateway")


class PushgatewayServer(_Process):
    """A Pushgateway on 127.0.0.1:<port> with ``--persistence.file`` in ``workdir``.

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
        self._spawn(args)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"pushgateway exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            return self.status("/-/ready") == 200

        try:
            wait_for(ready, timeout, interval=0.1, what=f"pushgateway on {self.address}")
        except TimeoutError as exc:
            self.stop()
            raise TimeoutError(f"{exc}\n{self.log()[-3000:]}") from None
        return self

    def get(self, path: str, auth: tuple[str, str] | None | str = "default", timeout: float = 10) -> tuple[int, bytes]:
        """GET ``path``; ``auth``: (user, password), None for none, or the server's own credentials."""
        auth = self.auth if auth == "default" else auth
        headers = {}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request = urllib.request.Request(f"{self.url}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.context) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def status(self, path: str, auth: tuple[str, str] | None | str = "default") -> int:
        """HTTP status of GET ``path``."""
        return self.get(path, auth)[0]

    def text(self) -> str:
        """The Pushgateway's own ``/metrics`` (every pushed series, with its grouping labels)."""
        status, body = self.get("/metrics")
        assert status == 200, (status, body[:300])
        return body.decode()

    def samples(self) -> Samples:
        """:meth:`text` parsed."""
        return Samples(self.text())
