"""Indexes on raw_mis that let a nightly build find the day's changes without scanning history.

Why: the incremental models find the loans changed since their state with
conditions on the bookkeeping and date columns of the raw tables (merged
since the watermark, entered since the last cutoff, dated since the last
as-of date: macros/incremental/core_incremental_marts.sql) and then read
those loans' rows. Without indexes each of those conditions is a scan of the
whole raw table, i.e. of the history; with them a night reads the day's rows.

Why the build stage creates them and not the extraction: the first load
COPYs millions of rows into tables without secondary indexes (the primary key
too is built once after the COPY, load.begin_initial_load), and the extraction
is measured against the raw COPY limit. The build stage creates a missing
index once (the first night, or after a table was recreated); from then on
the merges keep it up to date at the cost of the day's rows.

The gate's freshness check reads the newest change of five raw tables
(gate/freshness.py); an index on that same expression turns its scan of the
history into five index lookups.
"""

from __future__ import annotations

import logging
import time

import psycopg
from psycopg import sql

from spm_warehouse.load import RAW_SCHEMA

log = logging.getLogger(__name__)

# raw table -> columns (raw names) the nightly change queries filter or join on
DELTA_INDEXES: dict[str, tuple[str, ...]] = {
    "m_loan_transaction": ("_extracted_at", "created_on_utc", "transaction_date", "loan_id"),
    "m_loan_repayment_schedule": ("_extracted_at", "created_on_utc", "loan_id"),
    "m_loan": ("_extracted_at", "created_on_utc", "submittedon_date", "writtenoffon_date", "client_id", "group_id"),
    "m_client": ("_extracted_at", "created_on_utc", "submittedon_date"),
    "m_group": ("_extracted_at",),
}


# The expression whose maximum is the MIS watermark (gate/freshness.py), and the raw tables it is read from:
# last_modified_on_utc, else created_on_utc (Fineract 1.4-1.7 keep only a creation time on transactions).
WATERMARK_EXPRESSION = "coalesce(last_modified_on_utc, created_on_utc)"
WATERMARK_COLUMNS = frozenset({"last_modified_on_utc", "created_on_utc"})
WATERMARK_TABLES: tuple[str, ...] = (
    "m_client", "m_loan", "m_loan_transaction", "m_loan_repayment_schedule", "m_savings_account")


def index_name(table: str, column: str) -> str:
    return f"{table}__{column.strip('_')}__delta_idx"[:63]


def _wanted() -> list[tuple[str, str, str, sql.Composable, frozenset[str]]]:
    """(table, label, index name, indexed key, raw columns it needs) of every delta index."""
    out = [(table, column, index_name(table, column), sql.Identifier(column), frozenset({column}))
           for table, columns in DELTA_INDEXES.items() for column in columns]
    out += [(table, "watermark", index_name(table, "watermark"),
             sql.SQL("({})").format(sql.SQL(WATERMARK_EXPRESSION)), WATERMARK_COLUMNS)
            for table in WATERMARK_TABLES]
    return out


def ensure_delta_indexes(conn: psycopg.Connection) -> list[str]:
    """Create the missing delta indexes (no commit); returns the ones created.

    Tables or columns the source does not have (an optional table, an older
    Fineract) are skipped: the queries then scan, as before, and stay correct.
    """
    columns: dict[str, set[str]] = {}
    for t, c in conn.execute(
            """SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s""",
            (RAW_SCHEMA,)):
        columns.setdefault(t, set()).add(c)
    indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", (RAW_SCHEMA,))}
    created = []
    for table, label, name, key, needs in _wanted():
        if not needs <= columns.get(table, set()) or name in indexes:
            continue
        started = time.monotonic()
        conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} ({})").format(
            sql.Identifier(name), sql.Identifier(RAW_SCHEMA), sql.Identifier(table), key))
        log.info("delta index %s.%s (%s) created in %.1fs", RAW_SCHEMA, table, label, time.monotonic() - started)
        created.append(f"{table}({label})")
    return created
