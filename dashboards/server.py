"""Run Superset: its CLI set-up steps, our Superset-side set-up script, and gunicorn.

Why here: `make dashboards` (foreground server), the docker-compose service
and the end-to-end test (background server on a free port, always stopped)
share these steps, so they cannot drift apart.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dashboards.config import RUNTIME_DIR, SupersetPaths, superset_env
from dashboards.install import lock_digest
from spm_warehouse import settings

INIT_STAMP = ".spm_initialized"


class SupersetError(RuntimeError):
    """A Superset step failed; the message carries the useful part of its output."""


def process_env(p: SupersetPaths) -> dict[str, str]:
    env = dict(os.environ)
    env.update(superset_env(p))
    # Superset's processes never see the project's plugin path: they run
    # stand-alone files from runtime/ and import only Superset.
    env.pop("PYTHONPATH", None)
    return env


def run_superset(p: SupersetPaths, *args: str, timeout: int = 900) -> str:
    """Run `superset <args>` in its venv; return stdout, raise SupersetError on failure."""
    proc = subprocess.run([str(p.superset), *args], env=process_env(p), capture_output=True, text=True,
                          timeout=timeout, cwd=p.home)
    if proc.returncode != 0:
        raise SupersetError(f"superset {' '.join(args)} failed ({proc.returncode}):\n"
                            + (proc.stdout[-2000:] + proc.stderr[-4000:]).strip())
    return proc.stdout


def migrate_and_init(p: SupersetPaths) -> bool:
    """`superset db upgrade` + `superset init`, once per metadata DB and installed lock.

    True when they ran. `init` (roles and permissions) is slow, hence the stamp.
    """
    p.home.mkdir(parents=True, exist_ok=True)
    stamp = p.home / INIT_STAMP
    key = lock_digest()
    if p.metadata_db.is_file() and stamp.is_file() and stamp.read_text().strip() == key:
        return False
    print("Preparing Superset's metadata database (db upgrade, init)...", flush=True)
    run_superset(p, "db", "upgrade")
    run_superset(p, "init")
    stamp.write_text(key + "\n")
    return True


def apply_setup(p: SupersetPaths, spec: dict, timeout: int = 900) -> dict:
    """Run runtime/apply_setup.py in Superset's interpreter with `spec` on stdin."""
    proc = subprocess.run([str(p.python), str(RUNTIME_DIR / "apply_setup.py")], input=json.dumps(spec),
                          env=process_env(p), capture_output=True, text=True, timeout=timeout, cwd=p.home)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("SPM_RESULT "):
            if proc.returncode == 0:
                return json.loads(line[len("SPM_RESULT "):])
            break
    raise SupersetError(f"Superset set-up failed ({proc.returncode}):\n"
                        + (proc.stdout[-2000:] + proc.stderr[-5000:]).strip())


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def gunicorn_argv(p: SupersetPaths, host: str, port: int, workers: int | None = None) -> list[str]:
    workers = workers or settings.get_int("SPM_SUPERSET_WORKERS")
    return [
        str(p.gunicorn), "--bind", f"{host}:{port}", "--workers", str(workers),
        "--worker-class", "gthread", "--threads", "4", "--timeout", "120",
        "--limit-request-line", "0", "--limit-request-field_size", "0",
        "--access-logfile", "-",  # one line per request, next to Superset's own log
        "superset.app:create_app()",
    ]


def wait_healthy(url: str, proc: subprocess.Popen, log_path: Path, seconds: float = 300.0) -> None:
    """Poll <url>/health until it answers OK; fail early if the server died."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SupersetError(f"Superset exited ({proc.returncode}) while starting; log {log_path}:\n"
                                + _tail(log_path))
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    raise SupersetError(f"Superset did not answer {url}/health within {seconds:.0f}s; log {log_path}:\n"
                        + _tail(log_path))


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def stop(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """Stop the gunicorn we started (its own process group), politely then firmly."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        proc.wait(timeout=10)


@contextmanager
def running(p: SupersetPaths, host: str = "127.0.0.1", port: int | None = None,
            log_path: Path | None = None, workers: int | None = None) -> Iterator[str]:
    """Start gunicorn in the background, wait for /health, yield the base URL, always stop it."""
    port = port or free_port(host)
    log_path = log_path or p.log_dir / "gunicorn.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(gunicorn_argv(p, host, port, workers), env=process_env(p), cwd=p.home,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{host}:{port}"
    try:
        wait_healthy(url, proc, log_path)
        yield url
    finally:
        stop(proc)


def serve_foreground(p: SupersetPaths, host: str, port: int) -> None:
    """Replace this process with gunicorn (Ctrl-C stops Superset)."""
    argv = gunicorn_argv(p, host, port)
    os.chdir(p.home)
    os.execve(argv[0], argv, process_env(p))
