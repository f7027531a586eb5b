"""docker-compose.yml and Dockerfile, checked without Docker.

* the Compose file validates against the Compose specification's JSON schema (tests/data/compose-spec.json,
  provenance in tests/data/README.md);
* every file or folder it mounts exists, with the files the services read from it;
* pulled images and the Dockerfile's base image are pinned to versions;
* the services are wired to each other as the configs they mount expect (scrape target, Alertmanager,
  webhook, Grafana datasource and home dashboard, Locust master/worker/target);
* the Dockerfile installs the plugin from the repository with pip and copies what the services run;
* the example webhook receiver (deploy/alertmanager/webhook_logger.py) answers a real Alertmanager payload.

tests/test_stack_e2e.py runs the services' own command lines (via :func:`local_command`) as local processes.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from support import REPO, TESTS, ChildProcess, free_port, http_get, http_request, wait_for

COMPOSE_FILE = REPO / "docker-compose.yml"
SCHEMA = TESTS / "data" / "compose-spec.json"


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def flag(command: list[str], name: str) -> str | None:
    """Value of ``--name=value`` or ``--name value`` in a command line."""
    for i, arg in enumerate(command):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(command):
            return command[i + 1]
    return None


def local_command(name: str, replacements: dict[str, str], extra: list[str] = ()) -> list[str]:
    """A service's command line, runnable here from the repository root.

    The image's WORKDIR /app has the repository's layout, so relative paths work as they are. ``locust`` and
    ``python`` become this interpreter; in every argument each key of ``replacements`` (a host name, a port,
    ``--flag=value``) is replaced by its value; ``extra`` is appended.
    """
    command = list(service(name)["command"])
    if command[0] == "locust":
        command[:1] = [sys.executable, "-m", "locust"]
    elif command[0] == "python":
        command[:1] = [sys.executable]
    out = []
    for arg in command:
        for old, new in replacements.items():
            arg = arg.replace(old, new)
        out.append(arg)
    return out + list(extra)


# ----------------------------------------------------------------------------------------------- schema
def test_compose_file_validates_against_the_compose_spec_schema():
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, errors


def test_the_schema_validation_catches_mistakes():
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    broken = compose()
    broken["services"]["grafana"]["volume"] = ["./dashboards:/x"]  # typo of "volumes"
    broken["services"]["worker"]["deploy"]["replicas"] = "two"
    assert len(list(validator.iter_errors(broken))) == 2


def test_the_stack_has_every_service():
    assert set(compose()["services"]) == {
        "demo-target", "locust-master", "worker", "prometheus", "alertmanager", "alert-webhook", "grafana"}


# ----------------------------------------------------------------------------------------------- mounts
def bind_mounts() -> list[tuple[str, Path, str]]:
    mounts = []
    for name, svc in compose()["services"].items():
        for volume in svc.get("volumes", []):
            source, target = volume.split(":")[:2]
            assert source.startswith("./"), f"{name}: {volume}: only bind mounts of repository files"
            mounts.append((name, REPO / source, target))
    return mounts


def test_every_mounted_file_exists():
    mounts = bind_mounts()
    assert mounts
    for name, source, _target in mounts:
        assert source.exists(), f"{name} mounts {source}, which does not exist"
        assert REPO in source.resolve().parents, f"{name} mounts {source}, outside the repository"


def test_mounted_folders_hold_what_the_services_read():
    targets = {(name, target): source for name, source, target in bind_mounts()}
    prometheus = targets[("prometheus", "/etc/prometheus")]
    config = yaml.safe_load((prometheus / "prometheus.yml").read_text())
    assert "--config.file=/etc/prometheus/prometheus.yml" in service("prometheus")["command"]
    for pattern in config["rule_files"]:
        assert not Path(pattern).is_absolute(), "rule files relative to prometheus.yml work in and out of Docker"
        assert list(prometheus.glob(pattern)), f"rule_files {pattern} matches nothing"
    alertmanager = targets[("alertmanager", "/etc/alertmanager/alertmanager.yml")]
    assert alertmanager.is_file()
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in service("alertmanager")["command"]
    provisioning = targets[("grafana", "/etc/grafana/provisioning")]
    assert list((provisioning / "datasources").glob("*.yml")) and list((provisioning / "dashboards").glob("*.yml"))
    dashboards_target = next(t for (n, t), s in targets.items() if n == "grafana" and s == REPO / "dashboards")
    provider = yaml.safe_load((provisioning / "dashboards" / "locust-metrics.yml").read_text())
    assert [p["options"]["path"] for p in provider["providers"]] == [dashboards_target]
    home = service("grafana")["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dashboards_target + "/") and (REPO / "dashboards" / Path(home).name).is_file()


# ----------------------------------------------------------------------------------------------- images
def test_pulled_images_are_pinned():
    for name, svc in compose()["services"].items():
        image = svc.get("image")
        assert image, f"{name}: no image"
        if "build" in svc:
            continue  # built from the Dockerfile (whose base image is pinned below)
        repository, _, tag = image.rpartition(":")
        assert repository and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned to a version"


def test_prometheus_is_3_9_or_later_and_scrapes_native_and_classic_histograms():
    """Native histograms are stable from Prometheus 3.9 (``scrape_native_histograms``); the stack keeps the classic
    buckets too (``always_scrape_classic_histograms``), which the exact threshold rules read."""
    repository, _, tag = service("prometheus")["image"].rpartition(":")
    assert repository == "prom/prometheus" and tuple(map(int, tag.lstrip("v").split("."))) >= (3, 9, 0), tag
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    locust = next(job for job in config["scrape_configs"] if job["job_name"] == "locust")
    assert locust["scrape_native_histograms"] is True and locust["always_scrape_classic_histograms"] is True
    assert not any(f.startswith("--enable-feature") for f in service("prometheus")["command"]), "a no-op from 3.9"


def test_dockerfile_base_image_is_pinned():
    bases = re.findall(r"^FROM\s+(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    assert bases
    for base in bases:
        assert re.search(r":\d+\.\d+\.\d+", base), f"FROM {base} is not pinned to a version"


def test_services_built_from_the_repository_share_one_image():
    built = {name: svc for name, svc in compose()["services"].items() if "build" in svc}
    assert set(built) == {"demo-target", "locust-master", "worker", "alert-webhook"}
    assert len({svc["image"] for svc in built.values()}) == 1
    assert all(svc["build"]["dockerfile"] == "Dockerfile" and svc["build"]["context"] == "." for svc in built.values())


# ----------------------------------------------------------------------------------------------- Dockerfile
def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str) -> bool:
    return any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in dockerignore_patterns())


def test_dockerfile_installs_the_plugin_from_the_repository():
    text = (REPO / "Dockerfile").read_text()
    copies = re.findall(r"^COPY\s+(.+)$", text, re.M)
    sources = [src for line in copies for src in line.split()[:-1]]
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: missing (e.g. pyproject's readme must exist)"
        assert not ignored(source), f"COPY {source}: excluded by .dockerignore"
    assert {"pyproject.toml", "locust_metrics"} <= set(sources)
    assert re.search(r"pip install [^\n]*\s\.(\s|$)", text), "pip install . (the plugin from the repository)"
    readme = re.search(r'readme\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text())
    if readme:
        assert readme.group(1) in sources, "pip install . needs pyproject's readme in the build context"


def test_dockerfile_copies_what_the_services_run():
    text = (REPO / "Dockerfile").read_text()
    copied = [src for line in re.findall(r"^COPY\s+(.+)$", text, re.M) for src in line.split()[:-1]]
    for name, svc in compose()["services"].items():
        if "build" not in svc:
            continue
        for arg in svc["command"]:
            value = arg.split("=", 1)[-1]
            if value.endswith(".py"):
                assert (REPO / value).is_file(), f"{name} runs {value}, which does not exist"
                assert any(value == c or value.startswith(c.rstrip("/") + "/") for c in copied), \
                    f"{name} runs {value}, which the Dockerfile does not copy"


# ----------------------------------------------------------------------------------------------- wiring
def test_services_are_wired_as_the_configs_expect():
    services = compose()["services"]
    master = services["locust-master"]["command"]
    metrics_port = flag(master, "--metrics-port") or "9646"
    assert "--master" in master and "--autostart" in master, "the test starts by itself, web UI kept"
    target = services["demo-target"]["command"]
    assert flag(master, "--host") == f"http://demo-target:{flag(target, '--port')}"
    assert flag(target, "--host") == "0.0.0.0", "reachable from the other containers"
    worker = services["worker"]
    assert "--worker" in worker["command"] and flag(worker["command"], "--master-host") == "locust-master"
    assert "container_name" not in worker and "ports" not in worker, "`--scale worker=N` needs neither"
    assert f"{metrics_port}:{metrics_port}" in services["locust-master"]["ports"]

    prometheus = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    locust_job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "locust")
    assert locust_job["static_configs"][0]["targets"] == [f"locust-master:{metrics_port}"]
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]

    alertmanager = yaml.safe_load((REPO / "deploy/alertmanager/alertmanager.yml").read_text())
    urls = [w["url"] for r in alertmanager["receivers"] for w in r.get("webhook_configs", [])]
    webhook = services["alert-webhook"]["command"]
    assert urls and all(u.startswith(f"http://alert-webhook:{flag(webhook, '--port')}/") for u in urls)

    datasources = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    prometheus_ds = next(d for d in datasources["datasources"] if d["type"] == "prometheus")
    assert prometheus_ds["url"] == "http://prometheus:9090" and "9090:9090" in services["prometheus"]["ports"]
    assert prometheus_ds["jsonData"]["timeInterval"] == prometheus["global"]["scrape_interval"]
    grafana = services["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "true", "the dashboard shows without a login"


def test_locust_service_commands_parse():
    """The master's and worker's command lines are valid Locust options, the plugin's --metrics-* included.

    ``--list`` makes Locust load the locustfile (which registers the plugin's options), parse every option and
    exit after listing the user classes.
    """
    for name in ("locust-master", "worker"):
        command = local_command(name, {}) + ["--list"]
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (name, result.stdout[-1000:], result.stderr[-2000:])
        assert "ReportViewer" in result.stdout
    bad = local_command("locust-master", {"--metrics-port=9646": "--metrics-port=notaport"}) + ["--list"]
    result = subprocess.run(bad, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "--metrics-port" in result.stderr, "a bad value is refused (the check bites)"


# ----------------------------------------------------------------------------------------------- webhook logger
def test_webhook_logger_prints_alertmanager_notifications(tmp_path):
    port = free_port()
    command = local_command("alert-webhook", {"0.0.0.0": "127.0.0.1", "9095": str(port)})
    with ChildProcess(command, REPO, name="webhook", log_dir=tmp_path) as webhook:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/", timeout=1)[0] == 200, 20, what="webhook logger")
        payload = {
            "version": "4", "status": "firing", "receiver": "locust-webhook",
            "alerts": [{
                "status": "firing",
                "labels": {"alertname": "LocustSlowRequests", "severity": "warning", "method": "GET",
                           "name": "/reports/sales", "instance": "locust-master:9646"},
                "annotations": {"summary": "100% of GET /reports/sales requests are slow"},
            }],
        }
        answer = http_request(f"http://127.0.0.1:{port}/alerts", method="POST", data=json.dumps(payload).encode(),
                              headers={"Content-Type": "application/json"})
        assert answer.status == 200
        expected = ("[webhook] FIRING LocustSlowRequests severity=warning GET /reports/sales: "
                    "100% of GET /reports/sales requests are slow")
        wait_for(lambda: expected in webhook.output(), 10, what="the printed alert")
