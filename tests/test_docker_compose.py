"""docker-compose.yml: parsed (no Docker engine here) and checked for sense."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
ENV_EXAMPLE = {
    line.split("=", 1)[0].strip()
    for line in (ROOT / ".env.example").read_text().splitlines()
    if "=" in line and not line.lstrip().startswith("#")
}


def test_services_present():
    services = set(COMPOSE["services"])
    assert {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
            "airflow-worker", "redis", "metadata-db", "warehouse-db", "mis-db"} <= services


def test_celery_with_redis_and_explicit_secrets():
    env = COMPOSE["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    assert "${AIRFLOW__CORE__FERNET_KEY}" in env["AIRFLOW__CORE__FERNET_KEY"]
    assert "${AIRFLOW__API_AUTH__JWT_SECRET}" in env["AIRFLOW__API_AUTH__JWT_SECRET"]


def test_no_literal_secrets_and_every_reference_documented():
    text = (ROOT / "docker-compose.yml").read_text()
    refs = set(re.findall(r"\$\{([A-Z0-9_]+)(?::-[^}]*)?\}", text))
    missing = refs - ENV_EXAMPLE
    assert not missing, f"variables used but not in .env.example: {missing}"
    assert not re.search(r"PASSWORD:\s*[^$\s{]", text), "a literal password in docker-compose.yml"


def test_volumes_declared():
    declared = set(COMPOSE.get("volumes", {}))
    for name, svc in COMPOSE["services"].items():
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} uses undeclared volume {source}"


def test_depends_on_known_services():
    for name, svc in COMPOSE["services"].items():
        for dep in svc.get("depends_on", {}):
            assert dep in COMPOSE["services"], f"{name} depends on unknown {dep}"


def _commands():
    for name, svc in COMPOSE["services"].items():
        cmd = svc.get("command")
        if cmd is None:
            continue
        text = " ".join(cmd) if isinstance(cmd, list) else cmd
        for part in re.split(r"&&|;", text.replace("bash -c", "")):
            words = part.strip().split()
            if words:
                yield name, words


def test_commands_exist_in_the_project():
    """Each command a service runs is runnable here without Docker.

    Each distinct command's `--help` runs once, two at a time (each one pays
    Airflow's start-up, which dominates this test).
    """
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    probes: dict[tuple[str, ...], str] = {}  # the --help command line -> the first service that runs it
    for name, words in _commands():
        if words[0] == "airflow":
            sub = [w for w in words[1:] if not w.startswith("-")]
            probes.setdefault((str(bindir / "airflow"), *sub, "--help"), name)
        elif words[:3] == ["python", "-m", "spm_warehouse.cli"]:
            probes.setdefault((sys.executable, "-m", "spm_warehouse.cli", words[3], "--help"), name)
        elif words[0] not in ("superset", "gunicorn", "bash"):
            raise AssertionError(f"{name}: no check for the command {words}")

    def run(argv: tuple[str, ...]) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(probes, pool.map(run, probes)))
    for argv, proc in results.items():
        assert proc.returncode == 0, f"{probes[argv]}: {' '.join(argv[-3:-1])} is not a command: {proc.stderr[-500:]}"
    assert len(probes) >= 5, probes


def test_image_builds_from_our_lock_file():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "requirements.lock" in dockerfile
    build = COMPOSE["services"]["airflow-scheduler"].get("build") or COMPOSE["x-airflow-common"]["build"]
    assert build in (".", {"context": "."})
