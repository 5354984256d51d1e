"""A content fingerprint of every published table, run metadata aside.

Why: a restructuring must not change what BI users read. The fingerprint of
the shared demo build is kept in `tests/fixtures/published_fingerprint.json`;
`test_published_tables_match_the_recorded_fingerprint` compares tonight's
build with it. After a deliberate change of a mart, regenerate it with

    PYTHONPATH=plugins .venv/bin/python -m pytest tests -k published_tables --update-fingerprint

and say why in the commit.
"""

from __future__ import annotations

import hashlib

import psycopg
from psycopg import sql

# Columns that say which run wrote a row, not what the row says.
RUN_METADATA_COLUMNS = frozenset({"_as_of_date", "_cutoff_ts", "_watermark", "_backfill"})
# Views that describe the publication itself (build ids, timestamps), not the data.
RUN_METADATA_RELATIONS = frozenset({"publication_info", "data_health_runs"})


def fingerprint(conn: psycopg.Connection, schema: str) -> dict[str, dict]:
    """{relation: {"rows": n, "columns": [...], "md5": ...}} over the sorted text of every row."""
    relations = [r[0] for r in conn.execute(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1""", (schema,)).fetchall()]
    result = {}
    for relation in relations:
        if relation in RUN_METADATA_RELATIONS:
            continue
        columns = [r[0] for r in conn.execute(
            """SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0
               AND NOT attisdropped ORDER BY attname""", (f'"{schema}"."{relation}"',)).fetchall()
                   if r[0] not in RUN_METADATA_COLUMNS]
        query = sql.SQL("SELECT {cols} FROM {rel}").format(
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in columns), rel=sql.Identifier(schema, relation))
        digest = hashlib.md5()
        lines = sorted(repr(row) for row in conn.execute(query))
        for line in lines:
            digest.update(line.encode() + b"\n")
        result[relation] = {"rows": len(lines), "columns": columns, "md5": digest.hexdigest()}
    return result
