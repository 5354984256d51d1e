"""The one place that reads environment variables and Airflow connections.

Why one place: a data engineer must be able to see every setting, its default
and where it comes from without grepping the code base. README's settings
table mirrors `SETTINGS` below.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# name -> (default, meaning). Defaults are safe for a laptop.
SETTINGS: dict[str, tuple[str, str]] = {
    "SPM_LOCAL_DIR": (str(PROJECT_ROOT / ".local"), "project-local state: embedded PostgreSQL, Airflow home, reports"),
    "SPM_REPORTS_DIR": ("", "where run reports, dbt docs and GX Data Docs go (default: <SPM_LOCAL_DIR>/reports)"),
    "SPM_WAREHOUSE_DB": ("spm_warehouse", "database name of the embedded warehouse"),
    "SPM_DEMO_MIS_DB": ("fineract_demo", "database name of the embedded demo Fineract MIS"),
    "SPM_DEMO_CLIENTS": ("300", "number of clients in the demo MIS built by `make demo`"),
    "SPM_DEMO_SEED": ("42", "random seed of the demo data"),
    "SPM_DEMO_AS_OF": ("2024-06-30", "as-of date of the demo run"),
    "SPM_DEMO_SHAPE": ("current", "which Fineract the demo MIS imitates: current, partial (no optional tables), upgraded "
                       "(1.8/1.9 audit columns NULL for older rows), fineract16 (no audit columns), mis_surveys "
                       "(PPI in Fineract's survey module and a client datatable); `make demo SHAPE=...`"),
    "SPM_SURVEY_DROP_DIR": ("", "folder where Kobo/ODK exports are dropped (default: <SPM_LOCAL_DIR>/survey_drop)"),
    "SPM_ANALYTICS_SCHEMA": ("analytics", "published schema that BI reads"),
    "SPM_BUILD_SCHEMA": ("analytics_build", "schema dbt builds the marts into before the gate"),
    "SPM_BI_READER_PASSWORD": ("", "password of the bi_reader role (embedded cluster: generated once into "
                               "<SPM_LOCAL_DIR>/secrets.env; another warehouse: empty leaves the role's password as it is)"),
    "SPM_PG_SUPERUSER_PASSWORD": ("", "password of the embedded cluster's superuser `postgres` (scram-sha-256; "
                                  "generated once into <SPM_LOCAL_DIR>/secrets.env)"),
    "SPM_PSEUDONYM_KEY": ("", "secret key of the account-number pseudonyms published in analytics (HMAC-SHA256; "
                          "generated once into <SPM_LOCAL_DIR>/secrets.env; changing it changes every pseudonym)"),
    "SPM_BRANCH_RLS": ("false", "PostgreSQL row-level security for branch-manager roles listed in meta.branch_access (true/false)"),
    "SPM_DBT_THREADS": ("4", "dbt threads (models built at once); 4 keeps 2 cores busy while dbt waits on PostgreSQL"),
    "SPM_EXTRACT_LOOKBACK_MINUTES": ("60", "lookback window of incremental extraction"),
    "SPM_EXTRACT_CHUNK_ROWS": ("50000", "rows per fetch of the server-side cursor"),
    "SPM_SOURCE_STATEMENT_TIMEOUT_S": ("3600", "statement timeout on the source MIS"),
    "SPM_MIS_TIMEZONE": ("UTC", "time zone of the MIS's business days: the as-of date ends at midnight there (dbt's "
                         "knowledge cutoff and the reconciliation use it)"),
    "SPM_MIS_LEGACY_TIMEZONE": ("UTC", "time zone of the DATETIMEs that Fineract 1.4-1.7 writes in its JVM's zone "
                                "(m_loan_transaction.created_date, m_loan_repayment_schedule.created_date/"
                                "lastmodified_date); Fineract's Docker images ran in UTC"),
    "SPM_HASH_BUCKET_KEYS": ("512", "row-hash extraction (tables without an audit column): keys per range whose "
                             "hash sums the source and the warehouse compare before comparing rows"),
    "SPM_NIGHT_LEASE_STALE_MINUTES": ("15", "one night at a time: a night that holds the warehouse but runs no stage and "
                                      "was last seen longer ago than this is taken to be dead and its lease taken over"),
    "SPM_FAULT_POINT": ("", "tests only (make faults): the fault point where a stage kills itself (faults.py)"),
    "SPM_FAULT_ACTION": ("kill", "tests only: kill, or pause at SPM_FAULT_POINT"),
    "SPM_FAULT_PAUSE_S": ("30", "tests only: seconds a paused fault point sleeps"),
    "SPM_RECYCLE_BUILD": ("1", "1 = publish turns the publication before last into the next build schema, so an "
                          "incremental mart kept as a table of the build schema catches up instead of being rebuilt; "
                          "0 = drop it. The history-sized facts (schema history) and intermediate keep their state either way"),
    "SPM_RECONCILE_EVERY_DAYS": ("7", "days between automatic key reconciliations (hard-delete detection) during the nightly extraction; 0 = only on demand"),
    "SPM_ALERT_WEBHOOK_URL": ("", "chat webhook (Slack/Teams/Mattermost compatible JSON) for failure alerts and the "
                              "night's new KPI alerts (kpi_alerts)"),
    "SPM_ALERT_EMAIL": ("", "e-mail address for failure alerts and the night's new KPI alerts (uses Airflow's SMTP settings)"),
    "SPM_MIN_CELL_N": ("10", "kpi_client_outcomes: a row with fewer clients shows no means (is_small_sample); dbt var min_cell_n"),
    "SPM_PG_BINDIR": ("", "PostgreSQL server binaries for the embedded cluster (default: auto-detect)"),
    "SPM_PG_RUN_AS": ("", "user that runs the embedded cluster when invoked as root (default: postgres)"),
    "SPM_TEST_DATABASE_URL": ("", "server the tests use (default: the embedded cluster)"),
    # The deployed Airflow (make airflow; docker-compose runs the same commands), see airflow_stack.py
    "SPM_AIRFLOW_EXECUTOR": ("local", "executor of `make airflow`: local (LocalExecutor) or celery (CeleryExecutor + one worker)"),
    "SPM_AIRFLOW_HOST": ("127.0.0.1", "address the Airflow API server and UI listen on"),
    "SPM_AIRFLOW_PORT": ("8080", "port of the Airflow API server and UI"),
    "SPM_AIRFLOW_ADMIN_USER": ("admin", "Airflow admin user name"),
    "SPM_AIRFLOW_ADMIN_PASSWORD": ("", "Airflow admin password (default: generated once into <SPM_LOCAL_DIR>/airflow_admin_password)"),
    "SPM_CELERY_BROKER_URL": ("redis://127.0.0.1:6379/0", "Celery broker of EXECUTOR=celery"),
    "SPM_CELERY_WORKER_CONCURRENCY": ("2", "task slots of each Celery worker (one night runs at most 2 tasks at once)"),
    # Superset (make dashboards), see dashboards/README.md
    "SPM_SUPERSET_VENV": ("", "virtual environment of Superset (default: <project>/.venv-superset)"),
    "SPM_SUPERSET_HOME": ("", "Superset metadata (SQLite), secret key and logs (default: <SPM_LOCAL_DIR>/superset)"),
    "SPM_SUPERSET_HOST": ("127.0.0.1", "address Superset listens on"),
    "SPM_SUPERSET_PORT": ("8088", "port Superset listens on"),
    "SPM_SUPERSET_SECRET_KEY": ("", "Flask secret key of Superset (default: generated once into <SPM_SUPERSET_HOME>/secret_key)"),
    "SPM_SUPERSET_ADMIN_USER": ("admin", "Superset admin user name"),
    "SPM_SUPERSET_ADMIN_PASSWORD": ("", "Superset admin password (default: generated once into <SPM_SUPERSET_HOME>/admin_password)"),
    "SPM_SUPERSET_BRANCH_ACCESS": ("", "branch-manager roles file (default: dashboards/branch_access.yaml)"),
    "SPM_SUPERSET_WORKERS": ("2", "gunicorn worker processes of Superset"),
    "SPM_REPORTING_CURRENCY": ("", "ISO 4217 code the dashboards show on amounts (default: the one currency_code of "
                               "the loan products in analytics.dim_product, filled in at import time)"),
    "SPM_PUBLICATION_STALE_DAYS": ("3", "data health: a publication whose as-of date is more than this many days "
                                   "old is flagged stale"),
}

# Variables the project itself sets for its child processes (never read from the operator):
# dbt's profile and macros, Great Expectations' substitution variables. Listed here so that
# every SPM_* name in the code base is declared in this one file.
CHILD_PROCESS_VARIABLES: dict[str, str] = {
    "SPM_DBT_HOST": "dbt profile (profiles.yml): the warehouse connection's host",
    "SPM_DBT_PORT": "dbt profile: its port",
    "SPM_DBT_USER": "dbt profile: its login",
    "SPM_DBT_PASSWORD": "dbt profile: its password",
    "SPM_DBT_DBNAME": "dbt profile: its database",
    "SPM_DBT_SCHEMA": "dbt profile: the target schema (models choose their own schemas)",
    "SPM_AS_OF_DATE": "the run's as-of date, read by core_as_of_string() while dbt executes",
    "SPM_DBT_PSEUDONYM_KEY": "SPM_PSEUDONYM_KEY as dbt's account_pseudonym() macro reads it while executing",
    "SPM_RESTRICTED_BUILD_SCHEMA": "dbt: the schema of tonight's restricted marts (real account numbers)",
    "SPM_OUTCOME_FILE": "`make run`: the file a failing stage writes its failure text to (failure_text.py)",
    "SPM_GX_WAREHOUSE_URL": "GX datasource: SQLAlchemy URL of the warehouse",
    "SPM_GX_RESULTS_DIR": "GX: where this run's validation results go",
    "SPM_GX_DOCS_DIR": "GX: where this run's Data Docs go",
}

CONN_IDS = ("warehouse", "mis_fineract", "kobotoolbox")


def get(name: str) -> str:
    """A setting from the environment, else its documented default."""
    if name not in SETTINGS:
        raise KeyError(f"unknown setting {name}; add it to settings.SETTINGS")
    value = os.environ.get(name, "")
    return value if value != "" else SETTINGS[name][0]


def get_int(name: str) -> int:
    raw = get(name)
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"setting {name} must be a whole number, got {raw!r}") from None


def legacy_timezone() -> str:
    """SPM_MIS_LEGACY_TIMEZONE, checked: an IANA zone name (a typo must not shift every legacy timestamp)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = get("SPM_MIS_LEGACY_TIMEZONE").strip() or "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"SPM_MIS_LEGACY_TIMEZONE={name!r} is not a time zone name (e.g. Africa/Nairobi, UTC)") from None
    return name


def local_dir() -> Path:
    return Path(get("SPM_LOCAL_DIR"))


def reports_dir() -> Path:
    return Path(get("SPM_REPORTS_DIR") or local_dir() / "reports")


def survey_drop_dir() -> Path:
    return Path(get("SPM_SURVEY_DROP_DIR") or local_dir() / "survey_drop")


def analytics_schema() -> str:
    return get("SPM_ANALYTICS_SCHEMA")


def build_schema() -> str:
    return get("SPM_BUILD_SCHEMA")


def restricted_schema() -> str:
    """Where the real account numbers are published (with analytics, never granted to bi_reader)."""
    return analytics_schema() + "_restricted"


def restricted_build_schema() -> str:
    """Tonight's restricted marts, before publication."""
    return restricted_schema() + "_build"


def restricted_prev_schema() -> str:
    """The restricted schema of the previous publication (for rollback)."""
    return restricted_schema() + "_prev"


@dataclass(frozen=True)
class ConnInfo:
    """A connection in neutral form, whatever store it came from."""

    conn_id: str
    conn_type: str
    host: str
    port: int | None
    login: str
    password: str
    schema: str  # Airflow's name for the database
    extra: dict

    def sqlalchemy_url(self) -> str:
        """URL for SQLAlchemy: psycopg 3 for PostgreSQL, PyMySQL for MySQL/MariaDB."""
        driver = {
            "postgres": "postgresql+psycopg",
            "postgresql": "postgresql+psycopg",
            "mysql": "mysql+pymysql",
            "mariadb": "mysql+pymysql",
        }.get(self.conn_type)
        if driver is None:
            raise ValueError(f"connection {self.conn_id}: type {self.conn_type!r} is not a database")
        return f"{driver}://{self._netloc()}/{quote(self.schema)}"

    def libpq_url(self) -> str:
        """Plain postgresql:// URL for psycopg and psql."""
        return f"postgresql://{self._netloc()}/{quote(self.schema)}"

    @property
    def dialect(self) -> str:
        return "mysql" if self.conn_type in ("mysql", "mariadb") else "postgresql"

    def _netloc(self) -> str:
        auth = quote(self.login, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        host = self.host or "127.0.0.1"
        port = f":{self.port}" if self.port else ""
        return f"{auth}@{host}{port}" if auth else f"{host}{port}"


def parse_conn_uri(conn_id: str, uri: str) -> ConnInfo:
    """Parse an AIRFLOW_CONN_* value: Airflow URI or JSON form."""
    uri = uri.strip()
    if uri.startswith("{"):
        data = json.loads(uri)
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra else {}
        return ConnInfo(
            conn_id=conn_id,
            conn_type=str(data.get("conn_type", "")).replace("_", "-"),
            host=data.get("host") or "",
            port=int(data["port"]) if data.get("port") else None,
            login=data.get("login") or "",
            password=data.get("password") or "",
            schema=data.get("schema") or "",
            extra=extra,
        )
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+")[0].replace("_", "-")
    if scheme == "postgresql":
        scheme = "postgres"
    extra: dict = {}
    if parts.query:
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "__extra__":
                extra.update(json.loads(value))
            else:
                extra[key] = value
    return ConnInfo(
        conn_id=conn_id,
        conn_type=scheme,
        host=unquote(parts.hostname or ""),
        port=parts.port,
        login=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        schema=unquote(parts.path.lstrip("/")),
        extra=extra,
    )


def env_var_for(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper()


def connection(conn_id: str) -> ConnInfo:
    """A connection from AIRFLOW_CONN_<ID>, else from Airflow's own store.

    The project commands (`make demo`, `make run`, the tests) always export
    the AIRFLOW_CONN_* variables with the embedded defaults, so the Airflow
    lookup only matters when an operator defined the connection in the UI or
    a secrets backend.
    """
    raw = os.environ.get(env_var_for(conn_id))
    if raw:
        return parse_conn_uri(conn_id, raw)
    try:
        # Airflow's connection store, only when no AIRFLOW_CONN_* variable names the connection: importing
        # airflow.sdk costs seconds, which every CLI command would otherwise pay.
        from airflow.sdk import Connection  # type: ignore[attr-defined]

        conn = Connection.get(conn_id)
    except Exception as exc:  # noqa: BLE001 - any lookup failure means "not configured"
        raise LookupError(
            f"connection {conn_id!r} is not configured: set {env_var_for(conn_id)} "
            f"(e.g. postgresql://user:password@host:5432/dbname) or define it in Airflow"
        ) from exc
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
    return ConnInfo(
        conn_id=conn_id,
        conn_type=(conn.conn_type or "").replace("_", "-"),
        host=conn.host or "",
        port=conn.port,
        login=conn.login or "",
        password=conn.password or "",
        schema=conn.schema or "",
        extra=extra or {},
    )


def conn_uri(info: ConnInfo) -> str:
    """The AIRFLOW_CONN_* URI form of a connection (round-trips with parse_conn_uri)."""
    base = f"{info.conn_type}://{info._netloc()}/{quote(info.schema)}"
    if info.extra:
        base += "?" + urlencode({"__extra__": json.dumps(info.extra)})
    return base
