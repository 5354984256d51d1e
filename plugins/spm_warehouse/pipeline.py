"""The nightly pipeline's stages, as plain functions.

Why here and not in the DAG: the DAG file stays wiring only, and every stage
can be run, tested and debugged from a Python shell without Airflow. Each
stage opens its own connections (tasks may run in different processes),
returns a small JSON-able dict for XCom, and raises a clear exception when
the night must stop.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Iterator

import psycopg

from spm_warehouse import settings

log = logging.getLogger(__name__)


class StageFailed(RuntimeError):
    """The night cannot go on; the message says why and what to look at."""


@contextmanager
def warehouse() -> Iterator[psycopg.Connection]:
    """A connection to the warehouse named by the `warehouse` connection."""
    info = settings.connection("warehouse")
    with psycopg.connect(info.libpq_url(), application_name="spm_warehouse") as conn:
        yield conn


def prepare_warehouse() -> dict:
    """Create the schemas and bookkeeping tables every stage relies on (idempotent)."""
    from spm_warehouse import meta

    with warehouse() as conn:
        meta.ensure_meta_schema(conn)
        conn.commit()
    return {"ok": True}


def extract_mis(run_id: str, as_of: date, full_refresh: bool = False, reconcile: bool = False) -> dict:
    """Incremental extraction of the Fineract MIS into raw_mis."""
    from spm_warehouse.sources import fineract

    source = settings.connection("mis_fineract")
    started = time.monotonic()
    with warehouse() as conn:
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
    from spm_warehouse.sources import kobo

    try:
        api = settings.connection("kobotoolbox")
    except LookupError:
        log.info("no kobotoolbox connection configured: API pull skipped, file drops only (%s)",
                 settings.survey_drop_dir())
        api = None
    with warehouse() as conn:
        return kobo.extract_surveys(api, conn, run_id=run_id, drop_dir=settings.survey_drop_dir(),
                                    lookback_minutes=settings.get_int("SPM_EXTRACT_LOOKBACK_MINUTES"),
                                    full_refresh=full_refresh)


def dbt_target_dir(run_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return settings.local_dir() / "dbt" / safe


def build(run_id: str, as_of: date, full_refresh: bool = False) -> dict:
    """dbt seed + build into the build schema; failures are judged by the gate."""
    from spm_warehouse.dbt_runner import run_dbt

    wh = settings.connection("warehouse")
    target = dbt_target_dir(run_id)
    dbt_vars = {"as_of_date": as_of.isoformat(), "run_id": run_id}
    with warehouse() as conn:  # a failed night may have left a half build schema
        conn.execute(f'DROP SCHEMA IF EXISTS "{settings.build_schema()}" CASCADE')
        conn.commit()
    args = ["build"] + (["--full-refresh"] if full_refresh else [])
    result = run_dbt(args, wh, dbt_vars=dbt_vars, target_path=target / "target", log_path=target / "logs")
    # Docs while the build schema exists, so the catalog describes the marts
    # that are about to be published; the run report links them.
    docs = run_dbt(["docs", "generate"], wh, dbt_vars=dbt_vars, target_path=target / "docs", log_path=target / "logs")
    if not docs.success:
        log.warning("dbt docs generate failed; the run report will have no dbt docs:\n%s", docs.log_tail[-1500:])
    summary = result.summary()
    log.info("dbt build: %s in %.1fs", summary["counts"], result.elapsed_s)
    if not result.results:
        raise StageFailed("dbt did not run (no run_results.json):\n" + result.log_tail[-3000:])
    return summary


def gate(run_id: str, as_of: date, dbt_summary: dict) -> dict:
    """Every blocking check must pass; else StageFailed naming each failure."""
    from spm_warehouse import gate as quality_gate

    try:
        mis = settings.connection("mis_fineract")
    except LookupError:
        mis = None
    with warehouse() as conn:
        verdict = quality_gate.run_gate(conn, mis, run_id=run_id, as_of=as_of, dbt_result=dbt_summary)
        conn.commit()
    if not verdict.passed:
        raise StageFailed("quality gate blocked publication:\n" + verdict.summary())
    return verdict.as_dict()


def publish(run_id: str, as_of: date) -> dict:
    """Swap the audited build into the published schema."""
    from spm_warehouse import publish as publisher
    from spm_warehouse import roles

    with warehouse() as conn:
        roles.ensure_bi_roles(conn)
        result = publisher.publish(conn, run_id=run_id, as_of=as_of)
    return result


def report(run_id: str, as_of: date) -> dict:
    """The one-page run report (also written when the night failed)."""
    from spm_warehouse import report as run_report

    with warehouse() as conn:
        path = run_report.write_run_report(conn, run_id=run_id, as_of=as_of,
                                           out_dir=settings.reports_dir())
    log.info("run report: %s", path)
    return {"report": str(path)}


def reconcile_keys(run_id: str) -> dict:
    """Find rows hard-deleted in the source and mark them deleted in raw_mis."""
    from spm_warehouse.sources import fineract

    with warehouse() as conn:
        return fineract.reconcile_keys(settings.connection("mis_fineract"), conn, run_id=run_id)


def rollback() -> dict:
    """Put the previous publication back in place."""
    from spm_warehouse import publish as publisher

    with warehouse() as conn:
        return publisher.rollback(conn)


def refresh_published_docs() -> dict:
    """Point `<reports>/published` at the run report of the build now in analytics.

    Analysts bookmark one address; it follows publications and rollbacks.
    """
    import shutil

    from spm_warehouse import report as run_report

    with warehouse() as conn:
        row = conn.execute(
            f'SELECT run_id FROM "{settings.analytics_schema()}".publication_info LIMIT 1').fetchone()
    if not row:
        raise StageFailed("nothing is published yet")
    source = settings.reports_dir() / run_report.run_dir_name(row[0])
    if not source.is_dir():
        raise StageFailed(f"no report folder {source} for the published run {row[0]}")
    target = settings.reports_dir() / "published"
    staging = settings.reports_dir() / ".published.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return {"published_docs": str(target / "index.html"), "run_id": row[0]}
