"""Reconciliation with the source MIS: the warehouse's numbers are Fineract's numbers.

Why three comparisons:
- `reconciliation.outstanding_raw`: the outstanding principal of every active
  loan (loan_status_id 300) recomputed from the extracted transactions with
  the KPI contract's rule must equal Fineract's own
  m_loan.principal_outstanding_derived as extracted. This is what catches a
  source (or an extraction) that lost transactions while m_loan's totals
  were kept: the ledger no longer adds up to the balance.
- `reconciliation.outstanding_mart`: the same, for the number BI will read:
  fct_portfolio_month.outstanding_principal at period_end = as_of_date in the
  build. Loans with transactions dated after the as-of date (backfills) are
  left out, because Fineract's balance already includes them.
- `reconciliation.source_counts`: client counts by status_enum, loan counts by
  loan_status_id and the active loans' principal_outstanding_derived in
  raw_mis equal the live source's. "At extraction time": rows whose
  last_modified_on_utc in the source is newer than the newest one extracted
  changed after the extraction and are left out of both sides. A source
  without that column (Fineract 1.4-1.7, read by row hash) cannot say what
  changed since: every row is compared, within the count tolerance.

The source is read-only and read in a streaming cursor; its rows go into a
temporary table in the warehouse via COPY, so memory stays bounded and the
comparison is one SQL query.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from decimal import Decimal
from typing import Iterator

import psycopg
from psycopg import sql

from spm_warehouse import settings
from spm_warehouse.gate.base import CheckContext, CheckResult, column_names, judged, relation_exists
from spm_warehouse.settings import ConnInfo

log = logging.getLogger(__name__)

KIND = "reconciliation"
ACTIVE = 300
EXAMPLES = 5

# The end of both comparisons below: over `cmp` (loan_id, mis_outstanding, wh_outstanding), how many
# loans differ by more than the tolerance, the totals, and the worst examples.
_MISMATCHES = """\
       count(*) FILTER (WHERE abs(wh_outstanding - mis_outstanding) > %(tol)s) AS mismatched_loans,
       coalesce(sum(mis_outstanding), 0) AS mis_total,
       coalesce(sum(wh_outstanding), 0) AS wh_total,
       coalesce(max(abs(wh_outstanding - mis_outstanding)), 0) AS max_abs_diff,
       (SELECT coalesce(json_agg(e), '[]') FROM (
            SELECT loan_id, mis_outstanding AS mis, wh_outstanding AS warehouse
            FROM cmp WHERE abs(wh_outstanding - mis_outstanding) > %(tol)s
            ORDER BY abs(wh_outstanding - mis_outstanding) DESC, loan_id LIMIT %(examples)s) e) AS examples
FROM cmp
"""

# The contract's outstanding principal per loan from raw transactions, with no
# date limit (i.e. at extraction time), for loans active in m_loan. Only the active
# loans' transactions are summed (a semi-join, through the raw loan_id index where the
# planner likes it): they are a small, young part of the ledger, so the check grows with
# the active book rather than with every transaction ever booked (20k clients: 2.6 s -> 1.0 s).
RAW_OUTSTANDING_SQL = """
WITH tx AS (
    SELECT t.loan_id,
           coalesce(sum(t.amount) FILTER (WHERE t.transaction_type_enum = 1), 0) AS disbursed,
           coalesce(sum(t.principal_portion_derived) FILTER (WHERE t.transaction_type_enum IN (2, 5)), 0) AS repaid,
           bool_or(t.transaction_type_enum = 6) AS written_off
    FROM raw_mis.m_loan_transaction t
    WHERE NOT coalesce(t.is_reversed, false) AND NOT t._deleted
      AND t.loan_id IN (SELECT a.id FROM raw_mis.m_loan a WHERE a.loan_status_id = %(active)s AND NOT a._deleted)
    GROUP BY t.loan_id
), cmp AS (
    SELECT l.id AS loan_id,
           coalesce(l.principal_outstanding_derived, 0) AS mis_outstanding,
           CASE WHEN l.writtenoffon_date IS NOT NULL OR coalesce(tx.written_off, false) THEN 0
                ELSE greatest(0, coalesce(tx.disbursed, 0) - coalesce(tx.repaid, 0)) END AS wh_outstanding
    FROM raw_mis.m_loan l
    LEFT JOIN tx ON tx.loan_id = l.id
    WHERE l.loan_status_id = %(active)s AND NOT l._deleted
)
SELECT count(*) AS active_loans,
""" + _MISMATCHES

# The mart's outstanding at as_of_date for active loans without later activity:
# no transaction dated after as_of_date or entered after the knowledge cutoff
# (end of the as-of day in the MIS time zone, as dbt's core_knowledge_cutoff),
# and the loan itself entered before the cutoff.
MART_OUTSTANDING_SQL = """
WITH later AS (
    SELECT DISTINCT loan_id FROM raw_mis.m_loan_transaction
    WHERE (transaction_date > %(as_of)s OR created_on_utc >= %(cutoff)s)
      AND NOT coalesce(is_reversed, false) AND NOT _deleted
    UNION
    SELECT id FROM raw_mis.m_loan WHERE created_on_utc >= %(cutoff)s
), mart AS (
    SELECT loan_id, sum(outstanding_principal) AS outstanding
    FROM {mart} WHERE period_end = %(as_of)s GROUP BY loan_id
), cmp AS (
    SELECT l.id AS loan_id,
           coalesce(l.principal_outstanding_derived, 0) AS mis_outstanding,
           coalesce(m.outstanding, 0) AS wh_outstanding
    FROM raw_mis.m_loan l
    LEFT JOIN mart m ON m.loan_id = l.id
    WHERE l.loan_status_id = %(active)s AND NOT l._deleted
      AND l.id NOT IN (SELECT loan_id FROM later)
)
SELECT count(*) AS active_loans_compared,
       (SELECT count(*) FROM raw_mis.m_loan l
         WHERE l.loan_status_id = %(active)s AND NOT l._deleted
           AND l.id IN (SELECT loan_id FROM later)) AS active_loans_skipped_later_activity,
""" + _MISMATCHES


def mis_timezone() -> str:
    """The MIS's time zone (SPM_MIS_TIMEZONE), which the build also uses for its knowledge cutoff."""
    return settings.get("SPM_MIS_TIMEZONE")


def _num(value) -> float | int:
    if isinstance(value, Decimal):
        return float(round(value, 6))
    return value


def run(ctx: CheckContext) -> list[CheckResult]:
    cfg = ctx.thresholds.get("reconciliation", {})
    blocking = bool(cfg.get("blocking", True))
    tol = float(cfg.get("outstanding_tolerance", 0.01))
    max_bad = int(cfg.get("max_mismatched_loans", 0))
    results = [_outstanding_raw(ctx, blocking, tol, max_bad), _outstanding_mart(ctx, blocking, tol, max_bad)]
    results.append(source_counts(ctx, blocking, tol, max_bad, int(cfg.get("count_tolerance", 0)),
                                 bool(cfg.get("block_when_source_unreachable", True))))
    return results


def _missing_raw(conn: psycopg.Connection) -> list[str]:
    return [t for t in ("raw_mis.m_loan", "raw_mis.m_loan_transaction", "raw_mis.m_client")
            if not relation_exists(conn, t)]


def _outstanding_raw(ctx: CheckContext, blocking: bool, tol: float, max_bad: int) -> CheckResult:
    name = "reconciliation.outstanding_raw"
    missing = _missing_raw(ctx.wh)
    if missing:
        return judged(name, KIND, False, blocking, {"missing_tables": missing},
                      "raw tables missing: " + ", ".join(missing))
    row = ctx.wh.execute(RAW_OUTSTANDING_SQL, {"active": ACTIVE, "tol": tol, "examples": EXAMPLES}).fetchone()
    numbers = _numbers(row, ("active_loans", "mismatched_loans", "mis_total", "wh_total", "max_abs_diff", "examples"))
    numbers.update({"tolerance": tol, "max_mismatched_loans": max_bad})
    ok = numbers["mismatched_loans"] <= max_bad
    message = (
        f"{numbers['mismatched_loans']} of {numbers['active_loans']} active loans: outstanding principal "
        f"recomputed from raw transactions differs from m_loan.principal_outstanding_derived by more than {tol} "
        f"(warehouse {numbers['wh_total']:.2f} vs MIS {numbers['mis_total']:.2f})"
    )
    return judged(name, KIND, ok, blocking, numbers, message)


def _outstanding_mart(ctx: CheckContext, blocking: bool, tol: float, max_bad: int) -> CheckResult:
    name = "reconciliation.outstanding_mart"
    mart = f"{ctx.build_schema}.fct_portfolio_month"
    missing = _missing_raw(ctx.wh) + ([mart] if not relation_exists(ctx.wh, mart) else [])
    if missing:
        return judged(name, KIND, False, blocking, {"missing_tables": missing},
                      "tables missing: " + ", ".join(missing))
    needed = {"loan_id", "period_end", "outstanding_principal"}
    lacking = needed - column_names(ctx.wh, ctx.build_schema, "fct_portfolio_month")
    if lacking:
        return judged(name, KIND, False, blocking, {"missing_columns": sorted(lacking)},
                      f"{mart} lacks contract columns: {', '.join(sorted(lacking))}")
    query = sql.SQL(MART_OUTSTANDING_SQL).format(
        mart=sql.Identifier(ctx.build_schema, "fct_portfolio_month"))
    cutoff = ctx.wh.execute("SELECT ((%s::date + 1)::timestamp AT TIME ZONE %s)",
                            (ctx.as_of, mis_timezone())).fetchone()[0]
    row = ctx.wh.execute(query, {"active": ACTIVE, "tol": tol, "examples": EXAMPLES, "as_of": ctx.as_of,
                                 "cutoff": cutoff}).fetchone()
    numbers = _numbers(row, ("active_loans_compared", "active_loans_skipped_later_activity", "mismatched_loans",
                             "mis_total", "wh_total", "max_abs_diff", "examples"))
    numbers.update({"tolerance": tol, "max_mismatched_loans": max_bad, "as_of_date": ctx.as_of.isoformat()})
    ok = numbers["mismatched_loans"] <= max_bad
    message = (
        f"{numbers['mismatched_loans']} of {numbers['active_loans_compared']} active loans: "
        f"fct_portfolio_month.outstanding_principal at {ctx.as_of} differs from "
        f"m_loan.principal_outstanding_derived by more than {tol} "
        f"(mart {numbers['wh_total']:.2f} vs MIS {numbers['mis_total']:.2f}; "
        f"{numbers['active_loans_skipped_later_activity']} loans with activity after the as-of date not compared)"
    )
    return judged(name, KIND, ok, blocking, numbers, message)


def _numbers(row, names) -> dict:
    return {n: _num(v) for n, v in zip(names, row)}


# --------------------------------------------------------------------------- the live source


def source_counts(ctx: CheckContext, blocking: bool, tol: float, max_bad: int, count_tol: int,
                  block_unreachable: bool) -> CheckResult:
    name = "reconciliation.source_counts"
    if ctx.mis is None:
        return judged(name, KIND, False, blocking and block_unreachable, {},
                      "no MIS connection configured (mis_fineract): source counts not compared")
    missing = _missing_raw(ctx.wh)
    if missing:
        return judged(name, KIND, False, blocking, {"missing_tables": missing},
                      "raw tables missing: " + ", ".join(missing))
    try:
        with ctx.wh.transaction():  # a savepoint: a failed read leaves the gate's transaction usable
            _load_source_snapshot(ctx.wh, ctx.mis)
    except SourceUnavailable as exc:
        return judged(name, KIND, False, blocking and block_unreachable, {"error": str(exc)},
                      f"source MIS not readable: {exc}")
    try:
        clients = _compare_counts(ctx.wh, "m_client", "status_enum", "spm_recon_client")
        loans = _compare_counts(ctx.wh, "m_loan", "loan_status_id", "spm_recon_loan")
        balances = _compare_source_balances(ctx.wh, tol)
    finally:
        ctx.wh.execute("DROP TABLE IF EXISTS pg_temp.spm_recon_client, pg_temp.spm_recon_loan")
    bad_clients = {s: d for s, d in clients["by_status"].items() if abs(d["raw"] - d["source"]) > count_tol}
    bad_loans = {s: d for s, d in loans["by_status"].items() if abs(d["raw"] - d["source"]) > count_tol}
    numbers = {
        "clients_by_status": clients["by_status"],
        "loans_by_status": loans["by_status"],
        "clients_changed_since_extraction": clients["changed_since"],
        "loans_changed_since_extraction": loans["changed_since"],
        "client_statuses_differing": sorted(bad_clients),
        "loan_statuses_differing": sorted(bad_loans),
        "active_loan_balances_differing": balances["mismatched"],
        "active_loans_compared": balances["compared"],
        "balance_examples": balances["examples"],
        "count_tolerance": count_tol,
        "tolerance": tol,
    }
    ok = not bad_clients and not bad_loans and balances["mismatched"] <= max_bad
    parts = []
    for label, bad in (("clients", bad_clients), ("loans", bad_loans)):
        for status, d in sorted(bad.items()):
            parts.append(f"{label} with status {status}: raw {d['raw']} vs source {d['source']}")
    if balances["mismatched"] > max_bad:
        parts.append(f"{balances['mismatched']} of {balances['compared']} active loans' "
                     f"principal_outstanding_derived differ between raw_mis and the source")
    message = "; ".join(parts) if parts else (
        f"raw_mis matches the source: {sum(d['source'] for d in clients['by_status'].values())} clients, "
        f"{sum(d['source'] for d in loans['by_status'].values())} loans, "
        f"{balances['compared']} active loan balances")
    return judged(name, KIND, ok, blocking, numbers, message)


class SourceUnavailable(RuntimeError):
    """The MIS could not be read; the message says why (never with a password)."""


SOURCE_QUERIES = {
    "spm_recon_client": "SELECT id, status_enum, NULL, last_modified_on_utc FROM m_client",
    "spm_recon_loan": "SELECT id, loan_status_id, principal_outstanding_derived, last_modified_on_utc FROM m_loan",
}


def _source_queries(wh: psycopg.Connection) -> dict[str, str]:
    """SOURCE_QUERIES as this source's version allows: no last_modified_on_utc where the extraction found none."""
    modes: dict = {}
    if relation_exists(wh, "meta.source_profiles"):
        row = wh.execute("SELECT table_modes FROM meta.source_profiles ORDER BY detected_at DESC, id DESC "
                         "LIMIT 1").fetchone()
        modes = row[0] if row else {}
    queries = dict(SOURCE_QUERIES)
    for temp, table in (("spm_recon_client", "m_client"), ("spm_recon_loan", "m_loan")):
        if modes.get(table) == "hash":
            queries[temp] = queries[temp].replace("last_modified_on_utc FROM", "NULL FROM")
    return queries


def _load_source_snapshot(wh: psycopg.Connection, mis: ConnInfo) -> None:
    """COPY (id, status, outstanding, last_modified) of m_client and m_loan into temp tables."""
    queries = _source_queries(wh)
    for table in SOURCE_QUERIES:
        wh.execute(f"DROP TABLE IF EXISTS pg_temp.{table}")
        wh.execute(f"CREATE TEMP TABLE {table} (id bigint, status int, outstanding numeric(19,6), lm timestamptz)")
    with wh.cursor() as cur:
        for table, query in queries.items():
            with cur.copy(f"COPY pg_temp.{table} (id, status, outstanding, lm) FROM STDIN") as copy:
                for row in _stream_source(mis, query):
                    copy.write_row(row)
    wh.execute("ANALYZE pg_temp.spm_recon_client")
    wh.execute("ANALYZE pg_temp.spm_recon_loan")


def _as_utc(value):
    """MySQL datetime(6) columns hold UTC without a zone; PostgreSQL gives aware values."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _stream_source(mis: ConnInfo, query: str) -> Iterator[tuple]:
    timeout_s = settings.get_int("SPM_SOURCE_STATEMENT_TIMEOUT_S")
    chunk = settings.get_int("SPM_EXTRACT_CHUNK_ROWS")
    try:
        if mis.dialect == "mysql":
            # the MySQL/MariaDB driver: only for Fineract on MySQL (optional dependency)
            import pymysql
            import pymysql.cursors

            conn = pymysql.connect(host=mis.host or "127.0.0.1", port=mis.port or 3306, user=mis.login,
                                   password=mis.password, database=mis.schema, charset="utf8mb4",
                                   cursorclass=pymysql.cursors.SSCursor, connect_timeout=30,
                                   read_timeout=timeout_s)
            try:
                with conn.cursor() as cur:
                    cur.execute("SET SESSION TRANSACTION READ ONLY")
                    cur.execute("START TRANSACTION READ ONLY")
                    cur.execute(query)
                    for row in cur:
                        yield (row[0], row[1], row[2], _as_utc(row[3]))
                conn.rollback()
            finally:
                conn.close()
        else:
            with psycopg.connect(mis.libpq_url(), application_name="spm_warehouse_gate", connect_timeout=30) as conn:
                conn.read_only = True
                conn.execute(f"SET statement_timeout = {int(timeout_s) * 1000}")
                with conn.cursor(name="spm_recon") as cur:
                    cur.itersize = chunk
                    cur.execute(query)
                    for row in cur:
                        yield row
                conn.rollback()
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable, psycopg.errors.InsufficientPrivilege) as exc:
        raise SourceUnavailable(f"{mis.conn_id} ({mis.dialect} {mis.host}:{mis.port}/{mis.schema}): "
                                f"{str(exc).strip().splitlines()[0]}") from None
    except Exception as exc:  # noqa: BLE001 - PyMySQL errors: we only need a clear message
        if type(exc).__module__.startswith("pymysql"):
            raise SourceUnavailable(f"{mis.conn_id} (mysql {mis.host}:{mis.port}/{mis.schema}): {exc}") from None
        raise


def _compare_counts(wh: psycopg.Connection, raw_table: str, status_col: str, src_table: str) -> dict:
    """Counts by status on both sides, leaving out rows the source changed after the extraction."""
    cutoff = wh.execute(f"SELECT max(last_modified_on_utc) FROM raw_mis.{raw_table}").fetchone()[0]
    rows = wh.execute(
        f"""
        WITH changed AS (
            SELECT id FROM pg_temp.{src_table} WHERE %(cutoff)s::timestamptz IS NOT NULL AND lm > %(cutoff)s
        ), src AS (
            SELECT status, count(*) AS n FROM pg_temp.{src_table}
            WHERE id NOT IN (SELECT id FROM changed) GROUP BY status
        ), raw AS (
            SELECT {status_col} AS status, count(*) AS n FROM raw_mis.{raw_table} r
            WHERE NOT r._deleted AND r.id NOT IN (SELECT id FROM changed) GROUP BY 1
        )
        SELECT coalesce(src.status, raw.status), coalesce(src.n, 0), coalesce(raw.n, 0),
               (SELECT count(*) FROM changed)
        FROM src FULL JOIN raw ON raw.status = src.status ORDER BY 1
        """,
        {"cutoff": cutoff},
    ).fetchall()
    by_status = {str(status): {"source": int(n_src), "raw": int(n_raw)} for status, n_src, n_raw, _ in rows}
    changed = int(rows[0][3]) if rows else 0
    return {"by_status": by_status, "changed_since": changed}


def _compare_source_balances(wh: psycopg.Connection, tol: float) -> dict:
    cutoff = wh.execute("SELECT max(last_modified_on_utc) FROM raw_mis.m_loan").fetchone()[0]
    row = wh.execute(
        """
        WITH cmp AS (
            SELECT s.id AS loan_id, coalesce(s.outstanding, 0) AS source, coalesce(r.principal_outstanding_derived, 0) AS raw
            FROM pg_temp.spm_recon_loan s
            JOIN raw_mis.m_loan r ON r.id = s.id AND NOT r._deleted
            WHERE s.status = %(active)s AND r.loan_status_id = %(active)s
              AND (%(cutoff)s::timestamptz IS NULL OR s.lm IS NULL OR s.lm <= %(cutoff)s)
        )
        SELECT count(*), count(*) FILTER (WHERE abs(source - raw) > %(tol)s),
               (SELECT coalesce(json_agg(e), '[]') FROM (
                    SELECT loan_id, source, raw FROM cmp WHERE abs(source - raw) > %(tol)s
                    ORDER BY abs(source - raw) DESC, loan_id LIMIT %(examples)s) e)
        FROM cmp
        """,
        {"active": ACTIVE, "cutoff": cutoff, "tol": tol, "examples": EXAMPLES},
    ).fetchone()
    return {"compared": int(row[0]), "mismatched": int(row[1]), "examples": row[2]}
