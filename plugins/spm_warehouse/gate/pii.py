"""Nothing in what BI reads carries personal data.

Why a gate check and not only a review: bi_reader sees every column of
analytics, and a new mart that carries a client name through a careless
`select *` would publish it. The build is scanned for column names that the
thresholds file forbids (names, phone, e-mail, birth date, national ids, GPS),
and account-number columns are compared by value with raw_mis's real account
numbers: analytics carries keyed pseudonyms, the real numbers live only in the
restricted schema (analytics_restricted), which bi_reader cannot read.
"""

from __future__ import annotations

import re

from psycopg import sql

from spm_warehouse.gate.base import CheckContext, CheckResult, column_names, judged, relation_exists

KIND = "pii"
# Where the real account numbers are (raw_mis keeps them: surveys are matched by them).
ACCOUNT_SOURCES = ("m_client", "m_loan", "m_savings_account")


def run(ctx: CheckContext) -> list[CheckResult]:
    return forbidden_columns(ctx) + account_numbers(ctx)


def account_numbers(ctx: CheckContext) -> list[CheckResult]:
    """No value of an account-number column of the build is a real account number of raw_mis.

    analytics publishes keyed pseudonyms (dbt macro account_pseudonym); a model that
    selects the real column, or a key that failed to apply, shows here by value.
    """
    cfg = ctx.thresholds.get("pii", {})
    patterns = [re.compile(p, re.IGNORECASE) for p in cfg.get("account_number_columns", [])]
    sources = [sql.SQL("SELECT account_no::text AS v FROM {}").format(sql.Identifier("raw_mis", t))
               for t in ACCOUNT_SOURCES
               if relation_exists(ctx.wh, f"raw_mis.{t}") and "account_no" in column_names(ctx.wh, "raw_mis", t)]
    rows = ctx.wh.execute(
        """SELECT c.relname, a.attname
           FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm')
             AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY 1, 2""",
        (ctx.build_schema,),
    ).fetchall()
    columns = [(t, c) for t, c in rows if any(p.fullmatch(c) for p in patterns)]
    found: dict[str, int] = {}
    if sources:
        real = sql.SQL(" UNION ").join(sources)
        for table, column in columns:
            n = ctx.wh.execute(sql.SQL(
                "SELECT count(*) FROM {rel} b WHERE b.{col}::text IN (SELECT v FROM ({real}) AS r WHERE v IS NOT NULL)"
            ).format(rel=sql.Identifier(ctx.build_schema, table), col=sql.Identifier(column), real=real)).fetchone()[0]
            if n:
                found[f"{table}.{column}"] = int(n)
    checked = [f"{t}.{c}" for t, c in columns]
    return [judged(
        "pii.account_numbers", KIND, not found, bool(cfg.get("blocking", True)),
        {"columns_checked": checked, "real_account_numbers_found": found,
         "compared_with": [t for t in ACCOUNT_SOURCES if relation_exists(ctx.wh, f"raw_mis.{t}")]},
        ("real account numbers in the build (they belong in the restricted schema): "
         + ", ".join(f"{k} ({v} rows)" for k, v in found.items())) if found
        else (f"no real account number in {', '.join(checked) or 'no account-number column'}"
              + ("" if sources else " (raw_mis holds no account numbers to compare with)")),
    )]


def forbidden_columns(ctx: CheckContext) -> list[CheckResult]:
    cfg = ctx.thresholds.get("pii", {})
    patterns = [re.compile(p, re.IGNORECASE) for p in cfg.get("forbidden_columns", [])]
    rows = ctx.wh.execute(
        """SELECT c.relname, a.attname
           FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
             AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY 1, 2""",
        (ctx.build_schema,),
    ).fetchall()
    leaked = [f"{table}.{column}" for table, column in rows if any(p.fullmatch(column) for p in patterns)]
    return [judged(
        "pii.forbidden_columns", KIND, not leaked, bool(cfg.get("blocking", True)),
        {"columns_scanned": len(rows), "forbidden_columns_found": leaked},
        ("personal data columns in the build: " + ", ".join(leaked)) if leaked
        else f"no forbidden column among {len(rows)} columns of {ctx.build_schema}",
    )]
