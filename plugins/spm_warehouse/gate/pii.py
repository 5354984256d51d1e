"""Nothing in what BI reads carries personal data.

Why a gate check and not only a review: bi_reader sees every column of
analytics, and a new mart that carries a client name through a careless
`select *` would publish it. The build is scanned for column names that the
thresholds file forbids (names, phone, e-mail, birth date, national ids, GPS).
"""

from __future__ import annotations

import re

from spm_warehouse.gate.base import CheckContext, CheckResult, judged

KIND = "pii"


def run(ctx: CheckContext) -> list[CheckResult]:
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
