"""The deployed Airflow: `make airflow` (LocalExecutor, then CeleryExecutor with Redis) runs a night.

`make test-deployment` runs this file (CI runs it after `make test`); `make test` does not collect it
(the file name does not start with test_): starting two real stacks takes minutes.

Real processes, no Docker: the stack is started exactly as a data engineer
starts it (`make airflow`, in its own session like a terminal), a run is
triggered through the Airflow 3 REST API, and Ctrl-C (SIGINT to the
foreground process group) must stop every component it started.

Each stack works on copies of the shared demo build's databases
(CREATE DATABASE ... TEMPLATE), so the other end-to-end tests see the build
as they expect it and the stacks cannot see each other's runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import psycopg
import pytest
from databases import clone_database, conn_uri_for, drop_database
from project import ROOT

pytestmark = pytest.mark.e2e

RUN_TIMEOUT_S = 900


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def api(base: str, method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


def wait_for_api(base: str, proc: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"make airflow exited with {proc.returncode}"
        try:
            health = api(base, "GET", "/api/v2/monitor/health")
            if health.get("metadatabase", {}).get("status") == "healthy":
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            pass
        time.sleep(1)
    raise AssertionError(f"the API server did not answer on {base} within {seconds}s")


def descendants(pid: int) -> set[int]:
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def processes_of(local_dir: Path) -> list[psutil.Process]:
    """Every process still running with this stack's SPM_LOCAL_DIR (re-parented orphans included)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("SPM_LOCAL_DIR") == str(local_dir):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


class Stack:
    """`make airflow` on copies of the demo build, driven like an operator would."""

    def __init__(self, demo, pg_server_url: str, tmp: Path, executor: str, extra_env: dict | None = None):
        self.label = f"spm_test_stack_{executor}_{uuid.uuid4().hex[:6]}"
        self.server = pg_server_url
        self.urls = {
            "wh": clone_database(pg_server_url, demo.warehouse_url, f"{self.label}_wh"),
            "mis": clone_database(pg_server_url, demo.mis_url, f"{self.label}_mis"),
            "airflow": clone_database(pg_server_url, demo.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace(
                "postgresql+psycopg2://", "postgresql://"), f"{self.label}_airflow"),
        }
        self.local = tmp / "local"
        self.local.mkdir()
        (self.local / "survey_drop").mkdir()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.password = "pw-" + uuid.uuid4().hex[:12]
        self.executor = executor
        env = {k: v for k, v in demo.env.items()
               if not k.startswith(("AIRFLOW_HOME", "AIRFLOW__CORE__", "AIRFLOW__API", "SPM_"))
               or k in ("AIRFLOW__CORE__FERNET_KEY",)}
        # PATH without the venv: `make airflow` must not need it activated.
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                      if not p.startswith(str(ROOT / ".venv")))
        env.pop("VIRTUAL_ENV", None)
        env.update({
            "SPM_LOCAL_DIR": str(self.local),
            "SPM_SURVEY_DROP_DIR": str(self.local / "survey_drop"),
            "AIRFLOW_CONN_WAREHOUSE": conn_uri_for(self.urls["wh"]),
            "AIRFLOW_CONN_MIS_FINERACT": conn_uri_for(self.urls["mis"]),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://" + self.urls["airflow"].split("://", 1)[1],
            "SPM_AIRFLOW_PORT": str(self.port),
            "SPM_AIRFLOW_ADMIN_PASSWORD": self.password,
            **(extra_env or {}),
        })
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.seen: set[int] = set()
        self.output = tmp / "make_airflow.log"

    def start(self) -> None:
        with open(self.output, "wb") as out:
            # A session of its own, like a terminal: SIGINT to the group is Ctrl-C.
            self.proc = subprocess.Popen(["make", "airflow", f"EXECUTOR={self.executor}"], cwd=ROOT, env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        wait_for_api(self.base, self.proc)
        self.seen |= descendants(self.proc.pid)

    def token(self) -> str:
        return api(self.base, "POST", "/auth/token", {"username": "admin", "password": self.password})["access_token"]

    def publications(self) -> list[tuple]:
        with psycopg.connect(self.urls["wh"]) as conn:
            return conn.execute("SELECT build_id, as_of_date FROM meta.publications ORDER BY published_at").fetchall()

    def run_night(self, as_of: str) -> dict:
        token = self.token()
        deadline = time.monotonic() + 240
        while True:  # the dag-processor must have parsed the DAG first
            try:
                api(self.base, "GET", "/api/v2/dags/spm_nightly", token=token)
                break
            except urllib.error.HTTPError as exc:
                assert exc.code == 404 and time.monotonic() < deadline, exc
                time.sleep(2)
        run = api(self.base, "POST", "/api/v2/dags/spm_nightly/dagRuns",
                  {"logical_date": None, "conf": {"as_of_date": as_of}}, token=token)
        api(self.base, "PATCH", "/api/v2/dags/spm_nightly", {"is_paused": False}, token=token)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            self.seen |= descendants(self.proc.pid)
            assert self.proc.poll() is None, f"make airflow exited: {self.output.read_text()[-3000:]}"
            state = api(self.base, "GET", f"/api/v2/dags/spm_nightly/dagRuns/{run['dag_run_id']}", token=token)
            if state["state"] in ("success", "failed"):
                tis = api(self.base, "GET", f"/api/v2/dags/spm_nightly/dagRuns/{run['dag_run_id']}/taskInstances",
                          token=token)
                state["tasks"] = {t["task_id"]: t["state"] for t in tis["task_instances"]}
                return state
            time.sleep(3)
        raise AssertionError(f"the run did not finish within {RUN_TIMEOUT_S}s")

    def interrupt(self) -> int:
        """Ctrl-C, then every process the stack started must be gone."""
        self.seen |= descendants(self.proc.pid)
        os.killpg(self.proc.pid, signal.SIGINT)
        rc = self.proc.wait(timeout=120)
        time.sleep(1)
        alive = [pid for pid in self.seen if psutil.pid_exists(pid)
                 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        left = processes_of(self.local)
        assert not alive and not left, (alive, [" ".join(p.cmdline()) for p in left])
        return rc

    def cleanup(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        for p in processes_of(self.local):
            p.kill()
        for name in self.urls:
            drop_database(self.server, f"{self.label}_{name}")


def run_and_check(stack: Stack, as_of) -> None:
    before = stack.publications()
    stack.start()
    result = stack.run_night(as_of.isoformat())
    assert result["state"] == "success", (result, stack.output.read_text()[-3000:])
    assert result["tasks"].get("publish.publish_analytics") == "success", result["tasks"]
    after = stack.publications()
    assert len(after) == len(before) + 1 and after[-1][1] == as_of, (before, after)
    out = stack.output.read_text()
    assert f"http://127.0.0.1:{stack.port}" in out and "from SPM_AIRFLOW_ADMIN_PASSWORD" in out, out
    rc = stack.interrupt()
    assert rc in (0, 2, 130, -signal.SIGINT), rc  # make dies of the SIGINT once its recipe has stopped
    assert "stopped: api-server, scheduler, dag-processor, triggerer" in stack.output.read_text()


@pytest.fixture
def redis_url(tmp_path):
    """The machine's Redis on 6379, else a throwaway redis-server, else None."""
    if redis_answers(6379):
        yield "redis://127.0.0.1:6379/0"
        return
    binary = shutil.which("redis-server")
    if not binary:
        yield None
        return
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if redis_answers(port):
                break
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_make_airflow_runs_a_triggered_night_on_the_local_and_the_celery_executor(
        demo_warehouse, pg_server_url, tmp_path, redis_url):
    """Both stacks at once, each on its own copies: most of a deployed night is waiting, so they share the time."""
    assert demo_warehouse.returncode == 0, demo_warehouse.log[-3000:]
    stacks = []
    try:
        (tmp_path / "local_stack").mkdir()
        stacks.append(Stack(demo_warehouse, pg_server_url, tmp_path / "local_stack", "local"))
        if redis_url:
            (tmp_path / "celery_stack").mkdir()
            # A queue of its own: another test run on the same Redis must not take this run's tasks.
            queue = f"spm_test_{uuid.uuid4().hex[:8]}"
            stacks.append(Stack(demo_warehouse, pg_server_url, tmp_path / "celery_stack", "celery",
                                {"SPM_CELERY_BROKER_URL": redis_url, "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue}))
        with ThreadPoolExecutor(max_workers=len(stacks)) as pool:
            for future in [pool.submit(run_and_check, stack, demo_warehouse.as_of) for stack in stacks]:
                future.result()
        if redis_url:
            assert "celery-worker (pid" in stacks[1].output.read_text()
    finally:
        for stack in stacks:
            stack.cleanup()
    if not redis_url:
        pytest.skip("LocalExecutor passed; CeleryExecutor not tried: no Redis on 127.0.0.1:6379 "
                    "and no redis-server binary to start one")


def test_celery_without_a_broker_says_so_and_starts_nothing(demo_warehouse, tmp_path):
    port = free_port()  # nothing listens there
    env = {**demo_warehouse.env, "SPM_LOCAL_DIR": str(tmp_path), "SPM_CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0"}
    proc = subprocess.run(["make", "airflow", "EXECUTOR=celery"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: the Celery broker redis://127.0.0.1:{port}/0 does not answer (Connection refused); "
                      "start Redis or set SPM_CELERY_BROKER_URL"], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "airflow" / "logs" / "components").exists()
