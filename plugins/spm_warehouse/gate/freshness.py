"""Freshness: did tonight's extraction bring the MIS up to date?

Why the watermark is read from raw_mis itself: the newest
last_modified_on_utc among the extracted rows is exactly "how recent is what
we have", whatever bookkeeping the extraction keeps. It must
- never move backwards against the last publication (that means a restore of
  an old source backup or an extraction pointed at the wrong database), and
- not lag the as-of date by more than max_lag_days (a source that stopped
  changing is a source that stopped being extracted, or stopped being used).
The extraction must also have recorded a load for this run in
meta.load_manifest (when that table exists).

Surveys come in irregular rounds: the newest raw_kobo submission only warns.
Both watermarks are kept in meta.gate_runs and meta.publications, so BI can
show "MIS data up to ..." next to every number.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import psycopg

from spm_warehouse.delta_indexes import WATERMARK_COLUMNS, WATERMARK_EXPRESSION, WATERMARK_TABLES
from spm_warehouse.gate.base import CheckContext, CheckResult, column_names, judged, relation_exists

KIND = "freshness"


def mis_watermark(conn: psycopg.Connection) -> datetime | None:
    """Newest last_modified_on_utc (else created_on_utc) over the incrementally extracted raw_mis tables.

    created_on_utc counts where last_modified_on_utc is NULL: Fineract 1.4-1.7 has only a
    creation time on transactions (m_loan_transaction.created_date, read into created_on_utc).
    The build stage indexes exactly this expression (delta_indexes.py), so each maximum is
    an index lookup, not a scan of the table's history.
    """
    parts = [f"SELECT max({WATERMARK_EXPRESSION}) AS m FROM raw_mis.{t}"
             for t in WATERMARK_TABLES
             if relation_exists(conn, f"raw_mis.{t}")
             and WATERMARK_COLUMNS <= column_names(conn, "raw_mis", t)]
    if not parts:
        return None
    return conn.execute("SELECT max(m) FROM (" + " UNION ALL ".join(parts) + ") w").fetchone()[0]


def survey_watermark(conn: psycopg.Connection) -> datetime | None:
    if not relation_exists(conn, "raw_kobo.submissions"):
        return None
    return conn.execute("SELECT max(submission_time) FROM raw_kobo.submissions").fetchone()[0]


def _published_watermark(conn: psycopg.Connection, key: str) -> datetime | None:
    if not relation_exists(conn, "meta.publications"):
        return None
    row = conn.execute(
        """SELECT watermarks ->> %s FROM meta.publications
           ORDER BY published_at DESC, publication_id DESC LIMIT 1""", (key,)).fetchone()
    if not row or not row[0]:
        return None
    return datetime.fromisoformat(row[0])


def _lag_days(watermark: datetime, as_of: date) -> int:
    """Whole days from the watermark's UTC date to the as-of date (negative: newer than as-of)."""
    return (as_of - watermark.astimezone(timezone.utc).date()).days


def _loads_this_run(conn: psycopg.Connection, run_id: str) -> int | None:
    if not relation_exists(conn, "meta.load_manifest") or "run_id" not in column_names(conn, "meta", "load_manifest"):
        return None
    return conn.execute("SELECT count(*) FROM meta.load_manifest WHERE run_id = %s", (run_id,)).fetchone()[0]


def run(ctx: CheckContext) -> list[CheckResult]:
    cfg = ctx.thresholds.get("freshness", {})
    out = [_mis(ctx, cfg.get("mis", {}) or {}), _surveys(ctx, cfg.get("surveys", {}) or {}), _as_of(ctx, cfg)]
    return out


def _as_of(ctx: CheckContext, cfg: dict) -> CheckResult:
    """A run older than what BI reads now (a backfill) would move the dashboards back in time."""
    blocking = bool(cfg.get("block_older_as_of", False))
    live = None
    if relation_exists(ctx.wh, "meta.publications"):
        row = ctx.wh.execute("""SELECT as_of_date FROM meta.publications
                                ORDER BY published_at DESC, publication_id DESC LIMIT 1""").fetchone()
        live = row[0] if row else None
    numbers = {"as_of_date": ctx.as_of.isoformat(), "published_as_of_date": live.isoformat() if live else None}
    if live is None or ctx.as_of >= live:
        return judged("freshness.as_of", KIND, True, blocking, numbers,
                      f"as of {ctx.as_of}" + (f", not older than the published {live}" if live else ""))
    return judged("freshness.as_of", KIND, False, blocking, numbers,
                  f"this run is as of {ctx.as_of}, older than the published {live}: publishing it moves the "
                  "dashboards back in time (a backfill?)")


def _mis(ctx: CheckContext, cfg: dict) -> CheckResult:
    blocking = bool(cfg.get("blocking", True))
    max_lag = int(cfg.get("max_lag_days", 4))
    require_advance = bool(cfg.get("require_advance", False))
    name = "freshness.mis"
    wm = mis_watermark(ctx.wh)
    ctx.facts.setdefault("watermarks", {})["mis"] = wm.isoformat() if wm else None
    previous = _published_watermark(ctx.wh, "mis")
    loads = _loads_this_run(ctx.wh, ctx.run_id)
    numbers = {
        "watermark": wm.isoformat() if wm else None,
        "published_watermark": previous.isoformat() if previous else None,
        "lag_days": _lag_days(wm, ctx.as_of) if wm else None,
        "max_lag_days": max_lag,
        "require_advance": require_advance,
        "loads_recorded_this_run": loads,
    }
    problems = []
    if wm is None:
        problems.append("raw_mis holds no last_modified_on_utc: nothing was extracted")
    else:
        if previous is not None and wm < previous:
            problems.append(f"the MIS watermark moved backwards: {wm:%Y-%m-%d %H:%M} < {previous:%Y-%m-%d %H:%M} "
                            "at the last publication (source restored from a backup, or the wrong database?)")
        elif require_advance and previous is not None and wm <= previous:
            problems.append(f"the MIS watermark did not advance since the last publication ({wm:%Y-%m-%d %H:%M})")
        if numbers["lag_days"] > max_lag:
            problems.append(f"the newest MIS change is {numbers['lag_days']} days older than the as-of date "
                            f"{ctx.as_of} (allowed {max_lag})")
    if loads == 0:
        problems.append(f"meta.load_manifest records no MIS load for run {ctx.run_id}")
    message = "; ".join(problems) if problems else (
        f"MIS data up to {wm:%Y-%m-%d %H:%M} UTC ({numbers['lag_days']} days before the as-of date)")
    return judged(name, KIND, not problems, blocking, numbers, message)


def _surveys(ctx: CheckContext, cfg: dict) -> CheckResult:
    blocking = bool(cfg.get("blocking", False))
    max_lag = int(cfg.get("max_lag_days", 45))
    name = "freshness.surveys"
    wm = survey_watermark(ctx.wh)
    ctx.facts.setdefault("watermarks", {})["surveys"] = wm.isoformat() if wm else None
    numbers = {"watermark": wm.isoformat() if wm else None, "lag_days": _lag_days(wm, ctx.as_of) if wm else None,
               "max_lag_days": max_lag}
    if wm is None:
        return judged(name, KIND, False, blocking, numbers, "no survey submission loaded yet")
    ok = numbers["lag_days"] <= max_lag
    message = (f"newest survey submission {wm:%Y-%m-%d %H:%M} UTC, {numbers['lag_days']} days before the as-of "
               f"date" + ("" if ok else f" (more than {max_lag})"))
    return judged(name, KIND, ok, blocking, numbers, message)
