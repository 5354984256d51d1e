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
from zoneinfo import ZoneInfo

import psycopg

from spm_warehouse import faults, load, meta, settings
from spm_warehouse.settings import ConnInfo
from spm_warehouse.sources import fineract_datatables
from spm_warehouse.sources.fineract_tables import TABLES, TABLES_BY_NAME, TableSpec
from spm_warehouse.sources.fineract_versions import (
    ColumnSource,
    SourceProfile,
    TablePlan,
    UnknownVersionError,
    detect_version,
    plan_table,
)

log = logging.getLogger(__name__)



class SourceSchemaError(RuntimeError):
    """The source lacks a table or column the warehouse needs; the message names them."""


class SourceUnavailable(RuntimeError):
    """The source went away (or timed out) while a table was read; the message names the table."""


# --------------------------------------------------------------------------------------------
# source sessions


class SourceSession:
    """A read-only, repeatable-read snapshot of the source for one extraction.

    Every read is built from a TablePlan (sources/fineract_versions.py): the contract columns
    as this version has them, and, for incremental tables, the row hash the source computes:
    a 60-bit prefix of the MD5 of the row's columns as text ('v' + value, or 'n' for NULL, so
    NULL and '' differ). Only the source computes it, so PostgreSQL and MySQL need not agree
    on the text of a value, only each with itself.
    """

    dialect = "?"

    def __init__(self) -> None:
        self.legacy_zone = settings.legacy_timezone()

    def columns(self) -> dict[str, dict[str, str]]:
        """table -> {column: data type} of every table in the source schema."""
        raise NotImplementedError

    # -- dialect pieces
    def q(self, ident: str) -> str:
        raise NotImplementedError

    def table(self, name: str) -> str:
        raise NotImplementedError

    def value_expr(self, col: ColumnSource, raw_type: str) -> str:
        raise NotImplementedError

    def row_hash_expr(self, plan: TablePlan) -> str:
        raise NotImplementedError

    def bucket_expr(self, plan: TablePlan, bucket_keys: int) -> str:
        raise NotImplementedError

    def copy_rows(self, sql: str, params: tuple, wh_cur: psycopg.Cursor, target: str, columns: list[str],
                  local_time: tuple[int, ...] = ()) -> int:
        """Stream the rows of `sql` into `target` (columns) with COPY; returns rows copied."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def broken(self) -> bool:
        """True when the source session can no longer be used (connection lost, statement timed out)."""
        raise NotImplementedError

    # -- reads, shared by both dialects
    def _select(self, plan: TablePlan) -> tuple[str, list[str], tuple[int, ...]]:
        types = dict(plan.spec.columns)
        exprs = [self.value_expr(c, types[c.name]) for c in plan.columns]
        names = [c.name for c in plan.columns]
        local = tuple(i for i, c in enumerate(plan.columns) if c.local_time and c.source is not None)
        if plan.hashed:
            h = self.row_hash_expr(plan)
            if plan.mode == "cursor":  # only the rows the cursor cannot see carry a hash
                h = f"CASE WHEN {self.q(plan.spec.cursor)} IS NULL THEN {h} END"
            exprs.append(h)
            names.append(load.ROW_HASH)
        return ", ".join(exprs), names, local

    def _null_only(self, plan: TablePlan) -> str:
        return f"{self.q(plan.spec.cursor)} IS NULL" if plan.mode == "cursor" else "1 = 1"

    def stream_to(self, plan: TablePlan, since: dt.datetime | None, wh_cur: psycopg.Cursor, target: str) -> int:
        """Copy the plan's rows into `target`: those with cursor > since, or all when since is None.

        Rows whose cursor is NULL (older than an upgrade to 1.8/1.9) are read on a first or full
        load; later nights compare them by row hash (compare_by_hash) instead of re-reading them.
        """
        select, names, local = self._select(plan)
        sql = f"SELECT {select} FROM {self.table(plan.name)}"
        params: tuple = ()
        if since is not None and plan.mode == "cursor":
            sql += f" WHERE {self.q(plan.spec.cursor)} > %s"
            params = (self.cursor_param(since),)
        return self.copy_rows(sql, params, wh_cur, target, names, local)

    def cursor_param(self, since: dt.datetime):
        return since

    def stream_buckets_to(self, plan: TablePlan, bucket_keys: int, wh_cur: psycopg.Cursor, target: str) -> int:
        """Per key range: row count and the sum of row hashes, computed in the source."""
        b = self.bucket_expr(plan, bucket_keys)
        sql = (f"SELECT {b} AS b, count(*) AS n, sum({self.row_hash_expr(plan)}) AS s "
               f"FROM {self.table(plan.name)} WHERE {self._null_only(plan)} GROUP BY {b}")
        return self.copy_rows(sql, (), wh_cur, target, ["b", "n", "s"])

    def stream_key_hashes_to(self, plan: TablePlan, ranges: list[tuple[int, int]], wh_cur: psycopg.Cursor,
                             target: str, batch: int = 200) -> int:
        """(key, row hash) of the rows in the given key ranges."""
        key = self.q(plan.key)
        total = 0
        for i in range(0, len(ranges), batch):
            where = " OR ".join(f"({key} >= {int(lo)} AND {key} < {int(hi)})" for lo, hi in ranges[i:i + batch])
            sql = (f"SELECT {self.key_expr(plan)}, {self.row_hash_expr(plan)} FROM {self.table(plan.name)} "
                   f"WHERE ({where}) AND {self._null_only(plan)}")
            total += self.copy_rows(sql, (), wh_cur, target, [plan.key, "h"])
        return total

    def key_expr(self, plan: TablePlan) -> str:
        return self.q(plan.key)

    def stream_keys_rows_to(self, plan: TablePlan, keys: list[int], wh_cur: psycopg.Cursor, target: str) -> int:
        """Whole rows (with their hash) of the given keys, whatever their cursor."""
        select, names, local = self._select(plan)
        in_list = ", ".join(str(int(k)) for k in keys)
        sql = f"SELECT {select} FROM {self.table(plan.name)} WHERE {self.q(plan.key)} IN ({in_list})"
        return self.copy_rows(sql, (), wh_cur, target, names, local)

    def stream_keys_to(self, spec: TableSpec, wh_cur: psycopg.Cursor, target: str) -> int:
        """Every key of the table (key reconciliation)."""
        cols = ", ".join(self.q(c) for c in spec.key)
        return self.copy_rows(f"SELECT {cols} FROM {self.table(spec.name)}", (), wh_cur, target, list(spec.key))

    def max_cursor(self, plan: TablePlan) -> dt.datetime | None:
        """Highest cursor value in the snapshot (NULLs ignored): the new watermark, read where the
        rows already are instead of scanning the freshly loaded warehouse table."""
        raise NotImplementedError


def _copy_fault_point(target: str) -> str:
    """extract.copy:<table> for a COPY into raw_mis/landing (faults.py), whatever the work table's suffix."""
    return "extract.copy:" + target.rsplit(".", 1)[-1].strip('"').split("__")[0]


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
        super().__init__()
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

    def q(self, ident: str) -> str:
        return '"' + ident.replace('"', '""') + '"'

    def table(self, name: str) -> str:
        return f"{self.q(self.schema)}.{self.q(name)}"

    def value_expr(self, col, raw_type):
        if col.source is None:
            return f"NULL::{raw_type}"
        if col.local_time:  # a timestamp without time zone in the JVM's zone
            zone = self.legacy_zone.replace("'", "''")
            return f"({self.q(col.source)}::timestamp AT TIME ZONE '{zone}')::{raw_type}"
        return f"{self.q(col.source)}::{raw_type}"

    def row_hash_expr(self, plan):
        text = ", ".join(f"coalesce('v' || {self.q(c)}::text, 'n')" for c in plan.source_columns)
        return f"('x' || substr(md5(concat_ws('|', {text})), 1, 15))::bit(60)::bigint"

    def bucket_expr(self, plan, bucket_keys):
        return f"({self.q(plan.key)}::bigint / {int(bucket_keys)})"

    def key_expr(self, plan):
        return f"{self.q(plan.key)}::bigint"

    def copy_rows(self, sql, params, wh_cur, target, columns, local_time=()):
        cols = ", ".join(f'"{c}"' for c in columns)
        fault = _copy_fault_point(target)
        with self.conn.cursor() as scur:
            with scur.copy(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)", params or None) as out, \
                    wh_cur.copy(f"COPY {target} ({cols}) FROM STDIN (FORMAT BINARY)") as inp:
                for chunk in out:
                    inp.write(chunk)
                    if fault:
                        faults.point(fault)
                        fault = None
        return wh_cur.rowcount

    def stream_buckets_to(self, plan, bucket_keys, wh_cur, target):
        # binary COPY: the types must be exactly the target's (bigint, bigint, numeric)
        b = self.bucket_expr(plan, bucket_keys)
        sql = (f"SELECT {b}, count(*)::bigint, sum({self.row_hash_expr(plan)})::numeric "
               f"FROM {self.table(plan.name)} WHERE {self._null_only(plan)} GROUP BY 1")
        return self.copy_rows(sql, (), wh_cur, target, ["b", "n", "s"])

    def stream_keys_to(self, spec, wh_cur, target):
        cols = ", ".join(f"{self.q(c)}::bigint" for c in spec.key)
        return self.copy_rows(f"SELECT {cols} FROM {self.table(spec.name)}", (), wh_cur, target, list(spec.key))

    def max_cursor(self, plan):
        return self.conn.execute(f"SELECT max({self.q(plan.spec.cursor)}) FROM {self.table(plan.name)}").fetchone()[0]

    def broken(self) -> bool:
        # a timed-out statement leaves the snapshot transaction aborted: unusable as well
        return self.conn.broken or self.conn.closed or \
            self.conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR

    def close(self) -> None:
        try:
            if not self.broken():
                self.conn.execute("ROLLBACK")  # read-only: nothing to keep
        finally:
            self.conn.close()


class _MySqlSource(SourceSession):
    """PyMySQL with an unbuffered (server-side) cursor, fetched in chunks into COPY text rows.

    Fineract's MySQL schema stores the *_on_utc columns as DATETIME in UTC and booleans as
    tinyint(1)/bit: the warehouse session runs in UTC and PostgreSQL reads 0/1 as booleans.
    Legacy DATETIMEs in the JVM's zone are given that zone in Python (MySQL's own zone
    tables are often not loaded).
    """

    dialect = "mysql"

    def __init__(self, info: ConnInfo):
        super().__init__()
        # the MySQL/MariaDB driver: only for Fineract on MySQL (optional dependency)
        import pymysql
        import pymysql.cursors

        self.conn = pymysql.connect(host=info.host or "127.0.0.1", port=info.port or 3306, user=info.login or None,
                                    password=info.password or "", database=info.schema, charset="utf8mb4",
                                    autocommit=False, cursorclass=pymysql.cursors.SSCursor)
        self.schema = info.schema
        self.zone = ZoneInfo(self.legacy_zone)
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

    def q(self, ident: str) -> str:
        return "`" + ident.replace("`", "``") + "`"

    def table(self, name: str) -> str:
        return self.q(name)

    def value_expr(self, col, raw_type):
        if col.source is None:
            return "NULL"
        # bit(1) booleans (some Fineract versions) arrive as bytes: read them as numbers
        if raw_type == "boolean":
            return f"({self.q(col.source)} + 0)"
        return self.q(col.source)

    def row_hash_expr(self, plan):
        types = {c.source: t for c, t in zip(plan.columns, (dict(plan.spec.columns)[c.name] for c in plan.columns))}
        parts = []
        for c in plan.source_columns:
            v = f"({self.q(c)} + 0)" if types.get(c) == "boolean" else self.q(c)
            parts.append(f"COALESCE(CONCAT('v', {v}), 'n')")
        return f"CAST(CONV(SUBSTRING(MD5(CONCAT_WS('|', {', '.join(parts)})), 1, 15), 16, 10) AS SIGNED)"

    def bucket_expr(self, plan, bucket_keys):
        return f"({self.q(plan.key)} DIV {int(bucket_keys)})"

    def cursor_param(self, since):
        return since.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def _rows(self, sql: str, params: tuple = ()) -> Iterator[tuple]:
        chunk = settings.get_int("SPM_EXTRACT_CHUNK_ROWS")
        with self.conn.cursor() as cur:
            cur.execute(sql, params or None)
            while True:
                rows = cur.fetchmany(chunk)
                if not rows:
                    return
                yield from rows

    def copy_rows(self, sql, params, wh_cur, target, columns, local_time=()):
        cols = ", ".join(f'"{c}"' for c in columns)
        zone = self.zone
        fault = _copy_fault_point(target)
        with wh_cur.copy(f"COPY {target} ({cols}) FROM STDIN") as inp:
            for row in self._rows(sql, params):
                if fault:
                    faults.point(fault)
                    fault = None
                if local_time:
                    row = list(row)
                    for i in local_time:
                        if row[i] is not None:
                            row[i] = row[i].replace(tzinfo=zone)
                inp.write_row(row)
        return wh_cur.rowcount

    def max_cursor(self, plan):
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT max({self.q(plan.spec.cursor)}) FROM {self.table(plan.name)}")
            value = cur.fetchone()[0]
            cur.fetchall()
        # Fineract's MySQL DATETIME columns hold UTC
        return value.replace(tzinfo=dt.timezone.utc) if value is not None else None

    def broken(self) -> bool:
        if not self.conn.open:
            return True
        try:
            self.conn.ping(reconnect=False)
        except Exception:  # noqa: BLE001 - any failure to answer a ping means the session is gone
            return True
        return False

    def close(self) -> None:
        try:
            if self.conn.open:
                self.conn.rollback()
        except Exception:  # noqa: BLE001 - a lost session has nothing to roll back
            pass
        finally:
            if self.conn.open:
                self.conn.close()


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
                        tables: tuple[TableSpec, ...] = TABLES) -> SourceProfile:
    """The source's version and a plan per present table; SourceSchemaError for anything required missing.

    The UTC audit columns may be missing (older versions): the table is then compared by row
    hash. Every other contract column must be there. Drift (a column added or removed since the
    last extraction, outside what we read) is logged and recorded in meta.schema_drift; it never
    stops the load.
    """
    found = session.columns()
    try:
        version = detect_version(found)
    except UnknownVersionError as exc:
        raise SourceSchemaError(str(exc)) from None
    plans: list[TablePlan] = []
    missing: list[str] = []
    for spec in tables:
        cols = found.get(spec.name)
        if cols is None:
            if spec.required:
                missing.append(f"table {spec.name} is missing")
            else:
                log.info("source has no %s (optional table): skipped", spec.name)
            continue
        plan, lacking = plan_table(spec, cols)
        missing += [f"column {spec.name}.{c} is missing" for c in lacking]
        plans.append(plan)
        load.record_source_columns(wh_conn, source, spec.name, cols, run_id)
    if missing:
        raise SourceSchemaError(
            "the Fineract source lacks what the warehouse needs: " + "; ".join(missing)
            + f". Check the mis_fineract connection (database/schema) and the Fineract version ({version}).")
    profile = SourceProfile(version, tuple(plans))
    meta.record_source_profile(wh_conn, run_id, source, profile.version, profile.modes())
    log.info("source %s: %s; %s", source, version,
             ", ".join(f"{m}: {' '.join(sorted(t for t, mm in profile.modes().items() if mm == m))}"
                       for m in ("cursor", "hash") if m in profile.modes().values()))
    return profile


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
            profile = check_source_schema(session, wh_conn, run_id, label, tables)
        present = {p.name for p in profile.plans}
        absent = [spec for spec in tables if spec.name not in present]  # optional tables the source lacks
        with wh_conn.transaction():
            # every raw table exists, an absent optional one empty: dbt builds the same marts either way
            for spec in tables:
                load.ensure_raw_table(wh_conn, spec)
        for plan in profile.plans:
            try:
                manifest.append(_extract_table(session, wh_conn, plan, run_id, as_of, label, full_refresh,
                                               lookback))
            except Exception as exc:
                if not (session.broken() or type(exc).__module__.startswith("pymysql")):
                    raise
                # one line naming the table; its transaction rolled back, so a retry merges it once
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise SourceUnavailable(
                    f"reading {plan.name} from {label} failed: {first}. Nothing of {plan.name} was merged; "
                    f"the tables before it are kept and a retry reads it again") from None
        for spec in absent:
            manifest.append(_record_absent(wh_conn, spec, run_id, as_of, label))
        # the MFI's own datatable fields mapped to indicators (seeds/datatable_indicator_map.csv), same snapshot
        manifest += fineract_datatables.extract_datatables(session, wh_conn, run_id, as_of, label)
        with wh_conn.transaction():
            due = bool(reconcile_every_days) and load.reconcile_due(wh_conn, reconcile_every_days, label)
        if reconcile or due:
            # A table this run read whole (first load, full refresh) or compared by row hash has
            # just had every key compared: its deletes are marked already. Only the cursor-read
            # ones need the key scan; the others are recorded as reconciled so the N-day clock restarts.
            done = {m["table_name"]: m for m in manifest if m["mode"] in ("initial", "full", "hash")}
            cursor_plans = [p for p in profile.plans if p.mode == "cursor"]
            _reconcile(session, wh_conn, [p.spec for p in cursor_plans if p.name not in done], run_id, label)
            with wh_conn.transaction(), wh_conn.cursor() as cur:
                for plan in profile.plans:
                    if plan.hashed and plan.name in done:
                        m = done[plan.name]
                        load.write_reconciliation(cur, run_id, label, plan.name, m["rows_read"], m["rows_read"],
                                                  m["rows_deleted"], 0.0)
    finally:
        session.close()
    total_rows = sum(m["rows_read"] for m in manifest)
    seconds = time.monotonic() - started_all
    log.info("extract_mis %s: %d tables, %d rows read, %d merged in %.1fs (%.0f rows/s)", label, len(manifest),
             total_rows, sum(m["rows_merged"] for m in manifest), seconds, total_rows / seconds if seconds else 0)
    return manifest


def _extract_table(session: SourceSession, wh_conn: psycopg.Connection, plan: TablePlan, run_id: str,
                   as_of: dt.date, source: str, full_refresh: bool, lookback: dt.timedelta) -> dict:
    spec = plan.spec
    started_at = dt.datetime.now(dt.timezone.utc)
    t0 = time.monotonic()
    hashed = plan.hashed
    compared = {"rows_hashed": 0, "ranges_changed": 0}
    # One transaction per table: a night that dies mid-extraction keeps the tables it finished.
    with wh_conn.transaction(), wh_conn.cursor() as cur:
        use_cursor = plan.mode == "cursor" and not full_refresh
        watermark_from = load.read_watermark(wh_conn, spec.name) if use_cursor else None
        load.begin_load(cur, run_id)
        raw_empty = load.raw_is_empty(cur, spec)
        if raw_empty:
            watermark_from = None  # raw was emptied or recreated: a stale watermark must not skip rows
        since = watermark_from - lookback if watermark_from is not None else None
        if raw_empty:
            # first load: straight into raw, nothing to merge with
            mode = "initial"
            target = load.raw_name(spec)
            pkey = load.begin_initial_load(cur, spec)
            rows_read = session.stream_to(plan, None, cur, target)
            load.end_initial_load(cur, spec, pkey)
            rows_merged, rows_deleted = rows_read, 0
        elif plan.mode == "hash" and not full_refresh:
            mode = "hash"
            rows_read, rows_merged, rows_deleted, compared = _compare_by_hash(session, cur, plan, run_id)
        else:
            mode = "incremental" if since is not None else ("full" if spec.cursor else "snapshot")
            target = load.prepare_landing(cur, spec, hashed)
            rows_read = session.stream_to(plan, since, cur, target)
            rows_merged = load.merge_landing(cur, spec, run_id, hashed)
            faults.point("extract.merge:" + spec.name)
            # a table read whole shows its hard deletes for free
            rows_deleted = load.mark_deleted_from_landing(cur, spec, run_id) if since is None else 0
            if since is not None:
                # rows older than an upgrade to 1.8/1.9 have no audit value: compare them by hash
                r, m, d, compared = _compare_by_hash(session, cur, plan, run_id)
                rows_read, rows_merged, rows_deleted = rows_read + r, rows_merged + m, rows_deleted + d
        if rows_merged or rows_deleted:
            # dbt reads these tables minutes later; without fresh statistics the
            # planner picks nested loops over "empty" tables (autovacuum is too late).
            cur.execute(f"ANALYZE {load.raw_name(spec)}")
        watermark_to = None
        if plan.mode == "cursor":
            seen = session.max_cursor(plan)
            # never move back: the lookback re-reads rows below the old watermark
            candidates = [w for w in (seen, watermark_from) if w is not None]
            watermark_to = max(candidates) if candidates else None
        seconds = time.monotonic() - t0
        row = {
            "run_id": run_id, "source": source, "table_name": spec.name, "mode": mode, "as_of": as_of,
            "watermark_from": watermark_from, "watermark_to": watermark_to, "rows_read": rows_read,
            "rows_merged": rows_merged, "rows_deleted": rows_deleted, "seconds": round(seconds, 3),
            "started_at": started_at, **compared,
        }
        if plan.mode == "cursor" and watermark_to is not None:
            load.write_watermark(cur, spec.name, source, watermark_to, run_id)
        load.write_manifest(cur, row)
    log.info("%-34s %-11s read %9d  merged %9d  deleted %6d  %7.2fs  %9.0f rows/s", spec.name, mode, rows_read,
             rows_merged, rows_deleted, seconds, rows_read / seconds if seconds else 0)
    return row


def _compare_by_hash(session: SourceSession, cur: psycopg.Cursor, plan: TablePlan,
                     run_id: str) -> tuple[int, int, int, dict]:
    """Find and merge the rows that changed since the last load, with no audit column to tell.

    1. The source sums its row hashes per key range (computed there: one row per range comes
       over the wire); the warehouse does the same over the hashes raw_mis stored.
    2. For the ranges that differ, the source sends (key, hash) pairs; the warehouse lists the
       keys whose hash differs, that it lacks, or that the source no longer lists.
    3. The source sends those rows whole, in key batches; they are merged, and a key asked for
       and not sent is deleted in the source.
    Memory stays bounded at any table size: every step streams, and the key list is paged.
    For a cursor table only the rows whose audit column is NULL take part.
    Returns (rows read, rows merged, rows deleted, comparison figures for the manifest).
    """
    spec = plan.spec
    bucket_keys = settings.get_int("SPM_HASH_BUCKET_KEYS")
    null_column = spec.cursor if plan.mode == "cursor" else None
    buckets = load.prepare_scratch(cur, spec, "buckets", "b bigint, n bigint, s numeric")
    session.stream_buckets_to(plan, bucket_keys, cur, buckets)
    cur.execute(f"SELECT coalesce(sum(n), 0) FROM {buckets}")
    hashed_rows = int(cur.fetchone()[0])
    changed = load.changed_buckets(cur, spec, buckets, bucket_keys, null_column)
    figures = {"rows_hashed": hashed_rows, "ranges_changed": len(changed)}
    if not changed:
        return 0, 0, 0, figures
    ranges = load.bucket_ranges(changed, bucket_keys)
    hashes = load.prepare_scratch(cur, spec, "hashes", f'"{plan.key}" bigint, h bigint')
    session.stream_key_hashes_to(plan, ranges, cur, hashes)
    fetch = load.keys_to_fetch(cur, spec, hashes, ranges, null_column)
    landing = load.prepare_landing(cur, spec, hashed=True)
    rows_read = 0
    with cur.connection.cursor() as kcur:
        for batch in load.key_batches(kcur, fetch, plan.key, 5000):
            rows_read += session.stream_keys_rows_to(plan, batch, cur, landing)
    merged = load.merge_landing(cur, spec, run_id, hashed=True)
    deleted = load.mark_deleted_unfetched(cur, spec, fetch, run_id)
    return rows_read, merged, deleted, figures


def _record_absent(wh_conn: psycopg.Connection, spec: TableSpec, run_id: str, as_of: dt.date, source: str) -> dict:
    """A manifest row (mode "absent") for an optional table the source lacks, so the run report can say so."""
    row = {"run_id": run_id, "source": source, "table_name": spec.name, "mode": "absent", "as_of": as_of,
           "watermark_from": None, "watermark_to": None, "rows_read": 0, "rows_merged": 0, "rows_deleted": 0,
           "seconds": 0.0, "started_at": dt.datetime.now(dt.timezone.utc), "rows_hashed": 0, "ranges_changed": 0}
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
            profile = check_source_schema(session, wh_conn, run_id, label, tuple(specs))
            for plan in profile.plans:
                load.ensure_raw_table(wh_conn, plan.spec)
        return _reconcile(session, wh_conn, [p.spec for p in profile.plans], run_id, label)
    finally:
        session.close()
