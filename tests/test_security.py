"""Endpoint security: bind address, TLS (certificates made in the test), basic auth with bcrypt hashes, the
exporter-toolkit web config file, and /metrics on the web UI behind --web-login; a real Prometheus scrapes
both through TLS and basic auth."""

from __future__ import annotations

import base64
import http.client
import re
import ssl
import time
import urllib.error
from pathlib import Path

import psutil
import pytest
from support import (
    LOCUSTFILES,
    PrometheusServer,
    Samples,
    bcrypt_hash,
    free_port,
    http_request,
    locust,
    make_pki,
    prometheus_config,
    wait_for,
    wait_for_http,
    write_web_config,
)
from support import basic_auth as basic

from locust_metrics.options import OptionError, Settings, flag
from locust_metrics.security import BasicAuth, load_web_config, web_config_from_mapping

FAST = str(LOCUSTFILES / "fast_events.py")


def get(url: str, authorization: str | None = None, context: ssl.SSLContext | None = None) -> tuple[int, str, dict]:
    """GET ``url``: (status, body, headers); raises OSError/ssl errors when no HTTP answer comes."""
    status, body, headers = http_request(url, headers={"Authorization": authorization} if authorization else {},
                                         context=context)
    return status, body.decode(), headers


def wait_until_serving(url: str, context: ssl.SSLContext, authorization: str, timeout: float = 30) -> None:
    wait_for(lambda: get(url, authorization, context)[0] == 200, timeout, 0.2, what=f"{url} to serve metrics")


# ---------------------------------------------------------------------------------------------- web config
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_a_web_config_file_resolves_relative_paths_and_loads_its_certificate(pki, tmp_path: Path) -> None:
    path = write_web_config(pki.ca_cert.parent / "web.yml", pki, users={"prom": "pw"}, relative=True,
                            min_version="TLS13")
    assert "cert_file: server.crt" in path.read_text()  # relative to the file's folder, as exporter-toolkit does
    config = load_web_config(path)
    assert config.tls and config.cert_file == str(pki.server_cert) and config.min_version == "TLS13"
    assert config.ssl_context().minimum_version == ssl.TLSVersion.TLSv1_3
    assert set(config.basic_auth_users) == {"prom"}
    assert Settings.from_kwargs(web_config=str(path)).web_config == config
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    assert not load_web_config(empty).tls and load_web_config(empty).basic_auth() is None


@pytest.mark.parametrize("content,message", [
    ({"http_server_config": {"http2": True}}, "unsupported key(s) http_server_config"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", "cipher_suites": []}},
     "tls_server_config.cipher_suites"),
    ({"tls_server_config": {"cert_file": "server.crt"}}, "needs both cert_file and key_file"),
    ({"tls_server_config": {"cert_file": "missing.crt", "key_file": "server.key"}}, "no such file"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "client.key"}}, "cannot load cert_file"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                            "client_auth_type": "RequireAndVerifyClientCert"}}, "needs client_ca_file"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                            "client_auth_type": "RequireAnyClientCert", "client_ca_file": "ca.crt"}}, "is not one of"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", "min_version": "SSL3"}}, "is not one of"),
    ({"basic_auth_users": {"prom": "clear-text-password"}}, "not a bcrypt hash"),
    ({"basic_auth_users": ["prom"]}, "mapping of user"),
    (["not", "a", "mapping"], "expected a mapping"),
])
def test_bad_web_configs_are_rejected_naming_the_file_and_the_problem(pki, content, message: str) -> None:
    with pytest.raises(OptionError) as error:
        web_config_from_mapping(content, str(pki.ca_cert.parent / "web.yml"), flag("web_config"))
    assert "--metrics-web-config" in str(error.value) and message in str(error.value), str(error.value)


def test_unreadable_or_invalid_yaml_files_are_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("basic_auth_users: [unclosed\n")
    for path, message in ((bad, "not valid YAML"), (tmp_path / "missing.yml", "cannot read it")):
        with pytest.raises(OptionError, match=message):
            load_web_config(path)


def test_basic_auth_accepts_only_the_right_credentials_and_caches_verdicts() -> None:
    auth = BasicAuth({"prom": bcrypt_hash("s3cret"), "ci": bcrypt_hash("other")})
    assert auth.check(basic("prom", "s3cret")) and auth.check(basic("ci", "other"))
    assert auth.check("basic " + base64.b64encode(b"prom:s3cret").decode())  # the scheme is case-insensitive
    for header in (None, "", "Basic", basic("prom", "wrong"), basic("nobody", "s3cret"), basic("ci", "s3cret"),
                   "Bearer s3cret", "Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode(),
                   "Basic " + base64.b64encode(b"\xff\xfe:s3cret").decode(), 12345):
        assert not auth.check(header), header
    calls = []
    auth._bcrypt = lambda password, hashed: calls.append(1) or False  # type: ignore[method-assign]
    assert auth.check(basic("prom", "s3cret")) and not auth.check(basic("prom", "wrong"))
    assert calls == [], "verdicts are cached: Prometheus scraping every second costs one bcrypt check"


def test_web_ui_metrics_with_web_login_needs_a_session_or_basic_auth(pki, tmp_path: Path, caplog) -> None:
    """In process, with Flask's test client: Locust's WebUI with --web-login, our /metrics route on it."""
    from flask_login import UserMixin, login_user
    from locust import User, task
    from locust.env import Environment

    import locust_metrics

    class Nobody(User):
        @task
        def nothing(self):
            pass

    class Person(UserMixin):
        def __init__(self, user_id: str) -> None:
            self.id = user_id

    def web_ui_client(web_config: Path | None):
        env = Environment(user_classes=[Nobody])
        web_ui = env.create_web_ui("127.0.0.1", free_port(), web_login=True, delayed_start=True)  # never started
        env.create_local_runner()
        web_ui.app.config["SECRET_KEY"] = "test"
        web_ui.login_manager.user_loader(Person)

        @web_ui.app.route("/test-login")
        def test_login():
            login_user(Person("alice"))
            return "ok"

        locust_metrics.install(env, port=0, web_config=str(web_config) if web_config else None)
        return web_ui.app.test_client()

    users = write_web_config(tmp_path / "users.yml", None, users={"prom": "s3cret"})
    client = web_ui_client(users)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics").headers["WWW-Authenticate"].startswith('Basic realm="locust-metrics"')
    assert client.get("/metrics", headers={"Authorization": basic("prom", "nope")}).status_code == 401
    answer = client.get("/metrics", headers={"Authorization": basic("prom", "s3cret")})
    assert answer.status_code == 200 and "locust_metrics_info" in answer.get_data(as_text=True)
    client.get("/test-login")
    assert client.get("/metrics").status_code == 200, "a browser logged in to the web UI sees /metrics"

    with caplog.at_level("WARNING", logger="locust_metrics"):
        client = web_ui_client(None)  # --web-login and no basic_auth_users: scrapers always get 401
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": basic("prom", "s3cret")}).status_code == 401
    assert any("--web-login is on and no basic_auth_users" in r.getMessage() for r in caplog.records)
    client.get("/test-login")
    assert client.get("/metrics").status_code == 200


# ---------------------------------------------------------------------------------------------- real processes
def test_tls_and_basic_auth_on_our_endpoint_bound_to_localhost(pki, workdir: Path) -> None:
    config = write_web_config(workdir / "web.yml", pki, users={"prom": "s3cret"})
    port = free_port()
    args = ["-f", FAST, "--headless", "-u", "2", "-r", "2", "-t", "30s", "--metrics-port", str(port),
            "--metrics-host", "127.0.0.1", "--metrics-web-config", str(config), "--metrics-final-scrape-timeout", "0"]
    url = f"https://127.0.0.1:{port}/metrics"
    context = pki.client_context()
    with locust(args, workdir) as process:
        wait_until_serving(url, context, basic("prom", "s3cret"))
        proc = psutil.Process(process.proc.pid)
        connections = getattr(proc, "net_connections", None) or proc.connections  # psutil < 6: connections
        listening = {c.laddr for c in connections("tcp") if c.status == "LISTEN"}
        assert ("127.0.0.1", port) in listening and ("0.0.0.0", port) not in listening, listening

        status, body, headers = get(url, None, context)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic") and "locust" not in body
        for wrong in (basic("prom", "S3cret"), basic("admin", "s3cret"), "Bearer s3cret"):
            assert get(url, wrong, context)[0] == 401, wrong
        # (the endpoint serves from Locust's init, before the first user ran: wait for requests)
        wait_for(lambda: Samples(get(url, basic("prom", "s3cret"), context)[1]).sum("locust_requests_total") > 0,
                 30, 0.2, what="requests in an authorized scrape")

        with pytest.raises(urllib.error.URLError) as error:  # a client that does not trust our CA
            get(url, basic("prom", "s3cret"), ssl.create_default_context())
        assert isinstance(error.value.reason, ssl.SSLCertVerificationError), error.value
        try:  # plain HTTP on the TLS port: no metrics
            status = get(f"http://127.0.0.1:{port}/metrics", basic("prom", "s3cret"))[0]
        except (OSError, http.client.HTTPException):
            status = None
        assert status != 200
        time.sleep(0.5)
        assert process.interrupt() == 0, process.output()[-3000:]  # Ctrl-C
        output = process.output()
    assert "serving Prometheus metrics on https://127.0.0.1:" in output
    # failed handshakes (an untrusting client, plain HTTP) are not printed as tracebacks into the test's log.
    # The one traceback allowed is Locust's own when Ctrl-C lands while a user's greenlet runs (a race:
    # gevent raises KeyboardInterrupt there and prints "failed with KeyboardInterrupt")
    raised = re.findall(r"^Traceback \(most recent call last\):\n(?:[ \t].*\n)*(\S.*)$", output, re.MULTILINE)
    assert all(line == "KeyboardInterrupt" for line in raised), raised
    assert "SSL" not in output, output[-3000:]


def test_mutual_tls_needs_a_client_certificate_signed_by_the_ca(pki, workdir: Path) -> None:
    config = write_web_config(workdir / "web.yml", pki, client_auth_type="RequireAndVerifyClientCert",
                              client_ca_file=str(pki.ca_cert))
    port = free_port()
    args = ["-f", FAST, "--headless", "-u", "1", "-r", "1", "-t", "30s", "--metrics-port", str(port),
            "--metrics-host", "127.0.0.1", "--metrics-web-config", str(config), "--metrics-final-scrape-timeout", "0"]
    url = f"https://127.0.0.1:{port}/metrics"
    with locust(args, workdir) as process:
        wait_until_serving(url, pki.client_context(with_client_cert=True), "")
        with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
            get(url, None, pki.client_context(with_client_cert=False))
        assert process.interrupt() == 0, process.output()[-3000:]  # Ctrl-C


def test_prometheus_scrapes_our_tls_endpoint_and_the_web_ui_behind_web_login(pki, workdir: Path) -> None:
    config = write_web_config(workdir / "web.yml", pki, users={"prom": "s3cret"})
    port, web_port = free_port(), free_port()
    auth = {"username": "prom", "password": "s3cret"}
    jobs = [
        {"job_name": "tls", "scheme": "https", "tls_config": {"ca_file": str(pki.ca_cert)}, "basic_auth": auth,
         "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
        {"job_name": "web-ui", "basic_auth": auth, "static_configs": [{"targets": [f"127.0.0.1:{web_port}"]}]},
        {"job_name": "web-ui-no-auth", "static_configs": [{"targets": [f"127.0.0.1:{web_port}"]}]},
    ]
    prometheus_yml = prometheus_config([], extra_scrape_configs=jobs)
    prometheus_yml["scrape_configs"] = jobs
    args = ["-f", FAST, "--web-host", "127.0.0.1", "--web-port", str(web_port), "--web-login", "--autostart",
            "-u", "2", "-r", "2", "-t", "60s", "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
            "--metrics-web-config", str(config), "--metrics-final-scrape-timeout", "0"]
    with PrometheusServer(workdir / "prometheus", prometheus_yml) as prometheus, locust(args, workdir) as process:
        wait_for_http(f"http://127.0.0.1:{web_port}/metrics", timeout=30)

        def scraped() -> bool:
            up = {r["metric"]["job"]: r["value"][1] for r in prometheus.query("up")}
            data = {r["metric"]["job"] for r in prometheus.query("locust_requests_total > 0")}
            return up == {"tls": "1", "web-ui": "1", "web-ui-no-auth": "0"} and data == {"tls", "web-ui"}

        prometheus.wait_for(scraped, timeout=30)
        assert get(f"http://127.0.0.1:{web_port}/metrics")[0] == 401
        assert get(f"http://127.0.0.1:{web_port}/metrics", basic("prom", "s3cret"))[0] == 200
        assert process.interrupt() == 0, process.output()[-3000:]  # Ctrl-C
