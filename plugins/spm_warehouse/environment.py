"""Prepare the process environment for Airflow, dbt and our own code.

Why: `make demo`, `make run`, `make airflow` and the tests must work on a
fresh machine with nothing configured, and must respect whatever the
operator did configure. This module decides, once, for every command:

- the warehouse and demo MIS connections: `AIRFLOW_CONN_WAREHOUSE` and
  `AIRFLOW_CONN_MIS_FINERACT` when set; otherwise databases in the embedded
  PostgreSQL cluster under `.local/pg`, started on demand;
- Airflow's home, DAG and plugin folders, metadata database (the embedded
  cluster when we run it, else SQLite in AIRFLOW_HOME), examples off and
  parallelism sized for a small machine;
- the per-installation secrets (Airflow's Fernet key and JWT secret, the
  account-number pseudonym key, the embedded cluster's superuser and
  bi_reader passwords), generated once into `.local/secrets.env` (0600),
  never committed.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg import sql

from spm_warehouse import secrets_file, settings
from spm_warehouse.embedded_postgres import EmbeddedPostgres

log = logging.getLogger(__name__)


def embedded_cluster() -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.local_dir() / "pg")


def ensure_database(server_url: str, dbname: str) -> None:
    """CREATE DATABASE unless it exists (server_url: any db on that server)."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            log.info("created database %s", dbname)


def _secrets_file() -> Path:
    return settings.local_dir() / "secrets.env"


# Generated once into secrets.env and exported to every command (Airflow's and the pseudonym key).
EXPORTED_SECRETS = ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "SPM_PSEUDONYM_KEY")
# bi_reader's generated password: exported only when the warehouse is the embedded cluster (on an
# operator's warehouse an empty SPM_BI_READER_PASSWORD leaves a DBA's password alone).
BI_READER_SECRET = "SPM_BI_READER_PASSWORD"


def _valid_secret(key: str, value: str) -> bool:
    # HMAC-SHA512 wants a JWT key of at least 64 bytes (a shorter one from an older version is replaced).
    if key == "AIRFLOW__API_AUTH__JWT_SECRET":
        return len(value) >= 64
    return bool(value)


def local_secrets() -> dict[str, str]:
    """Fernet key, JWT secret and pseudonym key of this installation, made once (secrets.env, 0600)."""
    values = secrets_file.ensure(_secrets_file(), {
        "AIRFLOW__CORE__FERNET_KEY": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "AIRFLOW__API_AUTH__JWT_SECRET": lambda: secrets.token_urlsafe(64),
        "SPM_PSEUDONYM_KEY": lambda: secrets.token_hex(32),
        BI_READER_SECRET: lambda: secrets.token_urlsafe(24),
    }, valid=_valid_secret)
    return {k: values[k] for k in EXPORTED_SECRETS}


def bi_reader_password() -> str:
    """bi_reader's generated password (secrets.env)."""
    local_secrets()
    return secrets_file.read(_secrets_file())[BI_READER_SECRET]


def configure(start_embedded: bool = True) -> dict[str, str]:
    """Fill os.environ with every default the commands need; return what was set.

    Values already present in the environment always win.
    """
    root = settings.PROJECT_ROOT
    local = settings.local_dir()
    local.mkdir(parents=True, exist_ok=True)
    defaults: dict[str, str] = {}

    need_embedded = not os.environ.get("AIRFLOW_CONN_WAREHOUSE") or not os.environ.get("AIRFLOW_CONN_MIS_FINERACT")
    embedded_url = None
    if need_embedded and start_embedded:
        cluster = embedded_cluster()
        embedded_url = cluster.start()
        wh_db = settings.get("SPM_WAREHOUSE_DB")
        mis_db = settings.get("SPM_DEMO_MIS_DB")
        ensure_database(embedded_url, wh_db)
        ensure_database(embedded_url, mis_db)
        auth = cluster.userinfo()
        defaults["AIRFLOW_CONN_WAREHOUSE"] = f"postgres://{auth}@127.0.0.1:{cluster.port}/{wh_db}"
        defaults["AIRFLOW_CONN_MIS_FINERACT"] = f"postgres://{auth}@127.0.0.1:{cluster.port}/{mis_db}"
        if not os.environ.get("AIRFLOW_CONN_WAREHOUSE"):
            # the embedded warehouse: bi_reader logs in with the password generated for it
            defaults[BI_READER_SECRET] = bi_reader_password()
        if not os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
            ensure_database(embedded_url, "airflow_meta")
            defaults["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = (
                f"postgresql+psycopg2://{auth}@127.0.0.1:{cluster.port}/airflow_meta"
            )

    airflow_home = local / "airflow"
    defaults.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "2",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "60",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "GX_ANALYTICS_ENABLED": "False",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            "DO_NOT_TRACK": "1",
            "SPM_LOCAL_DIR": str(local),
        }
    )
    # Without the embedded cluster (operator-configured servers), Airflow's own
    # metadata falls back to SQLite in AIRFLOW_HOME: fine for `dags test`.
    defaults.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{airflow_home / 'airflow.db'}")
    defaults.update(local_secrets())
    pythonpath = os.environ.get("PYTHONPATH", "")
    plugins = str(root / "plugins")
    if plugins not in pythonpath.split(os.pathsep):
        defaults["PYTHONPATH"] = plugins + (os.pathsep + pythonpath if pythonpath else "")

    applied = {}
    for key, value in defaults.items():
        if key == "PYTHONPATH" or not os.environ.get(key):
            os.environ[key] = value
            applied[key] = value
    airflow_home.mkdir(parents=True, exist_ok=True)
    return applied


def venv_bin(name: str) -> str:
    """A console script of the running interpreter's environment."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def migrate_airflow_db() -> None:
    """`airflow db migrate` once per metadata DB and Airflow version (it is slow)."""
    import airflow  # only its version; importing Airflow takes seconds that the other commands need not pay

    stamp = Path(os.environ["AIRFLOW_HOME"]) / ".migrated"
    key = f"{airflow.__version__} {os.environ.get('AIRFLOW__DATABASE__SQL_ALCHEMY_CONN', '')}"
    if stamp.exists() and stamp.read_text() == key:
        return
    log.info("migrating the Airflow metadata database")
    proc = subprocess.run([venv_bin("airflow"), "db", "migrate"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("airflow db migrate failed:\n" + proc.stdout[-3000:] + proc.stderr[-3000:])
    stamp.write_text(key)
