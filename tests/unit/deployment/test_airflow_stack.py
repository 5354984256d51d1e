"""The pieces of `make airflow` that need no running stack (plugins/spm_warehouse/airflow_stack.py).

The running stack itself is tested in tests/e2e/deployed_airflow_e2e.py (`make test-deployment`).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading

import pytest

from spm_warehouse import airflow_stack, environment

ROOT = airflow_stack.settings.PROJECT_ROOT


def _executor_probe(executor: str) -> subprocess.CompletedProcess:
    """Load the executor class the way the scheduler does, in a fresh process with the lock's packages."""
    code = (
        "from airflow.executors.executor_loader import ExecutorLoader\n"
        "cls, _ = ExecutorLoader.import_default_executor_cls()\n"
        "print(cls.__module__ + '.' + cls.__name__)\n"
    )
    env = {**os.environ, "AIRFLOW__CORE__EXECUTOR": executor, "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW_HOME": os.environ.get("AIRFLOW_HOME", str(ROOT / ".local" / "airflow"))}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("executor", ["CeleryExecutor", "LocalExecutor"])
def test_the_lock_loads_the_executor(executor):
    """celery 5.7 broke the provider's executor at import: a re-lock must not do that silently again."""
    proc = _executor_probe(executor)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].endswith("." + executor), proc.stdout


def test_the_celery_app_of_the_provider_imports_with_its_backend():
    code = ("from airflow.providers.celery.executors import celery_executor_utils as u\n"
            "print(u.app.main, u.app.conf.broker_url)\n")
    env = {**os.environ, "AIRFLOW__CELERY__BROKER_URL": "redis://127.0.0.1:1/0"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "redis://127.0.0.1:1/0" in proc.stdout


@pytest.fixture
def local(tmp_path, monkeypatch):
    monkeypatch.setenv("SPM_LOCAL_DIR", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    for key in ("SPM_AIRFLOW_ADMIN_PASSWORD", "SPM_AIRFLOW_EXECUTOR", "SPM_AIRFLOW_PORT", "AIRFLOW__CORE__EXECUTOR",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "AIRFLOW__API__BASE_URL", "AIRFLOW__CELERY__BROKER_URL"):
        monkeypatch.delenv(key, raising=False)
    return tmp_path


def test_the_admin_password_is_generated_once_and_kept(local):
    first, generated = airflow_stack.admin_password()
    assert generated and len(first) >= 20
    assert (local / "airflow_admin_password").stat().st_mode & 0o777 == 0o600
    again, generated_again = airflow_stack.admin_password()
    assert (again, generated_again) == (first, False)


def test_the_configured_password_replaces_whatever_the_file_held(local, monkeypatch):
    """docker-compose: a re-created api-server container logs in with the password of .env."""
    path = airflow_stack.write_auth_manager_passwords("admin", "old-one")
    monkeypatch.setenv("SPM_AIRFLOW_ADMIN_PASSWORD", "from-dot-env")
    password, generated = airflow_stack.admin_password()
    airflow_stack.write_auth_manager_passwords("admin", password)
    assert not generated and json.loads(path.read_text()) == {"admin": "from-dot-env"}
    assert path.stat().st_mode & 0o777 == 0o600


def test_the_executor_follows_the_setting_and_the_api_address_follows_the_port(local, monkeypatch):
    monkeypatch.setenv("SPM_AIRFLOW_PORT", "18080")
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")  # set by an older shell: EXECUTOR wins
    env = airflow_stack.component_env(airflow_stack.stack_settings("celery"))
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/0"
    assert os.path.dirname(sys.executable) in env.get("PATH", os.environ["PATH"]).split(os.pathsep)
    local_env = airflow_stack.component_env(airflow_stack.stack_settings("local"))
    assert local_env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor" and "AIRFLOW__CELERY__BROKER_URL" not in local_env


def test_an_unknown_executor_is_one_line(local):
    with pytest.raises(airflow_stack.StackError, match="must be one of local, celery, got 'kubernetes'"):
        airflow_stack.stack_settings("kubernetes")


def test_a_silent_broker_is_named():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(airflow_stack.StackError, match=rf"the Celery broker redis://127.0.0.1:{port}/0 does not answer"):
        airflow_stack.check_broker(f"redis://:secret@127.0.0.1:{port}/0")


def test_a_broker_that_is_not_redis_is_named():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]

        def answer():
            conn, _ = server.accept()
            conn.recv(64)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()

        threading.Thread(target=answer, daemon=True).start()
        with pytest.raises(airflow_stack.StackError, match="did not answer PING"):
            airflow_stack.check_broker(f"redis://127.0.0.1:{port}/0")


def test_the_jwt_secret_is_at_least_64_bytes_and_an_old_short_one_is_replaced(local):
    (local / "secrets.env").write_text("AIRFLOW__API_AUTH__JWT_SECRET=short\nAIRFLOW__CORE__FERNET_KEY=keep-me\n")
    values = environment.local_secrets()
    assert len(values["AIRFLOW__API_AUTH__JWT_SECRET"].encode()) >= 64
    assert values["AIRFLOW__CORE__FERNET_KEY"] == "keep-me"
    assert environment.local_secrets() == values
    assert stat.S_IMODE((local / "secrets.env").stat().st_mode) == 0o600
    assert len(values["SPM_PSEUDONYM_KEY"]) == 64  # 32 random bytes, hex


def test_sqlite_metadata_is_refused_for_the_deployed_stack(monkeypatch):
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "sqlite:////tmp/airflow.db")
    with pytest.raises(airflow_stack.StackError, match="needs a PostgreSQL metadata database"):
        airflow_stack.check_metadata_database()
