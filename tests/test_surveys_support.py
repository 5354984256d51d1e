"""Helpers for the survey tests that run dbt (no tests here).

Why a copy of the dbt project: the scorecard checks must be shown failing
on bad seed files without touching the repository's seeds, and every test
run needs its own target folder. The copy is the real project (all models),
so parsing problems anywhere still fail these tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from spm_warehouse import load
from spm_warehouse.sources.fineract_tables import TABLES_BY_NAME

ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT = ROOT / "dbt_project"
DBT_BIN = Path(sys.executable).parent / "dbt"
BUILD_SCHEMA = "analytics_build"
# Our models with everything upstream (other helpers' models are built), but only our own tests:
# --indirect-selection empty keeps the tests of upstream models out of these runs.
SURVEY_SELECTION = ["+path:models/staging/kobo", "+path:models/intermediate/surveys", "+path:models/marts/surveys",
                    "+path:tests/surveys", "+path:seeds/_seeds__surveys.yml"]
SEEDS = DBT_PROJECT / "seeds"


def database_url(server_url: str, dbname: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


class TempDatabase:
    """A database of its own on the test server, dropped on close."""

    def __init__(self, server_url: str, label: str) -> None:
        self.server_url = server_url
        self.name = f"spm_test_{re.sub(r'[^a-z0-9_]', '_', label)}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.url = database_url(server_url, self.name)

    def close(self) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))


def project_copy(dest: Path, seeds: dict[str, str] | None = None) -> Path:
    """The repo's dbt project copied to dest, with seed files replaced by `seeds` (name -> CSV text)."""
    target = dest / "dbt_project"
    shutil.copytree(DBT_PROJECT, target, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    for name, text in (seeds or {}).items():
        (target / "seeds" / name).write_text(text, encoding="utf-8")
    return target


@dataclass
class DbtRun:
    returncode: int
    output: str
    results: dict[str, dict]  # node name -> run result

    def status(self, name: str) -> str:
        return self.results[name]["status"]


def run_dbt(project: Path, db_url: str, args: list[str], dbt_vars: dict | None = None) -> DbtRun:
    parts = urlsplit(db_url)
    env = dict(os.environ)
    env.update({
        "SPM_DBT_HOST": parts.hostname or "127.0.0.1", "SPM_DBT_PORT": str(parts.port or 5432),
        "SPM_DBT_USER": parts.username or "postgres", "SPM_DBT_PASSWORD": parts.password or "",
        "SPM_DBT_DBNAME": parts.path.lstrip("/"), "SPM_DBT_SCHEMA": "build", "SPM_BUILD_SCHEMA": BUILD_SCHEMA,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False", "DO_NOT_TRACK": "1",
    })
    target = project / "target"
    cmd = [str(DBT_BIN), *args, "--project-dir", str(project), "--profiles-dir", str(project),
           "--target-path", str(target), "--log-path", str(project / "logs")]
    if dbt_vars:
        cmd += ["--vars", json.dumps(dbt_vars)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=project, timeout=900)
    results: dict[str, dict] = {}
    run_results = target / "run_results.json"
    if run_results.exists():
        for r in json.loads(run_results.read_text())["results"]:
            results[r["unique_id"].split(".")[2]] = r  # model.spm_warehouse.<name>[.hash]
    return DbtRun(proc.returncode, proc.stdout + proc.stderr, results)


def build_surveys(project: Path, db_url: str, as_of: str = "2024-06-30", extra_vars: dict | None = None) -> DbtRun:
    return run_dbt(project, db_url, ["build", "--select", *SURVEY_SELECTION, "--indirect-selection", "empty"],
                   {"as_of_date": as_of, **(extra_vars or {})})


def create_raw_mis(conn: psycopg.Connection, rows: dict[str, list[dict]]) -> None:
    """Every raw_mis table as the MIS extraction makes them (contract columns), filled with `rows`."""
    for spec in TABLES_BY_NAME.values():
        load.ensure_raw_table(conn, spec)
    for name, table_rows in rows.items():
        for row in table_rows:
            cols = list(row)
            conn.execute(
                sql.SQL("INSERT INTO raw_mis.{} ({}) VALUES ({})").format(
                    sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, cols)),
                    sql.SQL(", ").join(sql.Placeholder() * len(cols))),
                [row[c] for c in cols])
    conn.commit()


def read_seed(name: str) -> list[dict]:
    import csv

    with open(SEEDS / name, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def points_of(scorecard: str) -> dict[tuple[str, str], int]:
    return {(r["question_code"], r["answer_code"]): int(r["points"])
            for r in read_seed("ppi_scorecard_points.csv") if r["scorecard_code"] == scorecard}


def expected_score(scorecard: str, answers: dict[str, str]) -> int:
    points = points_of(scorecard)
    return sum(points[(q, a.lower())] for q, a in answers.items())


def expected_likelihood(scorecard: str, score: int, line: str = "national") -> float:
    for r in read_seed("ppi_scorecard_likelihoods.csv"):
        if (r["scorecard_code"] == scorecard and r["poverty_line"] == line
                and int(r["score_from"]) <= score <= int(r["score_to"])):
            return float(r["likelihood"])
    raise AssertionError(f"no likelihood for {scorecard} {score} {line}")


def answer_codes(scorecard: str) -> dict[str, list[str]]:
    """question -> answer codes, poorest first."""
    out: dict[str, list[tuple[int, str]]] = {}
    for (q, a), p in points_of(scorecard).items():
        out.setdefault(q, []).append((p, a))
    return {q: [a for _, a in sorted(v)] for q, v in sorted(out.items())}
