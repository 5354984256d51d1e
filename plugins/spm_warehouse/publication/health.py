"""The data-health views inside each build: `publication_info` and `data_health_runs`.

Why inside the build and not in meta: they move with the build through
publication and rollback, so BI reads them next to the data they describe,
with no access to meta. Their SQL is health_views.sql.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from spm_warehouse import meta
from spm_warehouse.publication.schemas import HEALTH_VIEWS

HEALTH_VIEWS_SQL = Path(__file__).with_name("health_views.sql")


def create_health_views(conn: psycopg.Connection, schema: str, build_id: str) -> None:
    """(Re)create both views in `schema` for build `build_id` (no commit)."""
    meta.ensure_meta_schema(conn)  # the views read meta.load_manifest and meta.quarantine
    conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(
        sql.SQL(", ").join(sql.Identifier(schema, view) for view in HEALTH_VIEWS)))
    text = "\n".join(line for line in HEALTH_VIEWS_SQL.read_text().splitlines() if not line.startswith("--"))
    for statement in (s.strip() for s in text.split(";")):
        if statement:
            conn.execute(sql.SQL(statement).format(
                publication_info=sql.Identifier(schema, "publication_info"),
                data_health_runs=sql.Identifier(schema, "data_health_runs"),
                build_id=sql.Literal(build_id)))
