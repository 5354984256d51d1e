"""The fault suite's machinery: a small demo world, nights run stage by stage in real processes, checks.

A night here is what the DAG does, one process per stage (as Airflow's workers run
them): prepare, extract_mis, extract_surveys, build, gate, publish, report, each through
`python -m spm_warehouse.stage`. A fault is SPM_FAULT_POINT set for the night's processes
(plugins/spm_warehouse/faults.py): the stage at that point kills itself with SIGKILL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from databases import conn_uri_for, create_database, drop_database, unique_name
from project import ROOT
from published_fingerprint import fingerprint

from spm_warehouse import settings
from spm_warehouse.sources.fineract_tables import TABLES

STAGES = ("prepare", "extract_mis", "extract_surveys", "build", "gate", "publish", "report")
BOOKKEEPING = {"_extracted_at", "_run_id", "_row_hash"}


@dataclass
class StageRun:
    stage: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def killed(self) -> bool:
        return self.returncode == -9

    @property
    def result(self) -> dict:
        lines = [x for x in self.stdout.strip().splitlines() if x.startswith("{")]
        return json.loads(lines[-1]) if lines else {}


@dataclass
class Night:
    run_id: str
    as_of: dt.date
    stages: list[StageRun] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.stages) and all(s.returncode == 0 for s in self.stages) and \
            [s.stage for s in self.stages] == list(STAGES)

    @property
    def failed(self) -> StageRun | None:
        return next((s for s in self.stages if s.returncode != 0), None)


@dataclass
class World:
    """A demo MIS and the URLs of the warehouses the scenarios clone."""

    server_url: str
    mis_url: str
    work: Path
    made: list[str] = field(default_factory=list)

    def env(self, wh_url: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPM_FAULT", "AIRFLOW_CONN_"))}
        env.update({
            "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}",
            "AIRFLOW_CONN_WAREHOUSE": conn_uri_for(wh_url),
            "AIRFLOW_CONN_MIS_FINERACT": conn_uri_for(self.mis_url),
            "SPM_LOCAL_DIR": str(self.work / "local"),
            "SPM_SURVEY_DROP_DIR": str(self.work / "drop"),
            "SPM_RECONCILE_EVERY_DAYS": "0",
        })
        env.update(extra)
        return env

    def database(self, label: str, template: str | None = None) -> tuple[str, str]:
        name = unique_name(label)
        url = create_database(self.server_url, name, template=template)
        self.made.append(name)
        return name, url

    def drop_all(self) -> None:
        for name in self.made:
            drop_database(self.server_url, name)


def run_stage(env: dict, stage: str, run_id: str, as_of: dt.date, given: dict | None = None,
              timeout: int = 900, full_refresh: bool = False) -> StageRun:
    cmd = [sys.executable, "-m", "spm_warehouse.stage", stage, "--run-id", run_id, "--as-of", as_of.isoformat()]
    if full_refresh:
        cmd.append("--full-refresh")
    if given is not None:
        path = Path(env["SPM_LOCAL_DIR"]) / f"xcom_{run_id}_{stage}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(given))
        cmd += ["--input", str(path)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return StageRun(stage, proc.returncode, proc.stdout, proc.stderr, round(time.monotonic() - t0, 1))


def run_night(env: dict, run_id: str, as_of: dt.date, stop_at_kill: bool = True) -> Night:
    """The DAG's stages in order; a failed stage stops the chain, and report runs anyway (ALL_DONE)
    unless a stage was killed (the machine went down: nothing runs after it)."""
    night = Night(run_id, as_of)
    xcom: dict[str, dict] = {}
    for stage in STAGES[:-1]:
        given = xcom.get("build") if stage == "gate" else xcom.get("gate") if stage == "publish" else None
        if stage in ("gate", "publish") and given is None:
            break
        run = run_stage(env, stage, run_id, as_of, given)
        night.stages.append(run)
        if run.returncode != 0:
            if run.killed and stop_at_kill:
                return night
            break
        xcom[stage] = run.result
    night.stages.append(run_stage(env, "report", run_id, as_of))
    return night


def analytics_print(url: str) -> dict:
    with psycopg.connect(url) as conn:
        return fingerprint(conn, "analytics")


def published_build(url: str) -> tuple[str | None, str | None]:
    """(build id in analytics.publication_info, build id of the newest meta.publications row)."""
    with psycopg.connect(url) as conn:
        live = conn.execute("SELECT build_id FROM analytics.publication_info").fetchone()
        meta = conn.execute("SELECT build_id FROM meta.publications ORDER BY publication_id DESC LIMIT 1").fetchone()
    return (live[0] if live else None), (meta[0] if meta else None)


def raw_digests(url: str) -> dict[str, str]:
    """Per raw_mis table: a digest of its rows' contract columns and _deleted."""
    out = {}
    with psycopg.connect(url) as conn:
        for spec in TABLES:
            cols = ", ".join(spec.column_names + ["_deleted"])
            out[spec.name] = conn.execute(
                f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                f"FROM (SELECT {cols} FROM raw_mis.{spec.name}) t").fetchone()[0]
    return out


def leftover_locks(url: str, seconds: float = 15.0) -> list[tuple]:
    """Advisory and relation locks still held by sessions of this database (after a kill the server
    may need a moment to notice the dead client)."""
    deadline = time.monotonic() + seconds
    while True:
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT l.locktype, l.mode, a.application_name, a.state FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() "
                "AND l.locktype IN ('advisory', 'relation') AND a.application_name LIKE 'spm_warehouse%'"
            ).fetchall()
        if not rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def one_line_error(run: StageRun) -> str:
    """The stage's error as the user sees it: exactly one 'error: ...' line and no traceback."""
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    errors = [x for x in run.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1, run.stderr[-3000:]
    return errors[0]


@contextlib.contextmanager
def server_in_use(exclusive: bool) -> Iterator[None]:
    """Shared while a scenario (or a world's nights) uses the server, exclusive while one restarts it.

    Two lock files across the xdist workers: the turnstile lets a waiting exclusive taker in
    before the next shared one, so the other worker's stream of scenarios cannot starve it."""
    folder = settings.local_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "faults.turnstile.lock", "w") as turnstile, open(folder / "faults.server.lock", "w") as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        if exclusive:
            fcntl.flock(lock, fcntl.LOCK_EX)
        else:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
            fcntl.flock(lock, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            fcntl.flock(turnstile, fcntl.LOCK_UN)
