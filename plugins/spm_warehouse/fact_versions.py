"""The history-sized facts, kept once in versions: pinning their views, dropping dead versions.

dbt keeps fct_loan_transaction, fct_portfolio_month and fct_client_indicator as
`<fact>__versions` tables in the schema `history`, which publication never renames:
every row once, with the versions in which it is current (`_valid_from`,
`_valid_to`; dbt_project/macros/history.sql says why and how). The facts in the
build schema are views of the current rows.

- `pin_views` (publish, in the swap transaction): the build's views are replaced by
  views of the rows current at a new version, so the published fact keeps showing
  its night while later nights close and append rows; the version goes into the
  schema's state (SchemaState.history_version) and travels with the schema through
  publish and rollback.
- `collect_garbage` (the build stage, before dbt): deletes the rows that neither the
  published nor the previous publication's views can show, so a versions table holds
  one copy plus the rows replaced since the previous publication.

Functions take a connection and never commit.
"""

from __future__ import annotations

import logging
import re

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

HISTORY_SCHEMA = "history"  # dbt_project/macros/history.sql: history_schema()
VERSIONS_SEQUENCE = "versions"
OPEN_VERSION = 9223372036854775807  # _valid_to of a current row
VERSION_COLUMNS = ("_valid_from", "_valid_to")
_PINNED = re.compile(r"_valid_from <= '?(\d+)")


def history_views(conn: psycopg.Connection, schema: str) -> list[tuple[str, str]]:
    """(view, versions table) of every view of `schema` that reads a table of the history schema."""
    return [(view, table) for view, table in conn.execute(
        """SELECT DISTINCT v.relname, t.relname
           FROM pg_class v
           JOIN pg_namespace vn ON vn.oid = v.relnamespace
           JOIN pg_rewrite r ON r.ev_class = v.oid
           JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
           JOIN pg_class t ON t.oid = d.refobjid AND t.relkind IN ('r', 'p')
           JOIN pg_namespace tn ON tn.oid = t.relnamespace
           WHERE vn.nspname = %s AND v.relkind = 'v' AND tn.nspname = %s
           ORDER BY 1""", (schema, HISTORY_SCHEMA)).fetchall()]


def data_relations(conn: psycopg.Connection, schema: str) -> list[str]:
    """The relations of a schema that hold data: tables, materialized views, and the views of versioned facts.

    What publication counts, records and locks, and the gate's volume check counts.
    """
    tables = {r[0] for r in conn.execute(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'm')""", (schema,)).fetchall()}
    return sorted(tables | {view for view, _ in history_views(conn, schema)})


def relation_columns(conn: psycopg.Connection, schema: str, view: str) -> list[str]:
    return [r[0] for r in conn.execute(
        """SELECT a.attname FROM pg_attribute a
           WHERE a.attrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) AND a.attnum > 0
             AND NOT a.attisdropped ORDER BY a.attnum""", (schema, view)).fetchall()]


def next_version(conn: psycopg.Connection) -> int | None:
    """A new version from history.versions (None when the sequence does not exist: no versioned fact yet)."""
    seq = f"{HISTORY_SCHEMA}.{VERSIONS_SEQUENCE}"
    if conn.execute("SELECT to_regclass(%s) IS NULL", (seq,)).fetchone()[0]:
        return None
    return int(conn.execute("SELECT nextval(%s)", (seq,)).fetchone()[0])


def pin_views(conn: psycopg.Connection, schema: str) -> int | None:
    """Replace the schema's views of versions tables by views pinned to a new version; return it.

    The same columns, comments and grants (CREATE OR REPLACE VIEW); only the rows
    change from "current now" to "current at this version", which are the same rows
    until the next build writes. None when the schema has no such view.
    """
    views = history_views(conn, schema)
    if not views:
        return None
    version = next_version(conn)
    if version is None:
        return None
    for view, table in views:
        columns = relation_columns(conn, schema, view)
        conn.execute(sql.SQL("CREATE OR REPLACE VIEW {} AS SELECT {} FROM {} WHERE {}").format(
            sql.Identifier(schema, view), sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            sql.Identifier(HISTORY_SCHEMA, table), pinned_rows(version)))
    return version


def view_version(conn: psycopg.Connection, schema: str, view: str) -> int | None:
    """The version a view of a versioned fact is pinned to (None: it shows the current rows)."""
    found = _PINNED.search(conn.execute("SELECT pg_get_viewdef(to_regclass(format('%%I.%%I', %s::text, %s::text)))",
                                        (schema, view)).fetchone()[0] or "")
    return int(found.group(1)) if found else None


def pinned_rows(version: int) -> sql.Composable:
    """The condition on a versions table's rows that a view pinned to `version` shows."""
    return sql.SQL("_valid_from <= {v} AND _valid_to > {v}").format(v=sql.Literal(version))


def versions_tables(conn: psycopg.Connection) -> list[str]:
    """The tables of the history schema that carry the version columns."""
    return [r[0] for r in conn.execute(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relkind IN ('r', 'p')
             AND (SELECT count(*) FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attname = ANY(%s) AND NOT a.attisdropped) = %s
           ORDER BY 1""", (HISTORY_SCHEMA, list(VERSION_COLUMNS), len(VERSION_COLUMNS))).fetchall()]


def collect_garbage(conn: psycopg.Connection, retained_versions: list[int | None]) -> dict[str, int]:
    """Delete the rows closed at or before every retained version; return {table: rows deleted}.

    retained_versions: the versions the published and the previous publication's
    views are pinned to. A None among them (a publication whose views are not pinned,
    e.g. one made before the facts were versioned but holding views of them) keeps
    every row: a row is only deleted when no retained view can show it. Current rows
    (the build's) are never deleted. The deletes go through the partial index on the
    closed rows, so the work is the rows replaced, not the table.
    """
    if any(v is None for v in retained_versions):
        log.warning("a publication's views of the versioned facts are not pinned: no old versions deleted")
        return {}
    deleted: dict[str, int] = {}
    oldest = min(retained_versions) if retained_versions else None
    for table in versions_tables(conn):
        # with no publication at all, nothing can show a closed row
        condition = (sql.SQL("_valid_to < {}").format(sql.Literal(OPEN_VERSION)) if oldest is None else
                     sql.SQL("_valid_to <= {}").format(sql.Literal(oldest)))
        cur = conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(sql.Identifier(HISTORY_SCHEMA, table), condition))
        deleted[table] = cur.rowcount
    return deleted
