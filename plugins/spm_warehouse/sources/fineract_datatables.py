"""Fineract datatables (an MFI's own client and loan fields) landed as indicator values.

Why a module of its own: datatable names and columns differ per MFI, so they
cannot be part of the raw_mis contract (fineract_tables.TABLES). The seed
dbt_project/seeds/datatable_indicator_map.csv says which column of which
datatable is which indicator of seeds/indicator_catalogue.csv; an MFI adds a
field by adding a line there, with no code change.

What it promises:
- only the mapped columns (plus the entity key and the row id) are read:
  nothing else of a datatable, so no personal data reaches the warehouse
  unless someone maps it;
- every value lands as text in one long table, raw_mis.datatable_values
  (datatable, entity, entity_id, row_id, column_name, value_text); each
  extraction reads a datatable whole (datatables have no audit cursor) and
  merges it: new and changed values are written, values gone are deleted, and
  a rerun on an unchanged source writes nothing (manifest rows_read = datatable
  rows, rows_merged / rows_deleted = values);
- a datatable the source does not have is skipped with an "absent" manifest
  row (not every MFI has every datatable); a mapped column missing from a
  datatable that exists, a datatable registered (x_registered_table) for
  another entity, or a malformed map stops the load with DatatableError, one
  line naming datatable.column.

Entry point: `extract_datatables(session, wh_conn, run_id, as_of, source_label)`,
called by the MIS extraction with its open source session (the same snapshot).
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import psycopg

from spm_warehouse import load, paths

if TYPE_CHECKING:  # fineract.py may import this module: no import of it at run time (no import circle)
    from spm_warehouse.sources.fineract import SourceSession

log = logging.getLogger(__name__)

MAP_SEED = paths.DBT_PROJECT_DIR / "seeds" / "datatable_indicator_map.csv"
RAW_TABLE = "raw_mis.datatable_values"
# entity -> (Fineract application table, key column of its datatables)
ENTITIES = {"client": ("m_client", "client_id"), "loan": ("m_loan", "loan_id")}
VALUE_TYPES = ("numeric", "text")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_CHUNK = 5000


class DatatableError(RuntimeError):
    """A mapped datatable column the source lacks, or a malformed map; one line naming datatable.column."""


@dataclass(frozen=True)
class MappedColumn:
    datatable: str
    column_name: str
    entity: str
    indicator_code: str
    value_type: str


def read_map(path: Path = MAP_SEED) -> list[MappedColumn]:
    """The seed's rows, checked: identifiers only, a known entity and value type, one entity per datatable."""
    out: list[MappedColumn] = []
    with open(path, encoding="utf-8", newline="") as fh:
        for n, row in enumerate(csv.DictReader(fh), start=2):
            item = MappedColumn(*(str(row.get(k) or "").strip() for k in
                                  ("datatable", "column_name", "entity", "indicator_code", "value_type")))
            where = f"{path.name} line {n} ({item.datatable}.{item.column_name})"
            if not (_IDENT.match(item.datatable) and _IDENT.match(item.column_name)):
                raise DatatableError(f"{where}: datatable and column must be plain SQL names")
            if item.entity not in ENTITIES:
                raise DatatableError(f"{where}: entity must be one of {', '.join(ENTITIES)}, not {item.entity!r}")
            if item.value_type not in VALUE_TYPES:
                raise DatatableError(f"{where}: value_type must be numeric or text, not {item.value_type!r}")
            out.append(item)
    entities: dict[str, str] = {}
    for item in out:
        if entities.setdefault(item.datatable, item.entity) != item.entity:
            raise DatatableError(f"{path.name}: datatable {item.datatable} is mapped to both "
                                 f"{entities[item.datatable]} and {item.entity}")
    return out


def ensure_raw_table(wh_conn: psycopg.Connection) -> None:
    """raw_mis.datatable_values, the long landing table of every mapped datatable value (no commit)."""
    with wh_conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('spm_warehouse.raw_mis'))")
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {load.RAW_SCHEMA}")
        cur.execute(f"""CREATE TABLE IF NOT EXISTS {RAW_TABLE} (
            datatable text NOT NULL,
            entity text NOT NULL,
            entity_id bigint NOT NULL,
            row_id text NOT NULL,
            column_name text NOT NULL,
            value_text text,
            _extracted_at timestamptz NOT NULL DEFAULT now(),
            _run_id text DEFAULT current_setting('spm.run_id', true),
            PRIMARY KEY (datatable, row_id, column_name))""")


def _registered(session: "SourceSession") -> dict[str, str]:
    """datatable -> application table (m_client, m_loan, ...) as x_registered_table registers them."""
    sql = "SELECT registered_table_name, application_table_name FROM x_registered_table"
    rows = list(_stream(session, sql))
    return {str(r[0]): str(r[1]) for r in rows}


def _stream(session: "SourceSession", sql: str) -> Iterator[tuple]:
    """Rows of a SELECT in the session's snapshot, in chunks (PostgreSQL: a named cursor; MySQL: SSCursor)."""
    if session.dialect == "postgresql":
        with session.conn.cursor(name=f"spm_datatables_{time.monotonic_ns()}") as cur:
            cur.itersize = _CHUNK
            cur.execute(sql)
            yield from cur
    elif session.dialect == "mysql":
        with session.conn.cursor() as cur:
            cur.execute(sql)
            while True:
                rows = cur.fetchmany(_CHUNK)
                if not rows:
                    return
                yield from rows
    else:
        raise DatatableError(f"datatables: unsupported source dialect {session.dialect}")


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):  # bit(1) booleans of some MySQL schemas
        return str(int.from_bytes(value, "big"))
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, decimal.Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value)


def extract_datatables(session: "SourceSession", wh_conn: psycopg.Connection, run_id: str, as_of: dt.date,
                       source_label: str, map_path: Path = MAP_SEED) -> list[dict]:
    """Land the mapped datatable columns into raw_mis.datatable_values; returns one manifest row per datatable.

    Reads in the caller's source snapshot (`session`). Each datatable is merged in a transaction
    of its own (given a connection with no transaction open, each commits as it finishes), and its
    manifest row (table_name `datatable:<name>`, mode snapshot or absent) goes to meta.load_manifest.
    Raises DatatableError (one line, naming datatable.column) before writing anything when a mapped
    column is missing in a datatable the source has.
    """
    mapping = read_map(map_path)
    with wh_conn.transaction():
        ensure_raw_table(wh_conn)
    if not mapping:
        return []
    by_table: dict[str, list[MappedColumn]] = {}
    for item in mapping:
        by_table.setdefault(item.datatable, []).append(item)

    found = session.columns()
    registered = _registered(session) if "x_registered_table" in found else {}
    problems: list[str] = []
    plans: list[tuple[str, str, str, str, list[str]]] = []  # datatable, entity, key column, row id column, columns
    absent: list[str] = []
    for table, items in by_table.items():
        entity = items[0].entity
        app_table, key_col = ENTITIES[entity]
        source_cols = found.get(table)
        if source_cols is None:
            absent.append(table)
            continue
        if table in registered and registered[table] != app_table:
            problems.append(f"datatable {table} is registered for {registered[table]}, mapped as a {entity} "
                            f"datatable ({app_table})")
            continue
        if key_col not in source_cols:
            problems.append(f"column {table}.{key_col} is missing (a {entity} datatable needs it)")
            continue
        for item in items:
            if item.column_name not in source_cols:
                problems.append(f"column {table}.{item.column_name} is missing")
        row_id = "id" if "id" in source_cols else key_col  # multi-row datatables have an id, one-row ones do not
        plans.append((table, entity, key_col, row_id, [i.column_name for i in items]))
    if problems:
        raise DatatableError("mapped datatable columns the Fineract source lacks (seeds/datatable_indicator_map.csv): "
                             + "; ".join(problems))

    manifest: list[dict] = []
    for table, entity, key_col, row_id, columns in plans:
        manifest.append(_load_table(session, wh_conn, table, entity, key_col, row_id, columns, run_id, as_of,
                                    source_label))
    for table in absent:
        log.warning("datatable %s is mapped in datatable_indicator_map.csv but the source has no such table: skipped",
                    table)
        row = {"run_id": run_id, "source": source_label, "table_name": f"datatable:{table}", "mode": "absent",
               "as_of": as_of, "watermark_from": None, "watermark_to": None, "rows_read": 0, "rows_merged": 0,
               "rows_deleted": 0, "seconds": 0.0, "started_at": dt.datetime.now(dt.timezone.utc)}
        with wh_conn.transaction(), wh_conn.cursor() as cur:
            load.write_manifest(cur, row)
        manifest.append(row)
    return manifest


def _load_table(session: "SourceSession", wh_conn: psycopg.Connection, table: str, entity: str, key_col: str,
                row_id: str, columns: list[str], run_id: str, as_of: dt.date, source_label: str) -> dict:
    started_at = dt.datetime.now(dt.timezone.utc)
    t0 = time.monotonic()
    if session.dialect == "mysql":
        q = lambda c: f"`{c}`"  # noqa: E731
        relation = f"`{table}`"
    else:
        q = lambda c: f'"{c}"'  # noqa: E731
        relation = f'"{session.schema}"."{table}"'
    select = ", ".join(q(c) for c in [key_col, row_id, *columns])
    sql = f"SELECT {select} FROM {relation} WHERE {q(key_col)} IS NOT NULL"
    rows_read = 0
    with wh_conn.transaction(), wh_conn.cursor() as cur:
        load.begin_load(cur, run_id)
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS spm_datatable_landing (entity_id bigint, row_id text, "
                    "column_name text, value_text text) ON COMMIT DELETE ROWS")
        cur.execute("TRUNCATE spm_datatable_landing")
        with cur.copy("COPY spm_datatable_landing (entity_id, row_id, column_name, value_text) FROM STDIN") as inp:
            for row in _stream(session, sql):
                rows_read += 1
                entity_id, rid = row[0], _text(row[1])
                for column, value in zip(columns, row[2:]):
                    inp.write_row((int(entity_id), rid, column, _text(value)))
        # merge: a rerun on an unchanged datatable writes nothing (rows_merged 0, _extracted_at kept)
        cur.execute(f"""DELETE FROM {RAW_TABLE} r WHERE r.datatable = %s AND NOT EXISTS (
                            SELECT 1 FROM spm_datatable_landing l
                            WHERE l.row_id = r.row_id AND l.column_name = r.column_name)""", (table,))
        deleted_values = cur.rowcount
        cur.execute(f"""INSERT INTO {RAW_TABLE} AS r (datatable, entity, entity_id, row_id, column_name, value_text)
                        SELECT %s, %s, entity_id, row_id, column_name, value_text FROM spm_datatable_landing
                        ON CONFLICT (datatable, row_id, column_name) DO UPDATE
                        SET entity = EXCLUDED.entity, entity_id = EXCLUDED.entity_id, value_text = EXCLUDED.value_text,
                            _extracted_at = now(), _run_id = EXCLUDED._run_id
                        WHERE (r.entity, r.entity_id, r.value_text)
                              IS DISTINCT FROM (EXCLUDED.entity, EXCLUDED.entity_id, EXCLUDED.value_text)""",
                    (table, entity))
        merged_values = cur.rowcount
        seconds = time.monotonic() - t0
        manifest = {"run_id": run_id, "source": source_label, "table_name": f"datatable:{table}", "mode": "snapshot",
                    "as_of": as_of, "watermark_from": None, "watermark_to": None, "rows_read": rows_read,
                    "rows_merged": merged_values, "rows_deleted": deleted_values,
                    "seconds": round(seconds, 3), "started_at": started_at}
        load.write_manifest(cur, manifest)
    log.info("datatable %-26s snapshot    read %9d rows (%d mapped columns)  %7.2fs", table, rows_read,
             len(columns), seconds)
    return manifest
