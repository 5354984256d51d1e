"""Which Fineract / Mifos X a source database is, told from its schema, and how to read each table.

Why: MFIs run every Fineract since 1.4 (Mifos X 18.x-21.x), mostly on MySQL/MariaDB,
and the versions differ exactly where incremental extraction looks:

- 1.9 and later: `created_on_utc` / `last_modified_on_utc` on clients, loans,
  transactions, schedules and savings accounts.
- 1.8: those columns on m_client, m_loan and m_loan_transaction only (Liquibase
  0020_add_audit_entries); schedules still have `created_date` / `lastmodified_date`.
- 1.4-1.7 (Mifos X 18.x-21.x): no UTC audit column on clients and loans;
  m_loan_transaction has `created_date` (written once) and the schedule
  `created_date` / `lastmodified_date`, DATETIMEs in the Fineract JVM's time zone.
- An upgraded database keeps NULL in the audit columns of every row older than
  the upgrade (the changelogs add them without backfill).

So each incremental table gets a plan: `cursor` (rows whose last_modified_on_utc
passed the watermark, plus a row-hash comparison of the rows whose audit column
is NULL) or `hash` (a row-hash comparison by key range, computed in the source,
against the hashes raw_mis holds). Reference tables are read whole (`snapshot`).
The contract's audit columns are filled from the legacy DATETIMEs where a version
has them (converted from SPM_MIS_LEGACY_TIMEZONE) and are NULL where it has none;
dbt treats a NULL created_on_utc as known at every as-of date.
"""

from __future__ import annotations

from dataclasses import dataclass

from spm_warehouse.sources.fineract_tables import CURSOR, TableSpec

CREATED = "created_on_utc"
AUDIT_COLUMNS = (CREATED, CURSOR)
# contract audit column -> the DATETIME that older versions keep instead (JVM local time)
LEGACY_DATETIMES = {CREATED: "created_date", CURSOR: "lastmodified_date"}

SUPPORTED = "Fineract 1.4-1.7 (Mifos X 18.x-21.x), 1.8, 1.9 and later"


class UnknownVersionError(RuntimeError):
    """The schema matches no Fineract version the extraction knows; the message names the tables."""


@dataclass(frozen=True)
class ColumnSource:
    """How one contract column is read from this source."""

    name: str                # contract column (raw_mis)
    source: str | None       # the source column, None: this version has none (loaded as NULL)
    local_time: bool = False  # a legacy DATETIME in the Fineract JVM's zone, converted to UTC


@dataclass(frozen=True)
class TablePlan:
    """How one table of the contract is extracted from this source."""

    spec: TableSpec
    mode: str                          # "cursor" | "hash" | "snapshot"
    columns: tuple[ColumnSource, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def hashed(self) -> bool:
        """Rows carry the source's row hash (_row_hash): all rows in hash mode, NULL-audit rows in cursor mode."""
        return self.mode in ("cursor", "hash")

    @property
    def key(self) -> str:
        if len(self.spec.key) != 1:
            raise ValueError(f"{self.name}: row-hash extraction needs a single integer key")
        return self.spec.key[0]

    @property
    def source_columns(self) -> list[str]:
        """The source columns the plan reads (what the row hash covers)."""
        return [c.source for c in self.columns if c.source is not None]


@dataclass(frozen=True)
class SourceProfile:
    version: str
    plans: tuple[TablePlan, ...]

    def modes(self) -> dict[str, str]:
        return {p.name: p.mode for p in self.plans}


def plan_table(spec: TableSpec, columns: dict[str, str]) -> tuple[TablePlan, list[str]]:
    """The plan for one present table, and the contract columns it lacks (errors)."""
    missing: list[str] = []
    sources: list[ColumnSource] = []
    for name in spec.column_names:
        if name in columns:
            sources.append(ColumnSource(name, name))
        elif spec.cursor and name in AUDIT_COLUMNS:
            legacy = LEGACY_DATETIMES[name]
            sources.append(ColumnSource(name, legacy, local_time=True) if legacy in columns
                           else ColumnSource(name, None))
        else:
            missing.append(name)
    if not spec.cursor:
        mode = "snapshot"
    elif spec.cursor in columns:
        mode = "cursor"
    else:
        mode = "hash"
    return TablePlan(spec, mode, tuple(sources)), missing


def detect_version(found: dict[str, dict[str, str]]) -> str:
    """The Fineract version a schema belongs to (a label for the run report), or UnknownVersionError."""
    def has(table: str, column: str) -> bool:
        return column in found.get(table, {})

    core = ("m_client", "m_loan", "m_loan_transaction")
    audited = [t for t in core if has(t, CURSOR)]
    if len(audited) == len(core):
        if has("m_loan_repayment_schedule", CURSOR):
            return "Fineract 1.9 or later"
        return "Fineract 1.8"
    if not audited and has("m_loan_transaction", "created_date"):
        return "Fineract 1.4-1.7 / Mifos X 18.x-21.x (no audit columns)"
    described = "; ".join(
        f"{t} has {', '.join(c for c in (*AUDIT_COLUMNS, 'created_date') if has(t, c)) or 'no audit column'}"
        for t in core)
    raise UnknownVersionError(
        f"unknown Fineract version: {described}. Supported: {SUPPORTED} (the warehouse tells them apart by "
        f"m_client/m_loan/m_loan_transaction.{CURSOR} and m_loan_transaction.created_date)")
