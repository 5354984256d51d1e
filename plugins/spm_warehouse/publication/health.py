"""The data-health views inside each build: `publication_info`, `data_health_runs`, `data_health_checks`,
`data_health_quarantine`.

Why inside the build and not in meta: they move with the build through
publication and rollback, so BI reads them next to the data they describe,
with no access to meta. Their SQL is health_views.sql.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from spm_warehouse import meta, settings
from spm_warehouse.gate.verdict import ensure_gate_tables
from spm_warehouse.publication.schemas import HEALTH_VIEWS

HEALTH_VIEWS_SQL = Path(__file__).with_name("health_views.sql")


def create_health_views(conn: psycopg.Connection, schema: str, build_id: str) -> None:
    """(Re)create both views in `schema` for build `build_id` (no commit)."""
    meta.ensure_meta_schema(conn)  # the views read meta.load_manifest and meta.quarantine
    ensure_gate_tables(conn)  # ... and meta.gate_runs and meta.check_results
    conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(
        sql.SQL(", ").join(sql.Identifier(schema, view) for view in HEALTH_VIEWS)))
    text = "\n".join(line for line in HEALTH_VIEWS_SQL.read_text().splitlines() if not line.startswith("--"))
    for statement in (s.strip() for s in text.split(";")):
        if statement:
            conn.execute(sql.SQL(statement).format(
                **{view: sql.Identifier(schema, view) for view in HEALTH_VIEWS},
                build_id=sql.Literal(build_id),
                stale_after_days=sql.Literal(settings.get_int("SPM_PUBLICATION_STALE_DAYS"))))
