"""The schemas of the publication cycle and the one state each of them carries.

Three schemas take turns (names from settings), and the restricted schemas (real
account numbers, never granted to bi_reader) turn with them in the same transaction:
analytics_restricted_build -> analytics_restricted -> analytics_restricted_prev.

    analytics_build   tonight's build: dbt writes it, the gate audits it
    analytics         the published build that BI reads
    analytics_prev    the previous publication, for rollback

Publish renames them in one transaction (swap.py); the publication before last
is not dropped but becomes the next night's build schema ("recycled"), where an
incremental mart kept as a table would catch up from its own state. The
history-sized facts are not in these schemas: each holds views of them, pinned
to a version of the tables of the schema history (fact_versions.py), which no
swap renames.

Each schema says what it holds in its COMMENT, as one `SchemaState`:
`read_state` is the only reader and `write_state` the only writer. A recycled
schema is refused by publish until a build of the run being published has
replaced its state.

Functions here take a connection and never commit: the stage that calls them
owns the transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psycopg
from psycopg import sql

from spm_warehouse import settings
from spm_warehouse.fact_versions import data_relations, history_views

# Views that publish creates inside each build (health_views.sql); no dbt model builds them.
HEALTH_VIEWS = ("publication_info", "data_health_runs", "data_health_checks", "data_health_quarantine")
RECYCLING_SUFFIX = "_recycling"
OLD_SPARE_SUFFIX = "_spare"  # a schema earlier versions kept beside the build schema (publish drops it)
RECYCLED_KEY = "recycled_from_build_id"


@dataclass(frozen=True)
class SchemaState:
    """What a schema of the cycle holds, kept as JSON in its comment.

    - built:     run_id and as_of_date (dbt built it for that run);
    - published: build_id as well (publish stamped it; publication_info reads it);
    - recycled:  recycled_from (an old publication waiting to be rebuilt into).
    An empty state means the schema carries no stamp (or does not exist).
    """

    build_id: str | None = None
    run_id: str | None = None
    as_of_date: str | None = None
    recycled_from: str | None = None
    # published: the version its views of the versioned facts are pinned to (plugins/spm_warehouse/fact_versions.py)
    history_version: int | None = None

    @classmethod
    def built(cls, run_id: str, as_of: date) -> SchemaState:
        return cls(run_id=run_id, as_of_date=as_of.isoformat())

    @classmethod
    def published(cls, build_id: str, run_id: str, as_of: date, history_version: int | None = None) -> SchemaState:
        return cls(build_id=build_id, run_id=run_id, as_of_date=as_of.isoformat(), history_version=history_version)

    @classmethod
    def recycled_copy(cls, of_build_id: str) -> SchemaState:
        return cls(recycled_from=of_build_id)

    @property
    def is_recycled(self) -> bool:
        return self.recycled_from is not None

    def as_json(self) -> str:
        data = {"build_id": self.build_id, "run_id": self.run_id, "as_of_date": self.as_of_date,
                RECYCLED_KEY: self.recycled_from, "history_version": self.history_version}
        return json.dumps({k: v for k, v in data.items() if v is not None})

    @classmethod
    def from_json(cls, text: str | None) -> SchemaState:
        try:
            data = json.loads(text) if text else {}
        except json.JSONDecodeError:
            return cls()
        if not isinstance(data, dict):
            return cls()
        return cls(build_id=data.get("build_id"),
                   # "built_by_run_id": how builds of earlier versions stamped their schema
                   run_id=data.get("run_id") or data.get("built_by_run_id"),
                   as_of_date=data.get("as_of_date"), recycled_from=data.get(RECYCLED_KEY),
                   history_version=_int_or_none(data.get("history_version")))


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_state(conn: psycopg.Connection, schema: str) -> SchemaState:
    """The state a schema carries (an empty one when it has none or does not exist)."""
    row = conn.execute("SELECT obj_description(to_regnamespace(%s)::oid, 'pg_namespace')", (schema,)).fetchone()
    return SchemaState.from_json(row[0] if row else None)


def rename_schema(conn: psycopg.Connection, old: str, new: str) -> None:
    """ALTER SCHEMA old RENAME TO new: the one operation publication and rollback are made of."""
    conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new)))


def write_state(conn: psycopg.Connection, schema: str, state: SchemaState) -> None:
    conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(sql.Identifier(schema), sql.Literal(state.as_json())))


def build_schema() -> str:
    return settings.build_schema()


def previous_schema() -> str:
    return settings.analytics_schema() + "_prev"


def recycling_enabled() -> bool:
    return settings.get("SPM_RECYCLE_BUILD") == "1"


def schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    return conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (schema,)).fetchone()[0]


def relations(conn: psycopg.Connection, schema: str, kinds: tuple[str, ...] = ("r", "p", "m")) -> list[str]:
    return [r[0] for r in conn.execute(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relkind = ANY(%s) ORDER BY 1""", (schema, list(kinds))).fetchall()]


def row_counts(conn: psycopg.Connection, schema: str) -> dict[str, int]:
    return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, t))).fetchone()[0]
            for t in data_relations(conn, schema)}


def retained_history_versions(conn: psycopg.Connection) -> list[int | None]:
    """The versions the published and the previous publication's views of the versioned facts are pinned to.

    A schema without such views (none, or one published before the facts were
    versioned) retains nothing; one with views but no recorded version gives None,
    which makes the garbage collection keep every row (history.collect_garbage).
    """
    return [read_state(conn, schema).history_version
            for schema in (settings.analytics_schema(), previous_schema())
            if schema_exists(conn, schema) and history_views(conn, schema)]


def stamp_build(conn: psycopg.Connection, run_id: str, as_of: date) -> None:
    """Record which run built the build schemas (publish checks it is the run it publishes)."""
    for schema in (build_schema(), settings.restricted_build_schema()):
        if schema_exists(conn, schema):
            write_state(conn, schema, SchemaState.built(run_id, as_of))


def reset_restricted_build(conn: psycopg.Connection) -> None:
    """Drop the restricted build schema before a build: it holds exactly tonight's restricted marts.

    The restricted marts (real account numbers, dbt models/marts/restricted) are
    small tables rebuilt every night; they are never recycled.
    """
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
        sql.Identifier(settings.restricted_build_schema())))


def rotate(conn: psycopg.Connection, incoming: str, live: str, previous: str, drop_previous: bool) -> None:
    """incoming -> live -> previous, by renames (the caller holds the locks and the transaction).

    drop_previous: publish (the old previous is dropped); else rollback (live and previous trade
    places, incoming is ignored). Absent schemas are skipped, so a publication made before the
    restricted schema existed rotates correctly too.
    """
    if drop_previous:
        if schema_exists(conn, previous):
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(previous)))
        if schema_exists(conn, live):
            rename_schema(conn, live, previous)
        if schema_exists(conn, incoming):
            rename_schema(conn, incoming, live)
        return
    swap = live + "_swap"
    if schema_exists(conn, live):
        rename_schema(conn, live, swap)
    if schema_exists(conn, previous):
        rename_schema(conn, previous, live)
    if schema_exists(conn, swap):
        rename_schema(conn, swap, previous)


def prune_build_schema(conn: psycopg.Connection, manifest_path: Path) -> list[str]:
    """Drop tables and views of the build schema that no dbt model of this project builds.

    A recycled build schema still holds every relation of an older build; a
    model removed or renamed since would otherwise be published forever.
    Without a readable manifest nothing is dropped.
    """
    schema = build_schema()
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return []
    wanted = {(node.get("alias") or node.get("name")) for node in manifest.get("nodes", {}).values()
              if node.get("resource_type") in ("model", "seed", "snapshot") and node.get("schema") == schema}
    if not wanted:
        return []
    rows = conn.execute(
        """SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1""", (schema,)).fetchall()
    dropped = []
    for name, kind in rows:
        if name in wanted or name in HEALTH_VIEWS:
            continue
        what = {"v": "VIEW", "m": "MATERIALIZED VIEW"}.get(kind, "TABLE")
        conn.execute(f'DROP {what} IF EXISTS "{schema}"."{name}" CASCADE')
        dropped.append(name)
    return dropped
