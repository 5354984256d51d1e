"""Shared fixtures: a real PostgreSQL server and the demo warehouse built once.

The server is the one SPM_TEST_DATABASE_URL names, else the project's
embedded cluster (started on demand). Tests create their own databases on
it, named spm_test_*, and drop them afterwards (helpers: fixtures/databases.py).

`star_world` is the hand-made two-night world of fixtures/star_world.py, and
`mariadb_database` a temporary database on the optional MariaDB server.

`demo_warehouse` runs the real nightly DAG (`airflow dags test`) once per
session on tiny demo data; every end-to-end test reads that build.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import psycopg
import pytest

# plugins/, the repository root and tests/fixtures are on sys.path (pyproject.toml: pythonpath)
from databases import conn_uri_for, create_database, drop_database, unique_name
from databases import mariadb_database as _mariadb_database
from psycopg import sql
from published_fingerprint import fingerprint
from star_world import build_world

from spm_warehouse import environment, settings
from spm_warehouse.embedded_postgres import EmbeddedPostgres
from tools.demo import fineract as demo_mis
from tools.demo import surveys as demo_surveys

DEMO_AS_OF = date(2024, 6, 30)
DEMO_CLIENTS = 150
DEMO_SEED = 7
DEMO_PSEUDONYM_KEY = "spm-test-pseudonym-key-not-secret-0123456789abcdef"


def pytest_addoption(parser):
    parser.addoption("--update-fingerprint", action="store_true", default=False,
                     help="rewrite tests/fixtures/published_fingerprint.json from this run's demo build")


def pytest_configure(config):
    # make test runs the tests on every core: shared worlds stay on one worker (fixtures/xdist_groups.py)
    if config.pluginmanager.hasplugin("xdist"):
        import xdist_groups

        config.pluginmanager.register(xdist_groups, "spm_xdist_groups")


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """postgresql:// URL of a server where tests may CREATE DATABASE."""
    url = os.environ.get("SPM_TEST_DATABASE_URL")
    if not url:
        # the embedded cluster: scram-sha-256, its superuser's password is in the URL (secrets.env).
        # Test workers (pytest-xdist) start it one at a time: the first initialises it, the others reuse it.
        state_dir = settings.local_dir() / "pg"
        state_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(state_dir.parent / "pg.test-start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            cluster = EmbeddedPostgres(state_dir)
            cluster.start()
            url = cluster.url("postgres")
            # bi_reader logs in with the password generated for this installation, as `make demo` sets it
            os.environ.setdefault("SPM_BI_READER_PASSWORD", environment.bi_reader_password())
    ensure_bi_reader_login(url)
    return url


def ensure_bi_reader_login(server_url: str) -> None:
    """bi_reader (cluster-wide) exists and logs in with SPM_BI_READER_PASSWORD, as tests connect as it."""
    password = os.environ.get("SPM_BI_READER_PASSWORD", "")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('spm_warehouse.roles'))")
        try:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'bi_reader'").fetchone():
                conn.execute("CREATE ROLE bi_reader LOGIN")
            if password:
                conn.execute(sql.SQL("ALTER ROLE bi_reader WITH LOGIN PASSWORD {}").format(sql.Literal(password)))
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('spm_warehouse.roles'))")


@pytest.fixture
def fresh_database(pg_server_url):
    """Factory: fresh_database('label') -> URL of a new empty database, dropped after the test."""
    made: list[str] = []

    def make(label: str = "db") -> str:
        name = unique_name(label)
        made.append(name)
        return create_database(pg_server_url, name)

    yield make
    for name in made:
        drop_database(pg_server_url, name)


@dataclass
class DemoWarehouse:
    """The shared build: where things are and how the DAG run went."""

    warehouse_url: str
    mis_url: str
    env: dict
    as_of: date
    returncode: int
    log: str
    local_dir: Path
    runs: list = field(default_factory=list)
    # analytics right after the first night, before any test runs another one
    first_fingerprint: dict = field(default_factory=dict)

    def run_dag(self, as_of: date | None = None, conf: str | None = None) -> subprocess.CompletedProcess:
        """Run `airflow dags test spm_nightly` again against the same databases."""
        cmd = [str(Path(sys.executable).parent / "airflow"), "dags", "test", "spm_nightly",
               (as_of or self.as_of).isoformat()]
        if conf:
            cmd += ["--conf", conf]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=1800)
        self.runs.append(proc)
        return proc


@pytest.fixture(scope="session")
def demo_warehouse(pg_server_url, tmp_path_factory):
    """Tiny demo sources + one real `airflow dags test` run of spm_nightly."""

    local = tmp_path_factory.mktemp("spm_local")
    # Unique names: two test runs sharing one server must not drop each other's build.
    prefix = f"spm_test_e2e_{uuid.uuid4().hex[:6]}"
    mis_url = create_database(pg_server_url, f"{prefix}_mis")
    wh_url = create_database(pg_server_url, f"{prefix}_wh")
    airflow_url = create_database(pg_server_url, f"{prefix}_airflow")
    drop_dir = local / "survey_drop"
    drop_dir.mkdir()
    with psycopg.connect(mis_url) as conn:
        demo_mis.build_demo_mis(conn, clients=DEMO_CLIENTS, seed=DEMO_SEED, as_of=DEMO_AS_OF)
        conn.commit()
        demo_surveys.generate_surveys(conn, out_dir=drop_dir, seed=DEMO_SEED, as_of=DEMO_AS_OF)

    env = dict(os.environ)
    env.update(
        {
            "SPM_LOCAL_DIR": str(local),
            "SPM_SURVEY_DROP_DIR": str(drop_dir),
            "AIRFLOW_CONN_WAREHOUSE": conn_uri_for(wh_url),
            "AIRFLOW_CONN_MIS_FINERACT": conn_uri_for(mis_url),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://" + airflow_url.split("://", 1)[1],
            # a fixed key: the published pseudonyms, and so the recorded fingerprint, are the same every run
            "SPM_PSEUDONYM_KEY": DEMO_PSEUDONYM_KEY,
        }
    )
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        environment.configure(start_embedded=False)
        environment.migrate_airflow_db()
        env = dict(os.environ)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    demo = DemoWarehouse(warehouse_url=wh_url, mis_url=mis_url, env=env, as_of=DEMO_AS_OF,
                         returncode=-1, log="", local_dir=local)
    proc = demo.run_dag()
    demo.returncode = proc.returncode
    demo.log = proc.stdout + proc.stderr
    (local / "first_run.log").write_text(demo.log)
    if proc.returncode == 0:

        with psycopg.connect(wh_url) as conn:
            demo.first_fingerprint = fingerprint(conn, "analytics")
    yield demo
    for name in ("mis", "wh", "airflow"):
        drop_database(pg_server_url, f"{prefix}_{name}")


@pytest.fixture(scope="session")
def star_world(pg_server_url, tmp_path_factory):
    """The hand-made two-night world of fixtures/star_world.py, built once per session.

    Defined here, not in the helper module: a fixture imported into several
    test modules is a separate fixture in each, and was built once per module.
    Read-only for tests; clone it (clone_world) to change it.
    """

    world = build_world(pg_server_url, tmp_path_factory.mktemp("star_world"))
    yield world
    drop_database(pg_server_url, world.name)


@pytest.fixture
def mariadb_database():
    """(pymysql connection, database name): a new database on the MariaDB at 127.0.0.1:3306, dropped after.

    Skips the test, with the reason printed, when that server is not reachable. Mark such tests
    @pytest.mark.mariadb.
    """
    with _mariadb_database() as handle:
        yield handle
