"""Volume anomalies: tonight's build against what BI reads now.

Why: a broken extraction or join rarely produces an error; it produces a
portfolio that halves overnight. Managers would act on that number, so a
jump larger than a configured share blocks until a person has looked.

Measures (recorded in meta.gate_runs.metrics and, once published, in
meta.publications.metrics, which is the baseline of the next night):
- totals of kpi_branch_month at period_end = as_of_date: gross_loan_portfolio,
  active_clients, active_borrowers;
- the row count of every table of the build.
"""

from __future__ import annotations

from datetime import date

import psycopg
from psycopg import sql

from spm_warehouse.fact_versions import data_relations
from spm_warehouse.gate.base import CheckContext, CheckResult, column_names, judged, relation_exists

KIND = "volume"


def build_row_counts(conn: psycopg.Connection, schema: str) -> dict[str, int]:
    """count(*) of every table of a schema, and of its views of the versioned facts (other views are not data)."""
    names = data_relations(conn, schema)
    return {name: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))).fetchone()[0]
            for name in names}


def kpi_totals(conn: psycopg.Connection, schema: str, as_of, metrics: list[str]) -> dict[str, float | None]:
    """Sum of each metric column of kpi_branch_month at period_end = as_of (None: column or rows missing)."""
    if not relation_exists(conn, f"{schema}.kpi_branch_month"):
        return {m: None for m in metrics}
    present = column_names(conn, schema, "kpi_branch_month")
    out: dict[str, float | None] = {}
    for metric in metrics:
        if metric not in present:
            out[metric] = None
            continue
        value = conn.execute(
            sql.SQL("SELECT sum({}) , count(*) FROM {} WHERE period_end = %s").format(
                sql.Identifier(metric), sql.Identifier(schema, "kpi_branch_month")), (as_of,)).fetchone()
        out[metric] = None if value[1] == 0 else float(value[0] or 0)
    return out


def live_baseline(conn: psycopg.Connection) -> dict | None:
    """Metrics and row counts of the build BI reads now: the newest meta.publications row."""
    if not relation_exists(conn, "meta.publications"):
        return None
    row = conn.execute(
        """SELECT build_id, as_of_date, metrics, row_counts FROM meta.publications
           ORDER BY published_at DESC, publication_id DESC LIMIT 1""").fetchone()
    if row is None:
        return None
    return {"build_id": row[0], "as_of_date": row[1], "metrics": row[2] or {}, "row_counts": row[3] or {}}


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _fmt(value: float) -> str:
    """Counts without decimals, amounts with two."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _rel_change(new: float, old: float) -> float | None:
    if old == 0:
        return None if new == 0 else float("inf")
    return abs(new - old) / abs(old)


def run(ctx: CheckContext) -> list[CheckResult]:
    cfg = ctx.thresholds.get("volume", {})
    metric_cfg: dict = cfg.get("metrics", {}) or {}
    required: list[str] = list(cfg.get("required_tables", ["kpi_branch_month", "fct_portfolio_month"]))
    max_drop = float(cfg.get("max_row_count_drop", 0.5))
    max_days_apart = int(cfg.get("max_days_apart", 7))

    counts = build_row_counts(ctx.wh, ctx.build_schema)
    totals = kpi_totals(ctx.wh, ctx.build_schema, ctx.as_of, list(metric_cfg))
    ctx.facts["metrics"] = totals
    ctx.facts["row_counts"] = counts
    baseline = live_baseline(ctx.wh)
    out: list[CheckResult] = []

    # Required tables present and not empty.
    missing = [t for t in required if t not in counts]
    empty = [t for t in required if counts.get(t) == 0]
    parts = []
    if missing:
        parts.append("missing from the build: " + ", ".join(missing))
    if empty:
        parts.append("empty in the build: " + ", ".join(empty))
    out.append(judged(
        "volume.required_tables", KIND, not parts, True,
        {"missing": missing, "empty": empty, "row_counts": {t: counts.get(t) for t in required}},
        "; ".join(parts) or "every required table is built and has rows",
    ))

    # Row counts against the live build.
    if baseline is None:
        out.append(judged("volume.row_counts", KIND, True, True, {"row_counts": counts},
                          "nothing published yet: no baseline to compare row counts with"))
    else:
        old_counts = baseline["row_counts"]
        dropped = {}
        for table, old in sorted(old_counts.items()):
            new = counts.get(table)
            if new is None or not old:
                continue
            if new == 0 or (old - new) / old > max_drop:
                dropped[table] = {"published": old, "build": new}
        out.append(judged(
            "volume.row_counts", KIND, not dropped, True,
            {"dropped": dropped, "max_row_count_drop": max_drop, "baseline_build": baseline["build_id"]},
            ("tables that lost more than {:.0%} of their rows against build {}: ".format(max_drop, baseline["build_id"])
             + ", ".join(f"{t} {d['published']} -> {d['build']}" for t, d in dropped.items()))
            if dropped else f"no table lost more than {max_drop:.0%} of its rows",
        ))

    # KPI totals against the live build.
    for metric, mcfg in metric_cfg.items():
        mcfg = mcfg or {}
        limit = float(mcfg.get("max_relative_change", 0.2))
        blocking = bool(mcfg.get("blocking", True))
        name = f"volume.{metric}"
        new = totals.get(metric)
        if new is None:
            out.append(judged(name, KIND, False, blocking, {"as_of_date": ctx.as_of.isoformat()},
                              f"kpi_branch_month has no {metric} at period_end {ctx.as_of} in the build"))
            continue
        old = (baseline or {}).get("metrics", {}).get(metric)
        if baseline is None or old is None:
            out.append(judged(name, KIND, True, blocking, {"build": new},
                              f"{metric} {_fmt(new)}; nothing published to compare with"))
            continue
        days_apart = abs((ctx.as_of - _as_date(baseline["as_of_date"])).days)
        if days_apart > max_days_apart:
            out.append(judged(name, KIND, True, blocking,
                              {"build": new, "published": float(old), "days_apart": days_apart,
                               "max_days_apart": max_days_apart},
                              f"{metric} not compared: the published build is {days_apart} days apart "
                              f"(as of {baseline['as_of_date']}), more than {max_days_apart}"))
            continue
        old = float(old)
        change = _rel_change(new, old)
        ok = change is None or change <= limit
        numbers = {"build": new, "published": old, "relative_change": None if change in (None, float("inf"))
                   else round(change, 4), "max_relative_change": limit,
                   "baseline_build": baseline["build_id"], "baseline_as_of": str(baseline["as_of_date"])}
        shown = "from zero" if change == float("inf") else f"{(change or 0):.1%}"
        out.append(judged(
            name, KIND, ok, blocking, numbers,
            f"{metric} moved {shown} ({_fmt(old)} -> {_fmt(new)}) against the published build "
            f"{baseline['build_id']} (as of {baseline['as_of_date']}); allowed {limit:.0%}",
        ))
    return out
