"""The deployed Airflow: `make airflow` runs its components, docker-compose runs the same.

Why not `airflow standalone`: it finds its components as `airflow` on PATH
(the venv is not activated for the README's commands), it cannot run the
CeleryExecutor, and it generates the admin password where no operator
configured it. Here every component is started as

    python -m spm_warehouse.cli airflow-component <component>

which prepares the environment (the same defaults as every other command,
the admin login, the execution API address) and then becomes the `airflow`
command itself. docker-compose's services run exactly these commands, so a
laptop and a deployment start Airflow the same way.

`run_stack` supervises them in the foreground: each component in its own
session and its own log file, all of them stopped (process group by process
group, SIGTERM then SIGKILL) on Ctrl-C, SIGTERM, or when one of them dies.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from spm_warehouse import settings
from spm_warehouse.environment import venv_bin

EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}
# The components every deployment runs; celery adds a worker.
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
CELERY_WORKER = "celery-worker"
STOP_GRACE_S = 30.0


class StackError(RuntimeError):
    """A start-up problem whose one-line message is all the operator needs."""


@dataclass(frozen=True)
class StackSettings:
    """What a deployment is, read once from the settings."""

    executor: str  # "local" or "celery"
    host: str
    port: int
    broker_url: str
    worker_concurrency: int

    @property
    def base_url(self) -> str:
        """Where a browser on this machine (and a task process) reaches the API server."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    def components(self) -> tuple[str, ...]:
        return COMPONENTS + ((CELERY_WORKER,) if self.executor == "celery" else ())


def stack_settings(executor: str | None = None) -> StackSettings:
    name = (executor or settings.get("SPM_AIRFLOW_EXECUTOR")).strip().lower()
    if name not in EXECUTORS:
        raise StackError(f"SPM_AIRFLOW_EXECUTOR / EXECUTOR must be one of {', '.join(EXECUTORS)}, got {name!r}")
    return StackSettings(
        executor=name,
        host=settings.get("SPM_AIRFLOW_HOST"),
        port=settings.get_int("SPM_AIRFLOW_PORT"),
        broker_url=settings.get("SPM_CELERY_BROKER_URL"),
        worker_concurrency=settings.get_int("SPM_CELERY_WORKER_CONCURRENCY"),
    )


# --------------------------------------------------------------------------- the admin login


def admin_password_file() -> Path:
    return settings.local_dir() / "airflow_admin_password"


def admin_password() -> tuple[str, bool]:
    """(password, generated): SPM_AIRFLOW_ADMIN_PASSWORD, else one generated once into .local/."""
    configured = settings.get("SPM_AIRFLOW_ADMIN_PASSWORD")
    if configured:
        return configured, False
    path = admin_password_file()
    if path.exists() and path.read_text().strip():
        return path.read_text().strip(), False
    password = secrets.token_urlsafe(18)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(password + "\n")
    path.chmod(0o600)
    return password, True


def write_auth_manager_passwords(user: str, password: str) -> Path:
    """The simple auth manager's password file, rewritten from the settings at every start.

    Airflow would otherwise generate a password into AIRFLOW_HOME on first
    start and keep it there: in a container outside any volume, a new one at
    every re-create, and never the one the operator set in `.env`.
    """
    path = Path(os.environ["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({user: password}))
    tmp.chmod(0o600)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- environment


def component_env(stack: StackSettings) -> dict[str, str]:
    """Airflow settings for the deployed components.

    The executor, the API address and the broker follow the SPM_AIRFLOW_* /
    SPM_CELERY_* settings (so `make airflow EXECUTOR=celery` means what it
    says); for everything else what the operator set in AIRFLOW__* wins.
    """
    user = settings.get("SPM_AIRFLOW_ADMIN_USER")
    forced = {
        "AIRFLOW__CORE__EXECUTOR": EXECUTORS[stack.executor],
        "AIRFLOW__API__HOST": stack.host,
        "AIRFLOW__API__PORT": str(stack.port),
    }
    defaults = {
        # Task processes report to the API server: it must be the one we start.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{stack.base_url}/execution/",
        "AIRFLOW__API__BASE_URL": stack.base_url,
        "AIRFLOW__API__WORKERS": "2",  # 2 cores: Airflow's default of 4 only costs memory here
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE":
            str(Path(os.environ["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json"),
    }
    if stack.executor == "celery":
        forced["AIRFLOW__CELERY__BROKER_URL"] = stack.broker_url
        defaults.update({
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(stack.worker_concurrency),
            # Longer than a task's execution_timeout (dag_defaults), so the broker
            # never hands a running night to a second worker.
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
        })
    env = dict(forced)
    env.update({key: value for key, value in defaults.items() if not os.environ.get(key)})
    # Anything that starts `airflow` by name (Celery, the triggerer's children) finds ours.
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        env["PATH"] = bindir + (os.pathsep + path if path else "")
    return env


def check_metadata_database() -> None:
    url = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    if url.startswith("sqlite"):
        raise StackError(
            "the deployed Airflow needs a PostgreSQL metadata database: set AIRFLOW__DATABASE__SQL_ALCHEMY_CONN "
            "(SQLite is only used for `airflow dags test` when you bring your own warehouse)")


def check_broker(url: str, timeout_s: float = 3.0) -> None:
    """The Celery broker answers a Redis PING, or StackError naming the URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return  # another broker: Celery itself will say whether it answers
    shown = f"{parts.scheme}://{parts.hostname or '127.0.0.1'}:{parts.port or 6379}{parts.path}"
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=timeout_s) as sock:
            if parts.password:
                auth = [parts.username, parts.password] if parts.username else [parts.password]
                sock.sendall(_resp(["AUTH", *auth]))
                sock.recv(256)
            sock.sendall(_resp(["PING"]))
            answer = sock.recv(256)
    except OSError as exc:
        raise StackError(f"the Celery broker {shown} does not answer ({exc.strerror or exc}); "
                         "start Redis or set SPM_CELERY_BROKER_URL") from None
    if not answer.startswith(b"+PONG"):
        raise StackError(f"the Celery broker {shown} did not answer PING: {answer[:80]!r}")


def _resp(words: list[str]) -> bytes:
    out = f"*{len(words)}\r\n"
    for word in words:
        out += f"${len(word.encode())}\r\n{word}\r\n"
    return out.encode()


# --------------------------------------------------------------------------- one component


def component_argv(component: str) -> list[str]:
    """The command line a service runs: the same for `make airflow` and docker-compose."""
    return [sys.executable, "-m", "spm_warehouse.cli", "airflow-component", component]


def airflow_argv(component: str, stack: StackSettings) -> list[str]:
    """What `airflow-component` becomes."""
    airflow = venv_bin("airflow")
    if component == CELERY_WORKER:
        return [airflow, "celery", "worker", "--concurrency", str(stack.worker_concurrency)]
    if component not in COMPONENTS:
        raise StackError(f"unknown Airflow component {component!r}; one of {', '.join(COMPONENTS + (CELERY_WORKER,))}")
    return [airflow, component]


def exec_component(component: str, executor: str | None = None) -> None:
    """Prepare the environment and become `airflow <component>` (never returns)."""
    stack = stack_settings(executor)
    os.environ.update(component_env(stack))
    argv = airflow_argv(component, stack)
    if component == "api-server":
        password, _ = admin_password()
        write_auth_manager_passwords(settings.get("SPM_AIRFLOW_ADMIN_USER"), password)
    sys.stdout.flush()
    os.execv(argv[0], argv)


# --------------------------------------------------------------------------- the stack


@dataclass
class Running:
    component: str
    proc: subprocess.Popen
    log_path: Path


def run_stack(stack: StackSettings, out=sys.stdout) -> int:
    """Start every component, wait until interrupted or one dies, stop them all."""
    check_metadata_database()
    if stack.executor == "celery":
        check_broker(stack.broker_url)
    os.environ.update(component_env(stack))
    user = settings.get("SPM_AIRFLOW_ADMIN_USER")
    password, generated = admin_password()
    log_dir = Path(os.environ["AIRFLOW_HOME"]) / "logs" / "components"
    log_dir.mkdir(parents=True, exist_ok=True)

    stopping = {"signal": None}

    def on_signal(signum, _frame):
        stopping["signal"] = signum

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    running: list[Running] = []
    try:
        for component in stack.components():
            log_path = log_dir / f"{component}.log"
            with open(log_path, "ab") as log_file:
                # Own session: a Ctrl-C reaches only us, and we stop each group in order.
                proc = subprocess.Popen(component_argv(component), stdout=log_file, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        cwd=settings.PROJECT_ROOT)
            running.append(Running(component, proc, log_path))
        print(f"Airflow ({EXECUTORS[stack.executor]}): {stack.base_url}", file=out, flush=True)
        print(f"  login:   user {user}, password "
              + (f"{password}  (generated once into {admin_password_file()})" if generated
                 else "from SPM_AIRFLOW_ADMIN_PASSWORD" if settings.get("SPM_AIRFLOW_ADMIN_PASSWORD")
                 else f"in {admin_password_file()}"), file=out, flush=True)
        print(f"  logs:    {log_dir}/<component>.log, task logs under {Path(os.environ['AIRFLOW_HOME']) / 'logs'}",
              file=out, flush=True)
        print("  started: " + ", ".join(f"{r.component} (pid {r.proc.pid})" for r in running), file=out, flush=True)
        print("  Ctrl-C stops every component.", file=out, flush=True)
        while stopping["signal"] is None:
            dead = [r for r in running if r.proc.poll() is not None]
            if dead:
                r = dead[0]
                tail = r.log_path.read_text(errors="replace").strip().splitlines()[-15:]
                print(f"error: Airflow {r.component} exited with code {r.proc.returncode}; stopping the others. "
                      f"Its log ({r.log_path}) ends:", file=sys.stderr)
                print("\n".join("  " + line for line in tail), file=sys.stderr, flush=True)
                return 1
            time.sleep(0.5)
        print(f"stopping Airflow ({signal.Signals(stopping['signal']).name})", file=out, flush=True)
        return 0
    finally:
        stop_all(running)
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        if running:
            print("stopped: " + ", ".join(r.component for r in running), file=out, flush=True)


def stop_all(running: list[Running], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM every component's process group, then SIGKILL what is left after the grace period."""
    for r in running:
        _signal_group(r.proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for r in running:
        try:
            r.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    # Children of a component (task processes, gunicorn/uvicorn workers) live in its group.
    for r in running:
        _signal_group(r.proc, signal.SIGKILL)
        try:
            r.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
