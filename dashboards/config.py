"""Where the Superset installation lives and which settings drive it.

Why a module of its own: `make dashboards`, the docker-compose service and the
end-to-end test all need the same answers (which venv, which metadata folder,
which secret key, which warehouse URI for the read-only BI role), and they
must come from the project's one settings surface, never from ad-hoc
`os.environ` reads.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from spm_warehouse import settings

PACKAGE_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PACKAGE_DIR / "assets"
RUNTIME_DIR = PACKAGE_DIR / "runtime"
LOCK_FILE = PACKAGE_DIR / "requirements-superset.lock"
DEFAULT_BRANCH_ACCESS_FILE = PACKAGE_DIR / "branch_access.yaml"

# The warehouse role Superset reads as (created by the publish step).
BI_ROLE = "bi_reader"

# The SPM_SUPERSET_* settings and their defaults are declared in spm_warehouse/settings.py.


@dataclass(frozen=True)
class SupersetPaths:
    """The folders and files of one Superset installation."""

    venv: Path
    home: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    @property
    def superset(self) -> Path:
        return self.bin / "superset"

    @property
    def gunicorn(self) -> Path:
        return self.bin / "gunicorn"

    @property
    def metadata_db(self) -> Path:
        return self.home / "superset.db"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"


def paths() -> SupersetPaths:
    venv = settings.get("SPM_SUPERSET_VENV") or str(settings.PROJECT_ROOT / ".venv-superset")
    home = settings.get("SPM_SUPERSET_HOME") or str(settings.local_dir() / "superset")
    return SupersetPaths(venv=Path(venv).resolve(), home=Path(home).resolve())


def branch_access_file() -> Path:
    return Path(settings.get("SPM_SUPERSET_BRANCH_ACCESS") or DEFAULT_BRANCH_ACCESS_FILE)


def _persistent_secret(setting: str, path: Path, nbytes: int) -> str:
    """A setting's value, else a random value generated once into `path` (0600).

    Why persisted: Superset encrypts the stored warehouse password with its
    secret key, and the admin must be able to log in again tomorrow.
    """
    value = settings.get(setting)
    if value:
        return value
    if path.is_file():
        stored = path.read_text().strip()
        if stored:
            return stored
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def secret_key(home: Path) -> str:
    return _persistent_secret("SPM_SUPERSET_SECRET_KEY", home / "secret_key", 42)


def admin_password(home: Path) -> str:
    return _persistent_secret("SPM_SUPERSET_ADMIN_PASSWORD", home / "admin_password", 12)


def admin_user() -> str:
    return settings.get("SPM_SUPERSET_ADMIN_USER")


def warehouse_placeholders() -> dict[str, str]:
    """Values for the ${...} placeholders of assets/databases/*.yaml.

    Host, port and database come from the warehouse connection; the login is
    always the read-only BI role, whose password is SPM_BI_READER_PASSWORD.
    """
    info = settings.connection("warehouse")
    password = settings.get("SPM_BI_READER_PASSWORD")
    userinfo = quote(BI_ROLE, safe="") + (":" + quote(password, safe="") if password else "")
    return {
        "WAREHOUSE_USERINFO": userinfo,
        "WAREHOUSE_HOST": info.host or "127.0.0.1",
        "WAREHOUSE_PORT": str(info.port or 5432),
        "WAREHOUSE_DB": quote(info.schema, safe=""),
    }


def superset_env(p: SupersetPaths) -> dict[str, str]:
    """Environment variables the Superset processes need (merged over os.environ by the caller).

    Superset itself reads SUPERSET_HOME (metadata folder), SUPERSET_SECRET_KEY
    and SUPERSET_CONFIG_PATH; our config file reads nothing else.
    """
    return {
        "SUPERSET_HOME": str(p.home),
        "SUPERSET_SECRET_KEY": secret_key(p.home),
        "SUPERSET_CONFIG_PATH": str(RUNTIME_DIR / "superset_config.py"),
        "FLASK_APP": "superset",
        "PYTHONUNBUFFERED": "1",
    }
