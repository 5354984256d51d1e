"""docker-compose.yml: parsed (no Docker engine here) and checked for sense."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from project import ROOT

from spm_warehouse import airflow_stack

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
    assert env["SPM_AIRFLOW_EXECUTOR"] == "celery"
    assert env["SPM_CELERY_BROKER_URL"].startswith("redis://redis:")
    assert "${AIRFLOW__CORE__FERNET_KEY}" in env["AIRFLOW__CORE__FERNET_KEY"]
    assert "${AIRFLOW__API_AUTH__JWT_SECRET}" in env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert env["SPM_AIRFLOW_ADMIN_PASSWORD"] == "${AIRFLOW_ADMIN_PASSWORD}"


def test_every_change_me_of_env_example_is_used():
    """A value the user is told to set must reach a service."""
    text = (ROOT / "docker-compose.yml").read_text()
    to_set = [line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
              if not line.lstrip().startswith("#") and "change-me" in line]
    assert len(to_set) >= 8, to_set
    unused = [key for key in to_set if not re.search(r"\$\{" + key + r"(:-[^}]*)?\}", text)]
    assert not unused, f"set in .env.example but used by no service: {unused}"


def test_the_airflow_services_run_the_commands_of_make_airflow():

    commands = {name: svc["command"] for name, svc in COMPOSE["services"].items()
                if name.startswith("airflow-") and name != "airflow-init"}
    components = {cmd[-1] for cmd in commands.values()}
    assert components == set(airflow_stack.COMPONENTS) | {airflow_stack.CELERY_WORKER}, commands
    for name, cmd in commands.items():
        assert cmd == ["python", *airflow_stack.component_argv(cmd[-1])[1:]], (name, cmd)


def test_no_literal_secrets_and_every_reference_documented():
    text = (ROOT / "docker-compose.yml").read_text()
    refs = set(re.findall(r"\$\{([A-Z0-9_]+)(?::-[^}]*)?\}", text))
    # optional ones are documented as commented examples ("# KEY=...")
    documented = ENV_EXAMPLE | set(re.findall(r"^#\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    missing = refs - documented
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

    stack = airflow_stack.StackSettings("celery", "0.0.0.0", 8080, "redis://redis:6379/0", 2)
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT / "plugins"), str(ROOT)))}
    probes: dict[tuple[str, ...], str] = {}  # the --help command line -> the first service that runs it
    for name, words in _commands():
        if words[0] == "airflow":
            sub = [w for w in words[1:] if not w.startswith("-")]
            probes.setdefault((str(bindir / "airflow"), *sub, "--help"), name)
        elif words[:4] == ["python", "-m", "spm_warehouse.cli", "airflow-component"]:
            # what the component becomes: the airflow command itself
            argv = airflow_stack.airflow_argv(words[4], stack)
            probes.setdefault((*argv[:1], *[w for w in argv[1:] if not w.startswith("-") and not w.isdigit()],
                               "--help"), name)
        elif words[:3] in (["python", "-m", "spm_warehouse.cli"], ["python", "-m", "tools.demo"]):
            probes.setdefault((sys.executable, "-m", words[2], words[3], "--help"), name)
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
