"""Extraction of an Apache Fineract database (PostgreSQL or MySQL/MariaDB) into raw_mis.

What it promises (issue 3):
- only the columns the warehouse needs are read (never client names, phones,
  e-mails, national ids: see TABLES);
- tables with `last_modified_on_utc` are read incrementally from a stored
  watermark minus a lookback window (clock skew, long transactions); small
  reference tables are read whole;
- one read-only REPEATABLE READ snapshot on the source for the whole
  extraction, a statement timeout, no explicit locks;
- rows are streamed (PostgreSQL: COPY TO STDOUT straight into COPY FROM STDIN;
  MySQL: an unbuffered server-side cursor read in chunks) into landing tables
  and merged by primary key into raw_mis (see load.py): a rerun changes nothing;
- a new source column is recorded as drift and ignored, a missing required
  column stops the load with a SourceSchemaError naming table and column;
- hard deletes are found by `reconcile_keys` (on demand, or every N days).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Iterator

import psycopg

from spm_warehouse import load, meta, settings
from spm_warehouse.settings import ConnInfo
from spm_warehouse.sources.fineract_tables import TABLES, TABLES_BY_NAME, TableSpec

log = logging.getLogger(__name__)



class SourceSchemaError(RuntimeError):
    """The source lacks a table or column the warehouse needs; the message names them."""


# --------------------------------------------------------------------------------------------
# source sessions


class SourceSession:
    """A read-only, repeatable-read snapshot of the source for one extraction."""

    dialect = "?"

    def columns(self) -> dict[str, dict[str, str]]:
        """table -> {column: data type} of every table in the source schema."""
        raise NotImplementedError

    def stream_to(self, spec: TableSpec, since: dt.datetime | None, wh_cur: psycopg.Cursor,
                  target: str) -> int:
        """Copy the spec's columns of rows with cursor > since (all when None) into `target` via COPY."""
        raise NotImplementedError

    def stream_keys_to(self, spec: TableSpec, wh_cur: psycopg.Cursor, target: str) -> int:
        raise NotImplementedError

    def max_cursor(self, spec: TableSpec) -> dt.datetime | None:
        """Highest cursor value in the snapshot: the new watermark (read where the rows already are,
        instead of scanning the freshly loaded warehouse table)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _timeout_s() -> int:
    return settings.get_int("SPM_SOURCE_STATEMENT_TIMEOUT_S")


class _PostgresSource(SourceSession):
    """psycopg on the source; COPY (SELECT ...) TO STDOUT streamed into the warehouse's COPY FROM STDIN.

    Binary COPY on both ends: no text formatting/parsing of numerics and timestamps. Each
    selected column is cast to the raw type, so the binary layouts match whatever the
    source's own integer widths are.
    """

    dialect = "postgresql"

    def __init__(self, info: ConnInfo):
        self.conn = psycopg.connect(info.libpq_url(), application_name="spm_warehouse_extract", autocommit=True)
        self.schema = info.extra.get("source_schema")
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self.conn.execute(f"SET LOCAL statement_timeout = '{_timeout_s()}s'")
        self.conn.execute("SET LOCAL TIME ZONE 'UTC'")
        if self.schema is None:
            self.schema = self.conn.execute("SELECT current_schema()").fetchone()[0]

    def columns(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for table, column, dtype in self.conn.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s ORDER BY table_name, ordinal_position", (self.schema,)):
            out.setdefault(table, {})[column] = dtype
        return out

    def _qualified(self, table: str) -> str:
        return f'"{self.schema}"."{table}"'

    def stream_to(self, spec, since, wh_cur, target):
        select = ", ".join(f'"{c}"::{_pg_cast(t)}' for c, t in spec.columns)
        where = ""
        params: tuple = ()
        if since is not None and spec.cursor:
            where = f' WHERE "{spec.cursor}" > %s OR "{spec.cursor}" IS NULL'
            params = (since,)
        query = f"COPY (SELECT {select} FROM {self._qualified(spec.name)}{where}) TO STDOUT (FORMAT BINARY)"
        cols = ", ".join(f'"{c}"' for c in spec.column_names)
        with self.conn.cursor() as scur:
            with scur.copy(query, params) as out, wh_cur.copy(
                    f"COPY {target} ({cols}) FROM STDIN (FORMAT BINARY)") as inp:
                for chunk in out:
                    inp.write(chunk)
        return wh_cur.rowcount

    def stream_keys_to(self, spec, wh_cur, target):
        select = ", ".join(f'"{c}"::bigint' for c in spec.key)
        cols = ", ".join(spec.key)
        with self.conn.cursor() as scur:
            with scur.copy(f"COPY (SELECT {select} FROM {self._qualified(spec.name)}) TO STDOUT (FORMAT BINARY)") as out, \
                    wh_cur.copy(f"COPY {target} ({cols}) FROM STDIN (FORMAT BINARY)") as inp:
                for chunk in out:
                    inp.write(chunk)
        return wh_cur.rowcount

    def max_cursor(self, spec):
        return self.conn.execute(f'SELECT max("{spec.cursor}") FROM {self._qualified(spec.name)}').fetchone()[0]

    def close(self) -> None:
        try:
            self.conn.execute("ROLLBACK")  # read-only: nothing to keep
        finally:
            self.conn.close()


def _pg_cast(raw_type: str) -> str:
    return raw_type


class _MySqlSource(SourceSession):
    """PyMySQL with an unbuffered (server-side) cursor, fetched in chunks into COPY text rows.

    Fineract's MySQL schema stores the *_on_utc columns as DATETIME in UTC and booleans as
    tinyint(1)/bit: the warehouse session runs in UTC and PostgreSQL reads 0/1 as booleans.
    """

    dialect = "mysql"

    def __init__(self, info: ConnInfo):
        # the MySQL/MariaDB driver: only for Fineract on MySQL (optional dependency)
        import pymysql
        import pymysql.cursors

        self.conn = pymysql.connect(host=info.host or "127.0.0.1", port=info.port or 3306, user=info.login or None,
                                    password=info.password or "", database=info.schema, charset="utf8mb4",
                                    autocommit=False, cursorclass=pymysql.cursors.SSCursor)
        self.schema = info.schema
        with self.conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            version = cur.fetchone()[0]
            cur.fetchall()
            timeout = _timeout_s()
            if "mariadb" in version.lower():
                cur.execute(f"SET SESSION max_statement_time = {timeout}")
            else:
                cur.execute(f"SET SESSION max_execution_time = {timeout * 1000}")
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")

    def columns(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        with self.conn.cursor() as cur:
            cur.execute("SELECT table_name, column_name, column_type FROM information_schema.columns "
                        "WHERE table_schema = %s ORDER BY table_name, ordinal_position", (self.schema,))
            for table, column, dtype in cur.fetchall():
                out.setdefault(table, {})[column] = dtype
        return out

    def _rows(self, sql: str, params: tuple = ()) -> Iterator[tuple]:
        chunk = settings.get_int("SPM_EXTRACT_CHUNK_ROWS")
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            while True:
                rows = cur.fetchmany(chunk)
                if not rows:
                    return
                yield from rows

    def stream_to(self, spec, since, wh_cur, target):
        select = ", ".join(_mysql_expr(c, t) for c, t in spec.columns)
        sql = f"SELECT {select} FROM `{spec.name}`"
        params: tuple = ()
        if since is not None and spec.cursor:
            sql += f" WHERE `{spec.cursor}` > %s OR `{spec.cursor}` IS NULL"
            params = (since.astimezone(dt.timezone.utc).replace(tzinfo=None),)
        cols = ", ".join(f'"{c}"' for c in spec.column_names)
        with wh_cur.copy(f"COPY {target} ({cols}) FROM STDIN") as inp:
            for row in self._rows(sql, params):
                inp.write_row(row)
        return wh_cur.rowcount

    def stream_keys_to(self, spec, wh_cur, target):
        sql = f"SELECT {', '.join('`' + c + '`' for c in spec.key)} FROM `{spec.name}`"
        with wh_cur.copy(f"COPY {target} ({', '.join(spec.key)}) FROM STDIN") as inp:
            for row in self._rows(sql):
                inp.write_row(row)
        return wh_cur.rowcount

    def max_cursor(self, spec):
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT max(`{spec.cursor}`) FROM `{spec.name}`")
            value = cur.fetchone()[0]
            cur.fetchall()
        # Fineract's MySQL DATETIME columns hold UTC
        return value.replace(tzinfo=dt.timezone.utc) if value is not None else None

    def close(self) -> None:
        try:
            self.conn.rollback()
        finally:
            self.conn.close()


def _mysql_expr(column: str, raw_type: str) -> str:
    # bit(1) booleans (some Fineract versions) arrive as bytes: read them as numbers
    if raw_type == "boolean":
        return f"(`{column}` + 0) AS `{column}`"
    return f"`{column}`"


def open_source(info: ConnInfo) -> SourceSession:
    """A read-only snapshot session on the Fineract database named by `info`."""
    if info.dialect == "mysql":
        return _MySqlSource(info)
    return _PostgresSource(info)


def source_label(info: ConnInfo) -> str:
    return f"{info.conn_id}:{info.dialect}"


# --------------------------------------------------------------------------------------------
# schema checks


def check_source_schema(session: SourceSession, wh_conn: psycopg.Connection, run_id: str, source: str,
                        tables: tuple[TableSpec, ...] = TABLES) -> list[TableSpec]:
    """The specs present in the source; raises SourceSchemaError for anything required that is missing.

    Drift (a column added or removed since the last extraction, outside what we read) is logged
    and recorded in meta.schema_drift; it never stops the load.
    """
    found = session.columns()
    present: list[TableSpec] = []
    missing: list[str] = []
    for spec in tables:
        cols = found.get(spec.name)
        if cols is None:
            if spec.required:
                missing.append(f"table {spec.name} is missing")
            else:
                log.info("source has no %s (optional table): skipped", spec.name)
            continue
        for column in spec.column_names:
            if column not in cols:
                missing.append(f"column {spec.name}.{column} is missing")
        present.append(spec)
        load.record_source_columns(wh_conn, source, spec.name, cols, run_id)
    if missing:
        raise SourceSchemaError(
            "the Fineract source lacks what the warehouse needs: " + "; ".join(missing)
            + ". Check the mis_fineract connection (database/schema) and the Fineract version.")
    return present


# --------------------------------------------------------------------------------------------
# entry points


def extract_mis(source: ConnInfo, wh_conn: psycopg.Connection, run_id: str, as_of: dt.date,
                full_refresh: bool = False, reconcile: bool = False,
                reconcile_every_days: int | None = None,
                tables: tuple[TableSpec, ...] = TABLES) -> list[dict]:
    """Extract the Fineract source into raw_mis; returns the manifest rows written to meta.load_manifest.

    as_of is only recorded: the source is read as it is now (it is a replica of the MIS).
    full_refresh re-reads every row of every table (unchanged rows are still not rewritten).
    reconcile (or reconcile_every_days, when the last reconciliation is older) also runs
    `reconcile_keys` after the load, in the same source snapshot. reconcile_every_days
    defaults to the SPM_RECONCILE_EVERY_DAYS setting when settings.py defines it (0 = never).
    Each table is loaded in a transaction block of its own: given a connection with no transaction
    open (as the extract stage gives it), each table commits as it finishes, so a night that dies
    mid-extraction keeps what it loaded and its rerun merges the rest.
    """
    label = source_label(source)
    lookback = dt.timedelta(minutes=settings.get_int("SPM_EXTRACT_LOOKBACK_MINUTES"))
    if reconcile_every_days is None and "SPM_RECONCILE_EVERY_DAYS" in settings.SETTINGS:
        reconcile_every_days = settings.get_int("SPM_RECONCILE_EVERY_DAYS") or None  # 0: only on demand
    with wh_conn.transaction():
        meta.ensure_meta_schema(wh_conn)
    started_all = time.monotonic()
    session = open_source(source)
    manifest: list[dict] = []
    try:
        with wh_conn.transaction():
            present = check_source_schema(session, wh_conn, run_id, label, tables)
        absent = [spec for spec in tables if spec not in present]  # optional tables the source lacks
        with wh_conn.transaction():
            # every raw table exists, an absent optional one empty: dbt builds the same marts either way
            for spec in tables:
                load.ensure_raw_table(wh_conn, spec)
        for spec in present:
            manifest.append(_extract_table(session, wh_conn, spec, run_id, as_of, label, full_refresh, lookback))
        for spec in absent:
            manifest.append(_record_absent(wh_conn, spec, run_id, as_of, label))
        with wh_conn.transaction():
            due = bool(reconcile_every_days) and load.reconcile_due(wh_conn, reconcile_every_days, label)
        if reconcile or due:
            # A table this run read whole (first load, full refresh) has just had every key
            # compared: its deletes are marked already. Only the incrementally read ones need
            # the key scan; the others are recorded as reconciled so the N-day clock restarts.
            read_whole = {m["table_name"]: m for m in manifest if m["mode"] in ("initial", "full")}
            _reconcile(session, wh_conn, [s for s in present if s.cursor and s.name not in read_whole], run_id, label)
            with wh_conn.transaction(), wh_conn.cursor() as cur:
                for spec in present:
                    if spec.cursor and spec.name in read_whole:
                        rows = read_whole[spec.name]["rows_read"]
                        load.write_reconciliation(cur, run_id, label, spec.name, rows, rows,
                                                  read_whole[spec.name]["rows_deleted"], 0.0)
    finally:
        session.close()
    total_rows = sum(m["rows_read"] for m in manifest)
    seconds = time.monotonic() - started_all
    log.info("extract_mis %s: %d tables, %d rows read, %d merged in %.1fs (%.0f rows/s)", label, len(manifest),
             total_rows, sum(m["rows_merged"] for m in manifest), seconds, total_rows / seconds if seconds else 0)
    return manifest


def _extract_table(session: SourceSession, wh_conn: psycopg.Connection, spec: TableSpec, run_id: str,
                   as_of: dt.date, source: str, full_refresh: bool, lookback: dt.timedelta) -> dict:
    started_at = dt.datetime.now(dt.timezone.utc)
    t0 = time.monotonic()
    # One transaction per table: a night that dies mid-extraction keeps the tables it finished.
    with wh_conn.transaction(), wh_conn.cursor() as cur:
        watermark_from = None if (full_refresh or not spec.cursor) else load.read_watermark(wh_conn, spec.name)
        load.begin_load(cur, run_id)
        raw_empty = load.raw_is_empty(cur, spec)
        if raw_empty:
            watermark_from = None  # raw was emptied or recreated: a stale watermark must not skip rows
        since = watermark_from - lookback if watermark_from is not None else None
        mode = "incremental" if since is not None else ("full" if spec.cursor else "snapshot")
        if raw_empty:
            # first load: straight into raw, nothing to merge with
            mode = "initial"
            target = load.raw_name(spec)
            pkey = load.begin_initial_load(cur, spec)
            rows_read = session.stream_to(spec, None, cur, target)
            load.end_initial_load(cur, spec, pkey)
            rows_merged = rows_read
            rows_deleted = 0
        else:
            target = load.prepare_landing(cur, spec)
            rows_read = session.stream_to(spec, since, cur, target)
            rows_merged = load.merge_landing(cur, spec, run_id)
            # a table read whole shows its hard deletes for free
            rows_deleted = load.mark_deleted_from_landing(cur, spec, run_id) if since is None else 0
        if rows_merged or rows_deleted:
            # dbt reads these tables minutes later; without fresh statistics the
            # planner picks nested loops over "empty" tables (autovacuum is too late).
            cur.execute(f"ANALYZE {load.raw_name(spec)}")
        watermark_to = None
        if spec.cursor:
            seen = session.max_cursor(spec)
            # never move back: the lookback re-reads rows below the old watermark
            candidates = [w for w in (seen, watermark_from) if w is not None]
            watermark_to = max(candidates) if candidates else None
        seconds = time.monotonic() - t0
        row = {
            "run_id": run_id, "source": source, "table_name": spec.name, "mode": mode, "as_of": as_of,
            "watermark_from": watermark_from, "watermark_to": watermark_to, "rows_read": rows_read,
            "rows_merged": rows_merged, "rows_deleted": rows_deleted, "seconds": round(seconds, 3),
            "started_at": started_at,
        }
        if spec.cursor and watermark_to is not None:
            load.write_watermark(cur, spec.name, source, watermark_to, run_id)
        load.write_manifest(cur, row)
    log.info("%-34s %-11s read %9d  merged %9d  deleted %6d  %7.2fs  %9.0f rows/s", spec.name, mode, rows_read,
             rows_merged, rows_deleted, seconds, rows_read / seconds if seconds else 0)
    return row


def _record_absent(wh_conn: psycopg.Connection, spec: TableSpec, run_id: str, as_of: dt.date, source: str) -> dict:
    """A manifest row (mode "absent") for an optional table the source lacks, so the run report can say so."""
    row = {"run_id": run_id, "source": source, "table_name": spec.name, "mode": "absent", "as_of": as_of,
           "watermark_from": None, "watermark_to": None, "rows_read": 0, "rows_merged": 0, "rows_deleted": 0,
           "seconds": 0.0, "started_at": dt.datetime.now(dt.timezone.utc)}
    with wh_conn.transaction(), wh_conn.cursor() as cur:
        load.write_manifest(cur, row)
        earlier_rows = not load.raw_is_empty(cur, spec)
    if earlier_rows:
        log.warning("source has no %s (optional table): raw_mis.%s keeps the rows of earlier loads as they were",
                    spec.name, spec.name)
    return row


def _reconcile(session: SourceSession, wh_conn: psycopg.Connection, specs: list[TableSpec], run_id: str,
               source: str) -> dict[str, int]:
    marked: dict[str, int] = {}
    for spec in specs:
        t0 = time.monotonic()
        with wh_conn.transaction(), wh_conn.cursor() as cur:
            load.begin_load(cur, run_id)
            keys_table = load.prepare_keys_table(cur, spec)
            source_keys = session.stream_keys_to(spec, cur, keys_table)
            n, raw_keys = load.mark_deleted_by_keys(cur, spec, keys_table, run_id)
            seconds = time.monotonic() - t0
            load.write_reconciliation(cur, run_id, source, spec.name, source_keys, raw_keys, n, seconds)
        marked[spec.name] = n
        log.info("reconcile %-34s source keys %9d  raw keys %9d  marked deleted %6d  %.2fs", spec.name,
                 source_keys, raw_keys, n, seconds)
    return marked


def reconcile_keys(source: ConnInfo, wh_conn: psycopg.Connection, tables: list[str] | None = None,
                   run_id: str | None = None) -> dict[str, int]:
    """Compare source keys with raw_mis and mark rows deleted in the source as `_deleted = true`.

    On demand (maintenance DAG) or scheduled through extract_mis(reconcile_every_days=N). Tables
    read whole are reconciled at every extraction anyway; by default the incremental ones are
    compared here. Returns rows newly marked deleted per table (also in meta.reconciliations).
    """
    run_id = run_id or f"reconcile_{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}"
    label = source_label(source)
    with wh_conn.transaction():
        meta.ensure_meta_schema(wh_conn)
    if tables is None:
        specs = [t for t in TABLES if t.cursor]
    else:
        unknown = [t for t in tables if t not in TABLES_BY_NAME]
        if unknown:
            raise ValueError(f"unknown Fineract table(s): {', '.join(unknown)}")
        specs = [TABLES_BY_NAME[t] for t in tables]
    session = open_source(source)
    try:
        with wh_conn.transaction():
            present = check_source_schema(session, wh_conn, run_id, label, tuple(specs))
            for spec in present:
                load.ensure_raw_table(wh_conn, spec)
        return _reconcile(session, wh_conn, present, run_id, label)
    finally:
        session.close()
