"""Warehouse side of the MIS extraction: landing tables, merge into raw_mis, watermarks, manifests.

Why a landing table and a merge: an extraction reads rows that may already
be in raw (the lookback window re-reads the last hour, a full refresh
re-reads everything). Merging by primary key with "update only when
something differs" makes a rerun a true no-op: no row is rewritten, its
_extracted_at and _run_id stay those of the load that last changed it, and
the manifest says 0 rows merged.

Bookkeeping columns of every raw_mis table (contract):
_extracted_at (when this row version was merged), _run_id (the load that
merged it), _deleted (true once key reconciliation found the row gone from
the source; false again if it comes back), _row_hash (the source's hash of the
row's columns, computed by the source database, for tables compared by row hash:
see sources/fineract_versions.py; NULL elsewhere).
"""

from __future__ import annotations

import datetime as dt
import logging

import psycopg

from spm_warehouse.sources.fineract_tables import TableSpec

log = logging.getLogger(__name__)

RAW_SCHEMA = "raw_mis"
LANDING_SCHEMA = "landing"
BOOKKEEPING = (
    ("_extracted_at", "timestamptz NOT NULL DEFAULT now()"),
    # the load sets spm.run_id for its transaction (begin_load), so COPY straight into raw fills it
    ("_run_id", "text DEFAULT current_setting('spm.run_id', true)"),
    ("_deleted", "boolean NOT NULL DEFAULT false"),
    ("_row_hash", "bigint"),
)
ROW_HASH = "_row_hash"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def raw_name(spec: TableSpec) -> str:
    return f"{RAW_SCHEMA}.{_q(spec.name)}"


def landing_name(spec: TableSpec) -> str:
    return f"{LANDING_SCHEMA}.{_q(spec.name)}"


def keys_name(spec: TableSpec) -> str:
    return f"{LANDING_SCHEMA}.{_q(spec.name + '__keys')}"


# --------------------------------------------------------------------------------------------
# DDL


def ensure_raw_table(conn: psycopg.Connection, spec: TableSpec) -> None:
    """Create raw_mis.<table> per the contract, or add contract columns it lacks (no commit)."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('spm_warehouse.raw_mis'))")
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                    (RAW_SCHEMA, spec.name))
        existing = {r[0] for r in cur.fetchall()}
        if not existing:
            cols = [f"{_q(c)} {t}" for c, t in spec.columns] + [f"{c} {d}" for c, d in BOOKKEEPING]
            cols.append(f"PRIMARY KEY ({', '.join(_q(k) for k in spec.key)})")
            cur.execute(f"CREATE TABLE {raw_name(spec)} (\n  " + ",\n  ".join(cols) + "\n)")
            return
        for column, typ in list(spec.columns) + list(BOOKKEEPING):
            if column not in existing:
                log.info("raw_mis.%s: adding column %s %s (contract changed)", spec.name, column, typ)
                cur.execute(f"ALTER TABLE {raw_name(spec)} ADD COLUMN {_q(column)} {typ}")


def begin_load(cur: psycopg.Cursor, run_id: str) -> None:
    """Per-transaction load settings: the run id for defaults, UTC for naive timestamps (MySQL)."""
    cur.execute("SELECT set_config('spm.run_id', %s, true)", (run_id,))
    cur.execute("SET LOCAL TIME ZONE 'UTC'")
    # the merge and delete joins hash the whole landing table on a full refresh: keep them in memory
    cur.execute("SET LOCAL work_mem = '128MB'")


def raw_is_empty(cur: psycopg.Cursor, spec: TableSpec) -> bool:
    cur.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {raw_name(spec)})")
    return cur.fetchone()[0]


def begin_initial_load(cur: psycopg.Cursor, spec: TableSpec) -> str | None:
    """Before COPYing into an empty raw table: drop its primary key (rebuilt by end_initial_load).

    Building the index once after the load is cheaper than maintaining it row by row for
    millions of rows; the table is empty and locked by this transaction, nobody sees the gap.
    """
    cur.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
                (f"{RAW_SCHEMA}.{spec.name}",))
    row = cur.fetchone()
    if row is None:
        return None
    cur.execute(f"ALTER TABLE {raw_name(spec)} DROP CONSTRAINT {_q(row[0])}")
    return row[0]


def end_initial_load(cur: psycopg.Cursor, spec: TableSpec, constraint: str | None) -> None:
    """Put the primary key back; a source without a unique key fails here, naming the table."""
    if constraint is None:
        return
    try:
        cur.execute(f"ALTER TABLE {raw_name(spec)} ADD CONSTRAINT {_q(constraint)} "
                    f"PRIMARY KEY ({', '.join(_q(k) for k in spec.key)})")
    except psycopg.errors.UniqueViolation as exc:
        raise RuntimeError(f"source table {spec.name} has duplicate keys ({', '.join(spec.key)}): "
                           f"{exc.diag.message_detail or exc}") from exc


def prepare_landing(cur: psycopg.Cursor, spec: TableSpec, hashed: bool = False) -> str:
    """An empty unlogged landing table with the raw columns (recreated: the contract may have changed).

    hashed: with a _row_hash column, for tables whose rows carry the source's row hash.
    """
    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {LANDING_SCHEMA}")
    cur.execute(f"DROP TABLE IF EXISTS {landing_name(spec)}")
    cols = ", ".join([f"{_q(c)} {t}" for c, t in spec.columns] + ([f"{ROW_HASH} bigint"] if hashed else []))
    cur.execute(f"CREATE UNLOGGED TABLE {landing_name(spec)} ({cols})")
    return landing_name(spec)


def prepare_scratch(cur: psycopg.Cursor, spec: TableSpec, purpose: str, columns: str) -> str:
    """An empty unlogged work table landing.<table>__<purpose> (row-hash comparison)."""
    name = f"{LANDING_SCHEMA}.{_q(spec.name + '__' + purpose)}"
    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {LANDING_SCHEMA}")
    cur.execute(f"DROP TABLE IF EXISTS {name}")
    cur.execute(f"CREATE UNLOGGED TABLE {name} ({columns})")
    return name


def prepare_keys_table(cur: psycopg.Cursor, spec: TableSpec) -> str:
    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {LANDING_SCHEMA}")
    cur.execute(f"DROP TABLE IF EXISTS {keys_name(spec)}")
    cols = ", ".join(f"{_q(k)} bigint" for k in spec.key)
    cur.execute(f"CREATE UNLOGGED TABLE {keys_name(spec)} ({cols})")
    return keys_name(spec)


# --------------------------------------------------------------------------------------------
# merge and deletes


def merge_landing(cur: psycopg.Cursor, spec: TableSpec, run_id: str, hashed: bool = False) -> int:
    """Upsert landing into raw by primary key, touching only rows that differ; returns rows merged.

    Unchanged rows are filtered out by a join *before* the upsert: ON CONFLICT DO UPDATE locks
    (and so rewrites) every conflicting row even when its WHERE is false, which would make a
    full refresh of an unchanged table as expensive as reloading it.
    hashed: the landing rows carry _row_hash. A row whose data is unchanged but whose stored hash
    differs (first comparison after an upgrade) gets the hash without a new _extracted_at, so
    dbt's incremental models do not see it as changed.
    """
    cols = [_q(c) for c in spec.column_names]
    keys = [_q(k) for k in spec.key]
    non_keys = [c for c in cols if c not in keys]
    col_list = ", ".join(cols + ([ROW_HASH] if hashed else []))
    conflict = ", ".join(keys)
    join = " AND ".join(f"r.{k} = l.{k}" for k in keys)
    if non_keys:
        data_differs_r = f"({', '.join('r.' + c for c in non_keys)}, r._deleted) IS DISTINCT FROM "
        differs = data_differs_r + f"({', '.join('l.' + c for c in non_keys)}, false)"
        excluded_differs = data_differs_r + f"({', '.join('EXCLUDED.' + c for c in non_keys)}, false)"
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in non_keys)
        if hashed:
            differs = f"({differs} OR r.{ROW_HASH} IS DISTINCT FROM l.{ROW_HASH})"
            action = (f"DO UPDATE SET {updates}, {ROW_HASH} = EXCLUDED.{ROW_HASH}, "
                      f"_extracted_at = CASE WHEN {excluded_differs} THEN now() ELSE r._extracted_at END, "
                      f"_run_id = CASE WHEN {excluded_differs} THEN %(run_id)s ELSE r._run_id END, "
                      f"_deleted = false "
                      f"WHERE {excluded_differs} OR r.{ROW_HASH} IS DISTINCT FROM EXCLUDED.{ROW_HASH}")
        else:
            action = (f"DO UPDATE SET {updates}, _extracted_at = now(), _run_id = %(run_id)s, _deleted = false "
                      f"WHERE {excluded_differs}")
    else:  # key-only table (m_group_client): a returning row only needs un-deleting
        differs = "r._deleted"
        action = "DO UPDATE SET _extracted_at = now(), _run_id = %(run_id)s, _deleted = false WHERE r._deleted"
    cur.execute(f"ANALYZE {landing_name(spec)}")
    cur.execute(
        f"INSERT INTO {raw_name(spec)} AS r ({col_list}) "
        f"SELECT {', '.join('l.' + c for c in cols + ([ROW_HASH] if hashed else []))} FROM {landing_name(spec)} l "
        f"LEFT JOIN {raw_name(spec)} r ON {join} WHERE r.{keys[0]} IS NULL OR {differs} "
        f"ON CONFLICT ({conflict}) {action}", {"run_id": run_id})
    return cur.rowcount


def _key_match(left: str, right: str, spec: TableSpec) -> str:
    return " AND ".join(f"{left}.{_q(k)} = {right}.{_q(k)}" for k in spec.key)


def mark_deleted_from_landing(cur: psycopg.Cursor, spec: TableSpec, run_id: str) -> int:
    """After a whole-table read: raw rows absent from landing are deleted in the source."""
    cur.execute(f"ANALYZE {landing_name(spec)}")
    cur.execute(
        f"UPDATE {raw_name(spec)} r SET _deleted = true, _extracted_at = now(), _run_id = %s "
        f"WHERE NOT r._deleted AND NOT EXISTS (SELECT 1 FROM {landing_name(spec)} l "
        f"WHERE {_key_match('l', 'r', spec)})", (run_id,))
    return cur.rowcount


def mark_deleted_by_keys(cur: psycopg.Cursor, spec: TableSpec, keys_table: str, run_id: str) -> tuple[int, int]:
    """Raw rows whose key is not among the source keys are marked deleted; returns (marked, raw rows)."""
    cur.execute(f"ANALYZE {keys_table}")
    cur.execute(
        f"UPDATE {raw_name(spec)} r SET _deleted = true, _extracted_at = now(), _run_id = %s "
        f"WHERE NOT r._deleted AND NOT EXISTS (SELECT 1 FROM {keys_table} k WHERE {_key_match('k', 'r', spec)})",
        (run_id,))
    marked = cur.rowcount
    cur.execute(f"SELECT count(*) FROM {raw_name(spec)}")
    return marked, cur.fetchone()[0]


# --------------------------------------------------------------------------------------------
# row-hash comparison (tables without a usable audit column; see sources/fineract_versions.py)


def _partition(alias: str, null_column: str | None) -> str:
    """The raw rows a comparison covers: all live rows, or those whose audit column is NULL."""
    live = f"NOT {alias}._deleted"
    return f"{live} AND {alias}.{_q(null_column)} IS NULL" if null_column else live


def changed_buckets(cur: psycopg.Cursor, spec: TableSpec, source_buckets: str, bucket_keys: int,
                    null_column: str | None) -> list[int]:
    """Key ranges (key / bucket_keys) whose row count or hash sum differ between source and raw_mis.

    source_buckets holds the source's (b, n, s) per range. One integer per differing range comes
    back: at most the table's keys / bucket_keys, however many rows changed.
    """
    key = _q(spec.key[0])
    cur.execute(
        f"WITH raw AS (SELECT r.{key} / %(k)s AS b, count(*) AS n, sum(r.{ROW_HASH}) AS s, "
        f"count(r.{ROW_HASH}) AS hashed FROM {raw_name(spec)} r WHERE {_partition('r', null_column)} GROUP BY 1) "
        f"SELECT coalesce(src.b, raw.b) FROM {source_buckets} src FULL JOIN raw ON raw.b = src.b "
        f"WHERE src.b IS NULL OR raw.b IS NULL OR src.n <> raw.n OR src.s IS DISTINCT FROM raw.s "
        f"OR raw.hashed <> raw.n ORDER BY 1", {"k": bucket_keys})
    return [r[0] for r in cur.fetchall()]


def bucket_ranges(buckets: list[int], bucket_keys: int) -> list[tuple[int, int]]:
    """Adjacent buckets merged into key ranges [lo, hi): fewer, larger predicates for the source."""
    ranges: list[tuple[int, int]] = []
    for b in buckets:
        lo, hi = b * bucket_keys, (b + 1) * bucket_keys
        if ranges and ranges[-1][1] == lo:
            ranges[-1] = (ranges[-1][0], hi)
        else:
            ranges.append((lo, hi))
    return ranges


def keys_to_fetch(cur: psycopg.Cursor, spec: TableSpec, source_hashes: str, ranges: list[tuple[int, int]],
                  null_column: str | None) -> str:
    """landing.<t>__fetch: keys whose row the source must send again.

    A source key that raw lacks, holds deleted, or holds with another hash (changed); and a live
    raw key of a differing range that the source did not list (deleted in the source, or, for
    the NULL-audit rows of a cursor table, given an audit value: fetching it tells which).
    The differing ranges are a work table joined by key range, so raw is read through its
    primary key index, range by range, never scanned whole.
    """
    key = _q(spec.key[0])
    target = prepare_scratch(cur, spec, "fetch", f"{key} bigint PRIMARY KEY")
    bounds = prepare_scratch(cur, spec, "ranges", "lo bigint, hi bigint")
    with cur.copy(f"COPY {bounds} (lo, hi) FROM STDIN") as copy:
        for lo, hi in ranges:
            copy.write_row((lo, hi))
    cur.execute(f"ANALYZE {source_hashes}")
    cur.execute(f"ANALYZE {bounds}")
    cur.execute(
        f"INSERT INTO {target} ({key}) "
        f"SELECT h.{key} FROM {source_hashes} h LEFT JOIN {raw_name(spec)} r ON r.{key} = h.{key} "
        f"WHERE r.{key} IS NULL OR r._deleted OR r.{ROW_HASH} IS DISTINCT FROM h.h "
        f"UNION "
        f"SELECT r.{key} FROM {bounds} g JOIN {raw_name(spec)} r ON r.{key} >= g.lo AND r.{key} < g.hi "
        f"WHERE {_partition('r', null_column)} "
        f"AND NOT EXISTS (SELECT 1 FROM {source_hashes} h WHERE h.{key} = r.{key})")
    return target


def key_batches(cur: psycopg.Cursor, table: str, key: str, size: int):
    """The keys of a fetch table in ascending batches (keyset pages: bounded memory at any size)."""
    last = None
    while True:
        if last is None:
            cur.execute(f"SELECT {_q(key)} FROM {table} ORDER BY 1 LIMIT %s", (size,))
        else:
            cur.execute(f"SELECT {_q(key)} FROM {table} WHERE {_q(key)} > %s ORDER BY 1 LIMIT %s", (last, size))
        batch = [r[0] for r in cur.fetchall()]
        if not batch:
            return
        yield batch
        last = batch[-1]


def mark_deleted_unfetched(cur: psycopg.Cursor, spec: TableSpec, fetch_table: str, run_id: str) -> int:
    """Raw rows the source was asked for again and did not send are deleted in the source."""
    key = _q(spec.key[0])
    cur.execute(
        f"UPDATE {raw_name(spec)} r SET _deleted = true, _extracted_at = now(), _run_id = %s "
        f"FROM {fetch_table} f WHERE f.{key} = r.{key} AND NOT r._deleted "
        f"AND NOT EXISTS (SELECT 1 FROM {landing_name(spec)} l WHERE l.{key} = r.{key})", (run_id,))
    return cur.rowcount


# --------------------------------------------------------------------------------------------
# meta bookkeeping


def read_watermark(conn: psycopg.Connection, table: str) -> dt.datetime | None:
    row = conn.execute("SELECT watermark FROM meta.watermarks WHERE table_name = %s", (table,)).fetchone()
    return row[0] if row else None


def write_watermark(cur: psycopg.Cursor, table: str, source: str, watermark: dt.datetime, run_id: str) -> None:
    cur.execute(
        "INSERT INTO meta.watermarks (table_name, source, watermark, run_id, updated_at) "
        "VALUES (%s, %s, %s, %s, now()) ON CONFLICT (table_name) DO UPDATE SET source = EXCLUDED.source, "
        "watermark = EXCLUDED.watermark, run_id = EXCLUDED.run_id, updated_at = now()",
        (table, source, watermark, run_id))


def write_manifest(cur: psycopg.Cursor, row: dict) -> None:
    cur.execute(
        "INSERT INTO meta.load_manifest (run_id, source, table_name, mode, as_of, watermark_from, watermark_to, "
        "rows_read, rows_merged, rows_deleted, seconds, started_at, finished_at, rows_hashed, ranges_changed) "
        "VALUES (%(run_id)s, %(source)s, %(table_name)s, %(mode)s, %(as_of)s, %(watermark_from)s, "
        "%(watermark_to)s, %(rows_read)s, %(rows_merged)s, %(rows_deleted)s, %(seconds)s, %(started_at)s, now(), "
        "%(rows_hashed)s, %(ranges_changed)s)",
        {"rows_hashed": 0, "ranges_changed": 0, **row})


def record_source_columns(conn: psycopg.Connection, source: str, table: str, columns: dict[str, str],
                          run_id: str) -> list[tuple[str, str]]:
    """Remember the source table's columns; differences to the last extraction are drift.

    Returns [(column, 'added'|'removed')]. The first sighting of a table is the baseline, not drift.
    Drift is logged and recorded in meta.schema_drift; the extraction reads only its own columns,
    so an added column changes nothing and a removed unused one does not matter.
    """
    rows = conn.execute("SELECT column_name, data_type FROM meta.source_columns WHERE source = %s AND table_name = %s",
                        (source, table)).fetchall()
    known = dict(rows)
    drift: list[tuple[str, str]] = []
    if known:
        drift += [(c, "added") for c in columns if c not in known]
        drift += [(c, "removed") for c in known if c not in columns]
    with conn.cursor() as cur:
        for column, change in drift:
            dtype = columns.get(column) or known.get(column)
            log.warning("schema drift in source %s: column %s.%s %s (%s); the load ignores it",
                        source, table, column, change, dtype)
            cur.execute("INSERT INTO meta.schema_drift (run_id, source, table_name, column_name, change, data_type) "
                        "VALUES (%s, %s, %s, %s, %s, %s)", (run_id, source, table, column, change, dtype))
        cur.executemany(
            "INSERT INTO meta.source_columns (source, table_name, column_name, data_type) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (source, table_name, column_name) DO UPDATE SET data_type = EXCLUDED.data_type, "
            "last_seen_at = now()", [(source, table, c, t) for c, t in columns.items()])
        removed = [c for c, change in drift if change == "removed"]
        if removed:
            cur.execute("DELETE FROM meta.source_columns WHERE source = %s AND table_name = %s AND "
                        "column_name = ANY(%s)", (source, table, removed))
    return drift


def write_reconciliation(cur: psycopg.Cursor, run_id: str, source: str, table: str, source_keys: int,
                         raw_keys: int, marked: int, seconds: float) -> None:
    cur.execute("INSERT INTO meta.reconciliations (run_id, source, table_name, source_keys, raw_keys, "
                "marked_deleted, seconds) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (run_id, source, table, source_keys, raw_keys, marked, round(seconds, 3)))


def reconcile_due(conn: psycopg.Connection, every_days: int, source: str) -> bool:
    """True when the source's last key reconciliation is older than every_days (or never ran)."""
    row = conn.execute("SELECT max(reconciled_at) FROM meta.reconciliations WHERE source = %s",
                       (source,)).fetchone()
    last = row[0] if row else None
    return last is None or last < dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=every_days)
