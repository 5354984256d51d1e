"""The nightly pipeline's stages, as plain functions.

Why here and not in the DAG: the DAG file stays wiring only, and every stage
can be run, tested and debugged from a Python shell without Airflow. Each
stage opens its own connection (tasks may run in different processes), owns
its transaction (the library functions it calls never commit), returns a
small JSON-able dict for XCom, and raises a clear exception when the night
must stop.
Every stage of a night runs under the warehouse's night lease (night_lock.py): two
nights never interleave, whoever started them.
"""

from __future__ import annotations

import logging
import shutil
import time
from datetime import date

from spm_warehouse import (
    delta_indexes,
    fact_versions,
    failure_text,
    faults,
    kpi_alerts,
    meta,
    night_lock,
    paths,
    publication,
    roles,
    seed_tables,
    settings,
)
from spm_warehouse import preflight as preflight_checks
from spm_warehouse import report as run_report
from spm_warehouse.build import code_fingerprint, failure_summary, nightly_build_args, run_dbt
from spm_warehouse.db import connect
from spm_warehouse.failure_text import StageFailed, run_stage  # noqa: F401 - run_stage: the DAG's tasks call pipeline.run_stage
from spm_warehouse.gate import GateVerdict, run_gate
from spm_warehouse.sources import fineract, kobo

log = logging.getLogger(__name__)


def preflight() -> dict:
    """The configuration, checked before anything is extracted (preflight.py).

    A wrong setting raises preflight.ConfigError: one line naming the setting.
    Connections are checked before the warehouse is opened with them.
    """
    result = {"connections": preflight_checks.check_connections()}
    result.update(preflight_checks.check_ppi())
    result.update(preflight_checks.check_min_cell_n())
    preflight_checks.check_pseudonym_key()
    with connect() as conn:
        result.update(preflight_checks.check_branches(conn))
    log.info("preflight: configuration checked: %s", result)
    return result


def prepare_warehouse(run_id: str | None = None, as_of: date | None = None) -> dict:
    """Create the schemas and bookkeeping tables every stage relies on (idempotent); take the night's lease."""
    with connect() as conn:
        meta.ensure_meta_schema(conn)
        conn.commit()
    if run_id is None:
        return {"ok": True}
    with night_lock.stage(run_id, as_of, "prepare") as lease:
        faults.point("prepare")
        return {"ok": True, **lease}


def extract_mis(run_id: str, as_of: date, full_refresh: bool = False, reconcile: bool = False) -> dict:
    """Incremental extraction of the Fineract MIS into raw_mis."""
    source = settings.connection("mis_fineract")
    started = time.monotonic()
    with night_lock.stage(run_id, as_of, "extract_mis"), connect() as conn:
        manifest = fineract.extract_mis(source, conn, run_id=run_id, as_of=as_of,
                                        full_refresh=full_refresh, reconcile=reconcile)
    rows = sum(int(m.get("rows_read") or 0) for m in manifest)
    merged = sum(int(m.get("rows_merged") or 0) for m in manifest)
    log.info("MIS extraction: %d tables, %d rows read, %d merged in %.1fs",
             len(manifest), rows, merged, time.monotonic() - started)
    return {"tables": len(manifest), "rows_read": rows, "rows_merged": merged}


def extract_surveys(run_id: str, as_of: date, full_refresh: bool = False) -> dict:
    """KoboToolbox API pulls (when configured) and file drops into raw_kobo.

    Kobo does not move `_submission_time` when a submission is edited, so an
    edit older than the lookback is only seen by a full refresh.
    """
    try:
        api = settings.connection("kobotoolbox")
    except LookupError:
        log.info("no kobotoolbox connection configured: API pull skipped, file drops only (%s)",
                 settings.survey_drop_dir())
        api = None
    with night_lock.stage(run_id, as_of, "extract_surveys"), connect() as conn:
        return kobo.extract_surveys(api, conn, run_id=run_id, drop_dir=settings.survey_drop_dir(),
                                    lookback_minutes=settings.get_int("SPM_EXTRACT_LOOKBACK_MINUTES"),
                                    full_refresh=full_refresh)


def build(run_id: str, as_of: date, full_refresh: bool = False) -> dict:
    """dbt seed + build into the build schema; failures are judged by the gate."""
    with night_lock.stage(run_id, as_of, "build"):
        return _build(run_id, as_of, full_refresh)


def _build(run_id: str, as_of: date, full_refresh: bool) -> dict:
    wh = settings.connection("warehouse")
    target = paths.dbt_target_dir(run_id)
    dbt_vars = {"as_of_date": as_of.isoformat(), "code_fingerprint": code_fingerprint(),
                "mis_timezone": settings.get("SPM_MIS_TIMEZONE"), "min_cell_n": settings.get_int("SPM_MIN_CELL_N")}
    # The build schema is not dropped: it is the recycled publication before last (or a
    # blocked night's build), whose incremental facts catch up from their own state;
    # table models are replaced, and relations no model builds any more are pruned below.
    with connect() as conn:
        # once per raw table: lets the incremental models find the day's changes without a scan
        indexed = delta_indexes.ensure_delta_indexes(conn)
        conn.commit()
    if indexed:
        log.info("raw delta indexes created: %s", ", ".join(indexed))
    with connect() as conn:
        # rows of the versioned facts that no published view can show any more (fact_versions.py)
        dropped = fact_versions.collect_garbage(conn, publication.retained_history_versions(conn))
        conn.commit()
    if any(dropped.values()):
        log.info("old versions deleted: %s", ", ".join(f"{t} {n:,}" for t, n in dropped.items()))
    with connect() as conn:
        publication.reset_restricted_build(conn)  # tonight's real account numbers only
        seed_tables.drop_changed_seed_tables(conn)  # a seed that gained a column is created anew
        conn.commit()
    result = run_dbt(nightly_build_args(full_refresh), wh, dbt_vars=dbt_vars, target_path=target / "target", log_path=target / "logs")
    with connect() as conn:
        pruned = publication.prune_build_schema(conn, target / "target" / "manifest.json")
        publication.stamp_build(conn, run_id, as_of)
        conn.commit()
    if pruned:
        log.info("dropped from the build schema (no model builds them any more): %s", ", ".join(pruned))
    # Docs while the build schema exists, so the catalog describes the marts
    # that are about to be published; the run report links them.
    # The docs run starts from the build's parse (build.py's parse cache).
    # --no-compile: the build has just compiled every node (and the models' compile-time
    # queries need not run twice); the docs show the models' SQL as written.
    docs = run_dbt(["docs", "generate", "--no-compile"], wh, dbt_vars=dbt_vars, target_path=target / "docs",
                   log_path=target / "logs")
    if not docs.success:
        log.warning("dbt docs generate failed; the run report will have no dbt docs:\n%s", docs.log_tail[-1500:])
    lost = _lost_connection(result)
    if lost:
        # infrastructure, not data: fail the task so that Airflow retries the build
        raise StageFailed(f"dbt lost its connection to the warehouse (restarted or unreachable?): {lost}. "
                          "The build schema is rebuilt by the retry; analytics is unchanged")
    summary = result.summary()
    # Last in the task log, where an operator looks first: what failed or warned, by name.
    log.info("dbt build: %s in %.1fs", summary["counts"], result.elapsed_s)
    for line in failure_summary(result)[1:]:
        log.info("%s", line)
    if not result.results:
        raise StageFailed("dbt did not run (no run_results.json):\n" + result.log_tail[-3000:])
    return summary


LOST_CONNECTION = ("server closed the connection unexpectedly", "terminating connection due to administrator command",
                   "could not connect to server", "connection to server at", "the database system is shutting down",
                   "the database system is starting up", "connection already closed", "SSL SYSCALL error")


def _lost_connection(result) -> str | None:
    """The first dbt error that says the warehouse went away, if any (then the night's data is not at fault)."""
    texts = [str(r.get("message") or "") for r in result.failures()] + [result.log_tail]
    for text in texts:
        for marker in LOST_CONNECTION:
            if marker in text:
                line = next((x for x in text.splitlines() if marker in x), marker)
                return line.strip()[:300]
    return None


def gate(run_id: str, as_of: date, dbt_summary: dict) -> dict:
    """Every blocking check must pass; else StageFailed naming each failure."""
    try:
        mis = settings.connection("mis_fineract")
    except LookupError:
        mis = None
    with night_lock.stage(run_id, as_of, "gate"), connect() as conn:
        verdict = run_gate(conn, mis, run_id=run_id, as_of=as_of, dbt_result=dbt_summary)
        conn.commit()
    if not verdict.passed:
        # the text the terminal, the task's failure message and the alert all show (failure_text.py)
        raise StageFailed(failure_text.blocked_text(verdict, run_id, as_of), complete=True)
    return verdict.as_dict()


def publish(run_id: str, as_of: date, verdict: dict | None = None) -> dict:
    """Swap the audited build into the published schema.

    verdict: what the gate stage returned (GateVerdict.as_dict()); publication
    refuses a verdict that did not pass or belongs to another run. Without it
    (by hand), the verdict recorded in meta for run_id is used.
    """
    judged = GateVerdict.from_dict(verdict) if verdict else None
    with night_lock.stage(run_id, as_of, "publish"), connect() as conn:
        roles.ensure_bi_roles(conn)
        conn.commit()
        return publication.publish(conn, run_id=run_id, as_of=as_of, verdict=judged)


def send_kpi_alerts(run_id: str, as_of: date) -> dict:
    """The published build's new KPI alerts, once, to SPM_ALERT_WEBHOOK_URL / SPM_ALERT_EMAIL (kpi_alerts.py).

    Runs after publish; sends nothing when the publication is not this night's, when
    nothing is new, or for alerts sent already (a rerun). When every configured target
    fails the stage fails (Airflow retries it) and nothing is recorded as sent.
    """
    with night_lock.stage(run_id, as_of, "kpi_alerts"), connect() as conn:
        try:
            result = kpi_alerts.notify_new_alerts(conn, run_id, as_of)
        except kpi_alerts.AlertsNotSent as exc:
            raise StageFailed(str(exc)) from None
        conn.commit()
    return result


def report(run_id: str, as_of: date) -> dict:
    """The one-page run report (also written when the night failed); the night ends: its lease is given back."""
    with night_lock.stage(run_id, as_of, "report", release=True), connect() as conn:
        path = run_report.write_run_report(conn, run_id=run_id, as_of=as_of,
                                           out_dir=settings.reports_dir())
    log.info("run report: %s", path)
    return {"report": str(path)}


def reconcile_keys(run_id: str) -> dict:
    """Find rows hard-deleted in the source and mark them deleted in raw_mis."""
    with connect() as conn:
        return fineract.reconcile_keys(settings.connection("mis_fineract"), conn, run_id=run_id)


def rollback() -> dict:
    """Put the previous publication back in place."""
    with connect() as conn:
        return publication.rollback(conn)


def refresh_published_docs() -> dict:
    """Point `<reports>/published` at the run report of the build now in analytics.

    Analysts bookmark one address; it follows publications and rollbacks.
    """
    with connect() as conn:
        row = conn.execute(
            f'SELECT run_id FROM "{settings.analytics_schema()}".publication_info LIMIT 1').fetchone()
    if not row:
        raise StageFailed("nothing is published yet")
    source = settings.reports_dir() / paths.run_dir_name(row[0])
    if not source.is_dir():
        raise StageFailed(f"no report folder {source} for the published run {row[0]}")
    target = settings.reports_dir() / "published"
    staging = settings.reports_dir() / ".published.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return {"published_docs": str(target / "index.html"), "run_id": row[0]}
