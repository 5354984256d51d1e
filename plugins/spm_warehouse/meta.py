"""The `meta` schema: what every stage did, as tables.

Why tables and not logs: the run report, the data-health dashboard and the
gate read what happened (rows, seconds, watermarks, drift, quarantined
input) with plain SQL. Every statement here is idempotent (CREATE ... IF NOT
EXISTS, ADD COLUMN IF NOT EXISTS) so any stage may call `ensure_meta_schema`
first; other modules (surveys, gate, publish) add their own meta tables the
same way in their own modules.
"""

from __future__ import annotations

import json

import psycopg

META_DDL: tuple[str, ...] = (
    "CREATE SCHEMA IF NOT EXISTS meta",
    # one row per source table: up to which cursor value the warehouse has the data
    """CREATE TABLE IF NOT EXISTS meta.watermarks (
        table_name text PRIMARY KEY,
        source text,
        watermark timestamptz,
        run_id text,
        updated_at timestamptz NOT NULL DEFAULT now()
    )""",
    # one row per table per load: the run report and the benchmark read it
    """CREATE TABLE IF NOT EXISTS meta.load_manifest (
        id bigserial PRIMARY KEY,
        run_id text NOT NULL,
        source text,
        table_name text NOT NULL,
        mode text,
        as_of date,
        watermark_from timestamptz,
        watermark_to timestamptz,
        rows_read bigint NOT NULL DEFAULT 0,
        rows_merged bigint NOT NULL DEFAULT 0,
        rows_deleted bigint NOT NULL DEFAULT 0,
        seconds numeric(12,3),
        started_at timestamptz NOT NULL,
        finished_at timestamptz
    )""",
    "CREATE INDEX IF NOT EXISTS load_manifest_run_idx ON meta.load_manifest (run_id)",
    # row-hash comparison figures (tables without an audit column, and NULL-audit rows)
    "ALTER TABLE meta.load_manifest ADD COLUMN IF NOT EXISTS rows_hashed bigint NOT NULL DEFAULT 0",
    "ALTER TABLE meta.load_manifest ADD COLUMN IF NOT EXISTS ranges_changed bigint NOT NULL DEFAULT 0",
    # the Fineract version each extraction found, and how it read each table
    """CREATE TABLE IF NOT EXISTS meta.source_profiles (
        id bigserial PRIMARY KEY,
        run_id text NOT NULL,
        source text NOT NULL,
        version text NOT NULL,
        table_modes jsonb NOT NULL,
        detected_at timestamptz NOT NULL DEFAULT now()
    )""",
    # generic quarantine: any loader puts rejected input here with the reason
    """CREATE TABLE IF NOT EXISTS meta.quarantine (
        id bigserial PRIMARY KEY,
        source text,
        source_key text,
        reason text,
        run_id text,
        detected_at timestamptz DEFAULT now(),
        payload jsonb
    )""",
    # the columns each source table had at the last extraction: drift is a difference to this
    """CREATE TABLE IF NOT EXISTS meta.source_columns (
        source text NOT NULL,
        table_name text NOT NULL,
        column_name text NOT NULL,
        data_type text,
        first_seen_at timestamptz NOT NULL DEFAULT now(),
        last_seen_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (source, table_name, column_name)
    )""",
    """CREATE TABLE IF NOT EXISTS meta.schema_drift (
        id bigserial PRIMARY KEY,
        run_id text,
        source text,
        table_name text NOT NULL,
        column_name text NOT NULL,
        change text NOT NULL,
        data_type text,
        detected_at timestamptz NOT NULL DEFAULT now()
    )""",
    # key reconciliations (hard-delete detection): when, what was compared, what was marked
    """CREATE TABLE IF NOT EXISTS meta.reconciliations (
        id bigserial PRIMARY KEY,
        run_id text,
        source text,
        table_name text NOT NULL,
        source_keys bigint NOT NULL,
        raw_keys bigint NOT NULL,
        marked_deleted bigint NOT NULL,
        seconds numeric(12,3),
        reconciled_at timestamptz NOT NULL DEFAULT now()
    )""",
)


def ensure_meta_schema(conn: psycopg.Connection) -> None:
    """Create the meta schema and the extraction's bookkeeping tables if missing (no commit)."""
    with conn.cursor() as cur:
        # concurrent first runs (extract_mis and extract_surveys in parallel) must not race on DDL
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('spm_warehouse.meta'))")
        for stmt in META_DDL:
            cur.execute(stmt)


def record_source_profile(conn: psycopg.Connection, run_id: str, source: str, version: str,
                          table_modes: dict[str, str]) -> None:
    """Remember which Fineract version the source is and how each table is read (no commit)."""
    conn.execute("INSERT INTO meta.source_profiles (run_id, source, version, table_modes) VALUES (%s, %s, %s, %s)",
                 (run_id, source, version, json.dumps(table_modes, sort_keys=True)))
