"""Seed tables whose columns changed are dropped before the build, so that dbt creates them anew.

Why: `dbt seed` (inside `dbt build`) truncates and reloads an existing seed
table, and fails when the CSV gained or lost a column since the table was
created ("column ... does not exist"): an upgrade that adds a column to a
seed (e.g. indicator_catalogue.change_unit) would block every night of an
existing installation until someone ran a full refresh. Seeds are small
reference tables; dropping the few whose header no longer matches costs
nothing, and the views that read them (staging) are rebuilt by the same
build. Seeds whose columns are unchanged are left alone.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import psycopg
from psycopg import sql

from spm_warehouse.paths import DBT_PROJECT_DIR

log = logging.getLogger(__name__)

SEED_SCHEMA = "reference"  # dbt_project.yml: seeds +schema (generate_schema_name uses it verbatim)


def seed_headers(seeds_dir: Path | None = None) -> dict[str, list[str]]:
    """seed name -> the column names of its CSV header."""
    seeds_dir = seeds_dir or DBT_PROJECT_DIR / "seeds"
    headers = {}
    for path in sorted(seeds_dir.glob("*.csv")):
        with open(path, encoding="utf-8", newline="") as fh:
            header = next(csv.reader(fh), [])
        headers[path.stem] = [h.strip() for h in header]
    return headers


def drop_changed_seed_tables(conn: psycopg.Connection, seeds_dir: Path | None = None,
                             schema: str = SEED_SCHEMA) -> list[str]:
    """Drop (CASCADE) each seed table whose columns differ from its CSV header; returns their names (no commit)."""
    dropped = []
    for name, header in seed_headers(seeds_dir).items():
        existing = [r[0] for r in conn.execute(
            """SELECT column_name FROM information_schema.columns
               WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position""", (schema, name)).fetchall()]
        if existing and existing != header:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(schema, name)))
            dropped.append(name)
    if dropped:
        log.info("seed tables whose columns changed, recreated by this build: %s", ", ".join(dropped))
    return dropped
