"""Superset's own virtual environment, and the browser the dashboard test drives.

Why a separate venv: Superset's pins (Flask, SQLAlchemy 1.4, pandas, ...)
conflict with Airflow's, so it lives in <project>/.venv-superset, built from
the committed lock file `requirements-superset.lock`. A stamp file holds the
lock's hash: the venv is rebuilt only when the lock changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from dashboards.config import LOCK_FILE, SupersetPaths

STAMP_NAME = ".spm_lock_sha256"
BROWSER_PACKAGES = ("chromium", "chromium-driver")
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


class InstallError(RuntimeError):
    """An installation problem the user must act on; the message says what to do."""


def lock_digest(lock_file: Path = LOCK_FILE) -> str:
    return hashlib.sha256(lock_file.read_bytes()).hexdigest()


def venv_is_current(p: SupersetPaths, lock_file: Path = LOCK_FILE) -> bool:
    stamp = p.venv / STAMP_NAME
    return p.superset.is_file() and stamp.is_file() and stamp.read_text().strip() == lock_digest(lock_file)


def _uv() -> str | None:
    """uv from the project venv (it is pinned there), else from PATH."""
    here = Path(sys.executable).parent / "uv"
    return str(here) if here.is_file() else shutil.which("uv")


def ensure_venv(p: SupersetPaths, lock_file: Path = LOCK_FILE, python: str | None = None) -> bool:
    """Create or sync the Superset venv from the lock; True when something was installed."""
    if venv_is_current(p, lock_file):
        return False
    python = python or shutil.which("python3.11") or sys.executable
    uv = _uv()
    print(f"Installing Superset into {p.venv} (first time: a few minutes)...", flush=True)
    if uv:
        if not p.python.is_file():
            _run([uv, "venv", "--quiet", "--python", python, str(p.venv)], "creating the Superset venv")
        _run([uv, "pip", "sync", "--quiet", "--python", str(p.python), str(lock_file)], "installing Superset")
    else:
        if not p.python.is_file():
            _run([python, "-m", "venv", str(p.venv)], "creating the Superset venv")
        _run([str(p.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(lock_file)],
             "installing Superset")
    if not p.superset.is_file():
        raise InstallError(f"{p.superset} is missing after installation; see the output above.")
    (p.venv / STAMP_NAME).write_text(lock_digest(lock_file) + "\n")
    return True


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise InstallError(f"{what} failed ({proc.returncode}):\n{(proc.stderr or proc.stdout)[-4000:]}")


def browser_present() -> bool:
    return CHROMIUM.is_file() and CHROMEDRIVER.is_file()


def ensure_browser() -> bool:
    """Install Debian's chromium and chromium-driver when missing; True when installed now.

    Only as root on a Debian-like system with apt-get; otherwise a clear error
    says what to install.
    """
    if browser_present():
        return False
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise InstallError(
            "The dashboard test needs Chromium and its driver at /usr/bin/chromium and /usr/bin/chromedriver. "
            "Install them as root: apt-get update && apt-get install -y " + " ".join(BROWSER_PACKAGES)
        )
    print("Installing chromium and chromium-driver with apt-get...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in ([apt, "update", "-q"], [apt, "install", "-y", "-q", *BROWSER_PACKAGES]):
        proc = subprocess.run(argv, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise InstallError(f"{' '.join(argv)} failed:\n{(proc.stderr or proc.stdout)[-3000:]}")
    if not browser_present():
        raise InstallError("apt-get installed chromium but /usr/bin/chromium or /usr/bin/chromedriver is missing.")
    return True
