"""The shapes of Fineract databases that MFIs really run, made from a generated demo MIS.

Why: the extraction must be proven on more than the ideal current schema. Each
shape is a transformation of a current demo database (PostgreSQL, or its
MariaDB copy), so one seed gives the same business data in every shape and the
published marts can be compared:

- `current`: Fineract 1.9+ as generated.
- `partial`: an analytics replica without the optional tables.
- `upgraded`: a database upgraded to 1.8 and later 1.9: the audit columns that
  those releases added without backfill are NULL for rows older than the upgrade
  (created_on_utc of older rows, last_modified_on_utc of rows not modified since).
- `fineract16`: Fineract 1.6 (Mifos X 18.x-21.x): no audit column on clients,
  loans and savings; `created_date` on transactions and `created_date` /
  `lastmodified_date` on schedules, DATETIMEs in the JVM's time zone.
- `mis_surveys`: SPM data kept in the MIS (survey module, a datatable): see
  tools/demo/fineract_spm.py.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from spm_warehouse.sources.fineract_versions import AUDIT_COLUMNS, CREATED, CURSOR, LEGACY_DATETIMES

SHAPES = ("current", "partial", "upgraded", "fineract16", "mis_surveys")
OPTIONAL_TABLES = ("m_group", "m_group_client", "m_savings_product", "m_savings_account",
                   "m_loan_officer_assignment_history")
# Liquibase 0020_add_audit_entries (1.8) and 0033 / 0128_savings_audit (1.9)
AUDITED_IN_1_8 = ("m_client", "m_loan", "m_loan_transaction")
AUDITED_IN_1_9 = ("m_loan_repayment_schedule", "m_savings_account")
# the contract's audit columns, and the local DATETIMEs 1.6 keeps instead (the extraction's own names)
AUDIT = AUDIT_COLUMNS
# tables that 1.6 has with local DATETIMEs: table -> the contract columns they stand for
LEGACY_TABLES = {
    "m_loan_transaction": (CREATED,),
    "m_loan_repayment_schedule": (CREATED, CURSOR),
}


class ShapeError(LookupError):
    """An unknown shape or a setting the shape cannot honour; the message says which."""


def check_shape(shape: str) -> str:
    if shape not in SHAPES:
        raise ShapeError(f"unknown demo shape {shape!r}; choose one of: {', '.join(SHAPES)}")
    return shape


def upgrade_times(as_of: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """When the demo database was upgraded to 1.8 and to 1.9 (UTC): rows older than that hold NULL."""
    at_1_8 = dt.datetime.combine(as_of - dt.timedelta(days=240), dt.time(3, 0), dt.timezone.utc)
    return at_1_8, at_1_8 + dt.timedelta(days=90)


def _offset(zone: str) -> str:
    """A fixed UTC offset '+03:00' for MySQL's CONVERT_TZ (its named zones are often not loaded)."""
    tz = ZoneInfo(zone)
    offsets = {tz.utcoffset(dt.datetime(year, month, 1)) for year in range(2015, 2027) for month in (1, 7)}
    if len(offsets) != 1:
        raise ShapeError(f"the MariaDB fineract16 demo needs a zone without daylight saving time, not {zone!r}")
    minutes = int(offsets.pop().total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def statements(shape: str, dialect: str, existing: set[str], as_of: dt.date, legacy_zone: str = "UTC") -> list[str]:
    """The SQL that turns a current demo database into `shape` (dialect: postgresql | mysql).

    existing: the tables the database has (a statement for a missing table is left out).
    """
    check_shape(shape)
    q = (lambda n: f"`{n}`") if dialect == "mysql" else (lambda n: f'"{n}"')
    out: list[str] = []
    if shape == "partial":
        out += [f"DROP TABLE {q(t)}" for t in OPTIONAL_TABLES if t in existing]
    elif shape == "upgraded":
        at_1_8, at_1_9 = upgrade_times(as_of)
        for tables, at in ((AUDITED_IN_1_8, at_1_8), (AUDITED_IN_1_9, at_1_9)):
            literal = (f"'{at:%Y-%m-%d %H:%M:%S}'" if dialect == "mysql"
                       else f"timestamptz '{at.isoformat()}'")
            for t in tables:
                if t in existing:
                    for col in AUDIT:  # the upgrade added them nullable
                        out.append(f"ALTER TABLE {q(t)} MODIFY {q(col)} DATETIME(6) NULL" if dialect == "mysql"
                                   else f"ALTER TABLE {q(t)} ALTER COLUMN {q(col)} DROP NOT NULL")
                        out.append(f"UPDATE {q(t)} SET {q(col)} = NULL WHERE {q(col)} < {literal}")
    elif shape == "fineract16":
        for t in (*AUDITED_IN_1_8, *AUDITED_IN_1_9):
            if t not in existing:
                continue
            for contract in LEGACY_TABLES.get(t, ()):
                legacy = LEGACY_DATETIMES[contract]
                if dialect == "mysql":
                    out.append(f"ALTER TABLE {q(t)} ADD COLUMN {q(legacy)} DATETIME NULL")
                    out.append(f"UPDATE {q(t)} SET {q(legacy)} = "
                               f"CONVERT_TZ({q(contract)}, '+00:00', '{_offset(legacy_zone)}')")
                else:
                    out.append(f"ALTER TABLE {q(t)} ADD COLUMN {q(legacy)} timestamp(0)")
                    out.append(f"UPDATE {q(t)} SET {q(legacy)} = "
                               f"date_trunc('second', {q(contract)} AT TIME ZONE '{legacy_zone}')")
            drops = ", ".join(f"DROP COLUMN {q(c)}" for c in AUDIT)
            out.append(f"ALTER TABLE {q(t)} {drops}")
    return out


def apply_shape_postgres(conn, shape: str, as_of: dt.date, legacy_zone: str = "UTC") -> list[str]:
    """Turn the current demo database of a psycopg connection into `shape` (committed)."""
    existing = {r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}
    done = statements(shape, "postgresql", existing, as_of, legacy_zone)
    for stmt in done:
        conn.execute(stmt)
    conn.commit()
    return done


def apply_shape_mysql(conn, shape: str, as_of: dt.date, legacy_zone: str = "UTC") -> list[str]:
    """Turn the current demo database of a PyMySQL connection into `shape` (committed)."""
    with conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()")
        existing = {r[0] for r in cur.fetchall()}
        done = statements(shape, "mysql", existing, as_of, legacy_zone)
        for stmt in done:
            cur.execute(stmt)
    conn.commit()
    return done
