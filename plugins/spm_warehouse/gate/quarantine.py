"""Quarantine: row-level problems are set aside; the night stops only when a source is mostly bad.

Two producers write to meta.quarantine (source, source_key, reason, run_id, payload):
- loaders, at load time (e.g. an extracted row with an impossible value);
- dbt: every model in the intermediate schema named int_<area>__quarantine
  with columns (source, source_key, reason, ...) - e.g. int_surveys__quarantine
  (a survey for an unknown client, a PPI answer not in the scorecard). dbt
  re-derives those from the whole population each night, so this check
  replaces this run's copy of them (idempotent on rerun) before judging.

The share of a source = its rows quarantined in this run / the rows of that
source this night judged:
- kobo:<asset>: current submissions of that form (int_surveys__submissions,
  else raw_kobo.submissions);
- fineract:m_survey_scorecards (int_mis_surveys__quarantine): the PPI submissions of the MIS
  survey module (int_mis_surveys__submissions);
- any other source: the raw_mis table named by the source's last part
  ("fineract:m_loan_transaction", "raw_mis.m_loan_transaction" and
  "m_loan_transaction" all name raw_mis.m_loan_transaction).
Thresholds per source are glob patterns in gate/thresholds.yml (quarantine.sources).
"""

from __future__ import annotations

import fnmatch
import json
import re

import psycopg
from psycopg import sql

from spm_warehouse.gate.base import CheckContext, CheckResult, column_names, judged, relation_exists

KIND = "quarantine"
DBT_SCHEMA = "intermediate"
DBT_MODEL_PATTERN = re.compile(r"^int_[a-z0-9_]+__quarantine$")
NEEDED = {"source", "source_key", "reason"}
MIS_SURVEYS_SOURCE = "fineract:m_survey_scorecards"  # int_mis_surveys__quarantine
PAYLOAD_COLUMNS = ("reason_code", "kobo_id", "instance_id", "asset_uid", "loaded_at", "submission_time",
                   "channel", "survey_id", "client_id")  # the last three: MIS survey module only


def dbt_quarantine_models(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relkind IN ('r', 'v', 'm', 'p') ORDER BY 1""", (DBT_SCHEMA,)).fetchall()
    return [r[0] for r in rows if DBT_MODEL_PATTERN.match(r[0])
            and NEEDED <= column_names(conn, DBT_SCHEMA, r[0])]


def copy_dbt_quarantine(conn: psycopg.Connection, run_id: str) -> dict[str, int]:
    """Replace this run's dbt-derived quarantine rows with the models' current rows; returns rows per model."""
    copied: dict[str, int] = {}
    for model in dbt_quarantine_models(conn):
        cols = column_names(conn, DBT_SCHEMA, model)
        payload_cols = [c for c in PAYLOAD_COLUMNS if c in cols]
        payload = sql.SQL("jsonb_strip_nulls(jsonb_build_object({}))").format(sql.SQL(", ").join(
            sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier(c)) for c in payload_cols
        )) if payload_cols else sql.SQL("'{}'::jsonb")
        origin = f"dbt:{model}"
        conn.execute("DELETE FROM meta.quarantine WHERE run_id = %s AND payload ->> 'origin' = %s", (run_id, origin))
        cur = conn.execute(
            sql.SQL("""INSERT INTO meta.quarantine (source, source_key, reason, run_id, payload)
                       SELECT source, source_key, reason, %s, {} || jsonb_build_object('origin', %s::text)
                       FROM {}""").format(payload, sql.Identifier(DBT_SCHEMA, model)),
            (run_id, origin))
        copied[model] = cur.rowcount
    return copied


def _population(conn: psycopg.Connection, source: str, kobo_counts: dict[str, int] | None) -> int | None:
    """How many rows of `source` this night judged (None when we cannot tell)."""
    if source.startswith("kobo:"):
        return (kobo_counts or {}).get(source)
    if source == MIS_SURVEYS_SOURCE and relation_exists(conn, f"{DBT_SCHEMA}.int_mis_surveys__submissions"):
        # the MIS survey module's quarantine is per submission (many answer rows each): judge it on the
        # PPI submissions, not on the raw rows
        return conn.execute(f"SELECT count(*) FROM {DBT_SCHEMA}.int_mis_surveys__submissions "
                            "WHERE is_ppi_survey").fetchone()[0]
    table = re.split(r"[:.]", source)[-1]
    if not re.fullmatch(r"[a-z0-9_]+", table) or not relation_exists(conn, f"raw_mis.{table}"):
        return None
    deleted = "_deleted" in column_names(conn, "raw_mis", table)
    query = sql.SQL("SELECT count(*) FROM {}" + (" WHERE NOT _deleted" if deleted else "")).format(
        sql.Identifier("raw_mis", table))
    return conn.execute(query).fetchone()[0]


def _kobo_counts(conn: psycopg.Connection) -> dict[str, int]:
    if relation_exists(conn, f"{DBT_SCHEMA}.int_surveys__submissions") and \
            "asset_uid" in column_names(conn, DBT_SCHEMA, "int_surveys__submissions"):
        rows = conn.execute(
            f"""SELECT 'kobo:' || coalesce(asset_uid, 'unknown_form'), count(*)
                FROM {DBT_SCHEMA}.int_surveys__submissions GROUP BY 1""").fetchall()
    elif relation_exists(conn, "raw_kobo.submissions"):
        rows = conn.execute(
            """SELECT 'kobo:' || coalesce(asset_uid, 'unknown_form'), count(DISTINCT coalesce(instance_id, content_hash))
               FROM raw_kobo.submissions GROUP BY 1""").fetchall()
    else:
        rows = []
    return {k: int(v) for k, v in rows}


def _threshold(cfg: dict, source: str) -> float:
    for pattern, spec in (cfg.get("sources") or {}).items():
        if fnmatch.fnmatchcase(source, pattern):
            return float((spec or {}).get("max_share", cfg.get("default_max_share", 0.02)))
    return float(cfg.get("default_max_share", 0.02))


def run(ctx: CheckContext) -> list[CheckResult]:
    cfg = ctx.thresholds.get("quarantine", {}) or {}
    blocking = bool(cfg.get("blocking", True))
    min_rows = int(cfg.get("min_rows_for_share", 50))
    if not relation_exists(ctx.wh, "meta.quarantine"):
        return [judged("quarantine.shares", KIND, False, blocking, {},
                       "meta.quarantine does not exist: the extraction's meta schema was not created")]
    copied = copy_dbt_quarantine(ctx.wh, ctx.run_id)
    rows = ctx.wh.execute(
        """SELECT coalesce(source, 'unknown'), count(*), (array_agg(DISTINCT split_part(reason, ':', 1)))[1:5]
           FROM meta.quarantine WHERE run_id = %s GROUP BY 1 ORDER BY 1""", (ctx.run_id,)).fetchall()
    kobo = _kobo_counts(ctx.wh) if any(s.startswith("kobo:") for s, _, _ in rows) else {}
    per_source: dict[str, dict] = {}
    over: list[str] = []
    unjudged: list[str] = []
    for source, n, reasons in rows:
        population = _population(ctx.wh, source, kobo)
        limit = _threshold(cfg, source)
        share = None if not population else n / population
        entry = {"quarantined": int(n), "population": population, "share": None if share is None else round(share, 4),
                 "max_share": limit, "reasons": [r for r in (reasons or []) if r]}
        per_source[source] = entry
        if share is None:
            unjudged.append(source)
        elif share > limit and population >= min_rows:
            over.append(source)
    ctx.facts["quarantine_rows"] = sum(e["quarantined"] for e in per_source.values())
    numbers = {"sources": per_source, "copied_from_dbt": copied, "min_rows_for_share": min_rows,
               "total_quarantined": ctx.facts["quarantine_rows"]}
    results = [judged(
        "quarantine.shares", KIND, not over, blocking, numbers,
        ("quarantined share over its threshold: " + ", ".join(
            f"{s} {per_source[s]['quarantined']}/{per_source[s]['population']} = {per_source[s]['share']:.1%} "
            f"(allowed {per_source[s]['max_share']:.1%})" for s in over))
        if over else (f"{ctx.facts['quarantine_rows']} rows quarantined in this run, every source under its threshold"
                      if per_source else "nothing quarantined in this run"),
    )]
    if unjudged:
        results.append(CheckResult(
            name="quarantine.unjudged_sources", kind=KIND, status="warn", blocking=False,
            numbers={"sources": {s: per_source[s]["quarantined"] for s in unjudged}},
            message="quarantined rows of sources whose size is unknown (share not judged): "
                    + json.dumps({s: per_source[s]["quarantined"] for s in unjudged})))
    return results
