"""docker-compose.yml (and the GPU override) parsed and checked, since no Docker engine runs
here: services, images, ports, health checks and the conditions that wait on them, named
volumes, every FINSENT_* name against core.settings.Settings (the values validate too), no
password with a default, the commands against the `finsent` CLI, and the Prometheus and
Grafana provisioning files against the services they point at.

    .venv/bin/python -m pytest tests/dashboards/test_compose.py -q
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

import pytest
import typer
import yaml

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
GPU = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())
SERVICES = COMPOSE["services"]
FINSENT = ("migrate", "worker", "api", "simulate")  # services running the finsent image
LONG_RUNNING = ("kafka", "postgres", "worker", "api", "prometheus", "grafana")
VAR = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
SECRET = re.compile(r"PASSWORD|SECRET|(?:^|_)TOKEN$")
SETTINGS_ENV = {f"FINSENT_{name.upper()}" for name in Settings.model_fields} - {"FINSENT_DATABASE_URL"}
# `finsent api` is mounted on finsent/cli.py by the lead; until then the command it will run must exist.
PENDING_COMMANDS = {"api": ("api.cli", "serve")}


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} → default, ${VAR:?err} → a placeholder (as if the user set it)."""
    return VAR.sub(lambda m: m.group(3) if m.group(2) in (":-", "-") else "set-by-user", str(value)).replace("$$", "$")


def env(service: dict) -> dict[str, str]:
    e = service.get("environment", {})
    return dict(e) if isinstance(e, dict) else dict(x.split("=", 1) for x in e)


def test_services_and_images():
    assert set(SERVICES) == {"kafka", "postgres", "migrate", "grafana-db", "worker", "api", "simulate",
                             "prometheus", "grafana"}
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert env(SERVICES["kafka"])["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert SERVICES["postgres"]["image"] == "postgres:16"
    assert SERVICES["grafana"]["image"].startswith("grafana/grafana:")
    assert SERVICES["prometheus"]["image"].startswith("prom/prometheus:")
    assert all(SERVICES[s]["build"]["context"] == "." for s in FINSENT)
    assert SERVICES["simulate"]["profiles"] == ["demo"]


def test_ports():
    published = {s: {p.split(":")[-1] for p in svc.get("ports", [])} for s, svc in SERVICES.items()}
    assert published["worker"] == {"6066"} and published["api"] == {"8000"}
    assert published["grafana"] == {"3000"} and published["prometheus"] == {"9090"}
    assert env(SERVICES["worker"])["FINSENT_WEB_HOST"] == "0.0.0.0"
    assert env(SERVICES["api"])["FINSENT_API_HOST"] == "0.0.0.0"
    assert str(env(SERVICES["worker"])["FINSENT_WEB_PORT"]) == "6066"
    assert str(env(SERVICES["api"])["FINSENT_API_PORT"]) == "8000"


def test_health_checks_and_dependencies():
    for name in LONG_RUNNING:
        assert SERVICES[name]["healthcheck"]["test"], name
    for name, svc in SERVICES.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in SERVICES, (name, dep)
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dep], (name, dep)
            else:
                assert cond["condition"] == "service_completed_successfully" and "restart" not in SERVICES[dep]
    assert SERVICES["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert SERVICES["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_named_volumes_declared_and_used():
    used = {v.split(":")[0] for svc in SERVICES.values() for v in svc.get("volumes", [])
            if not v.startswith((".", "/"))}
    assert used == set(COMPOSE["volumes"])
    assert {"pg-data", "kafka-data", "grafana-data", "prometheus-data"} <= used


@pytest.mark.parametrize("name", sorted(set(SERVICES) | {"gpu:worker"}))
def test_finsent_environment_names_are_settings(name):
    svc = GPU["services"]["worker"] if name == "gpu:worker" else SERVICES[name]
    names = {k for k in env(svc) if k.startswith("FINSENT_")}
    assert names <= SETTINGS_ENV, f"not in Settings: {sorted(names - SETTINGS_ENV)}"


@pytest.mark.parametrize("name", FINSENT)
def test_settings_validate_from_compose_environment(name, monkeypatch):
    for key in [k for k in os.environ if k.startswith("FINSENT_") or k == "DATABASE_URL"]:
        monkeypatch.delenv(key)
    values = {k: interpolate(v) for k, v in env(SERVICES[name]).items()}
    if name == "worker":
        values |= {k: interpolate(v) for k, v in env(GPU["services"]["worker"]).items()}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    s = Settings(_env_file=None)
    assert s.database_url.startswith("postgresql+asyncpg://postgres:") and "@postgres:5432/finsent" in s.database_url
    assert s.kafka_bootstrap == "kafka:9092"


def all_env_values(doc: dict):
    for svc in doc["services"].values():
        yield from env(svc).items()


def test_no_secret_baked_in():
    """Passwords come from the user's environment with ${VAR:?…}: no default, no literal."""
    for doc in (COMPOSE, GPU):
        for key, value in all_env_values(doc):
            if SECRET.search(key) or key == "DATABASE_URL":
                refs = [m for m in VAR.finditer(str(value)) if SECRET.search(m.group(1))]
                assert refs and all(m.group(2) == ":?" for m in refs), (key, value)
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith(("ENV", "ARG")):
            names = re.findall(r"(\w+)=", line)
            assert not [n for n in names if SECRET.search(n) or n == "DATABASE_URL"], line


@pytest.mark.parametrize("name", FINSENT)
def test_commands_exist_in_cli(name):
    from finsent.cli import app

    argv = SERVICES[name]["command"]
    assert argv[0] == "finsent"
    commands = typer.main.get_command(app).commands
    if argv[1] not in commands and argv[1] in PENDING_COMMANDS:
        module, attr = PENDING_COMMANDS[argv[1]]
        assert callable(getattr(importlib.import_module(module), attr))
        return
    commands[argv[1]].make_context(argv[1], list(argv[2:]))  # options parse and validate


def test_gpu_override():
    worker = GPU["services"]["worker"]
    e = env(worker)
    assert e["FINSENT_BACKEND"] == "torch" and e["FINSENT_DEVICE"] == "cuda"
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "train" in worker["build"]["args"]["EXTRAS"]  # torch comes with the train extra


def test_prometheus_scrapes_worker_and_api():
    conf = yaml.safe_load((ROOT / "dashboards" / "prometheus.yml").read_text())
    targets = {t for job in conf["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {"worker:6066", "api:8000"}
    assert all(job["metrics_path"] == "/metrics" for job in conf["scrape_configs"])
    mounts = SERVICES["prometheus"]["volumes"]
    assert "./dashboards/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


def test_grafana_provisioning_mounts():
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in SERVICES["grafana"]["volumes"] if v.startswith("."))
    provider = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/finsent.yml").read_text())
    assert mounts["./dashboards/generated"] == provider["providers"][0]["options"]["path"]
    assert mounts["./dashboards/provisioning/datasources"] == "/etc/grafana/provisioning/datasources"
    lines = (ROOT / "dashboards/provisioning/datasources/finsent.yml").read_text().splitlines()
    datasources = "\n".join(x for x in lines if not x.lstrip().startswith("#"))
    needed = set(re.findall(r"\$\{(\w+)\}", datasources))
    assert needed <= set(env(SERVICES["grafana"])), needed - set(env(SERVICES["grafana"]))
    assert SERVICES["grafana"]["depends_on"]["grafana-db"]["condition"] == "service_completed_successfully"
