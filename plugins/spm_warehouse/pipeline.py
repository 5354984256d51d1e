"""The nightly pipeline's stages, as plain functions.

Why here and not in the DAG: the DAG file stays wiring only, and every stage
can be run, tested and debugged from a Python shell without Airflow. Each
stage opens its own connections (tasks may run in different processes),
returns a small JSON-able dict for XCom, and raises a clear exception when
the night must stop.
"""

from __future__ import annotations

import logging
import re
import shutil
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


def code_fingerprint() -> str:
    """sha256 over the dbt project's files: incremental models that cache derived data rebuild when it changes."""
    import hashlib

    from spm_warehouse.dbt_runner import DBT_PROJECT_DIR

    digest = hashlib.sha256()
    files = [DBT_PROJECT_DIR / "dbt_project.yml"]
    for folder in ("models", "macros", "seeds"):
        files += sorted(p for p in (DBT_PROJECT_DIR / folder).rglob("*") if p.is_file())
    for path in files:
        digest.update(str(path.relative_to(DBT_PROJECT_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def dbt_target_dir(run_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return settings.local_dir() / "dbt" / safe


def build(run_id: str, as_of: date, full_refresh: bool = False) -> dict:
    """dbt seed + build into the build schema; failures are judged by the gate."""
    from spm_warehouse.dbt_runner import failure_summary, run_dbt

    wh = settings.connection("warehouse")
    target = dbt_target_dir(run_id)
    dbt_vars = {"as_of_date": as_of.isoformat(), "code_fingerprint": code_fingerprint()}
    # The build schema is not dropped: it is the recycled publication before last (or a
    # blocked night's build), whose incremental facts catch up from their own state;
    # table models are replaced, and relations no model builds any more are pruned below.
    if not full_refresh:
        with warehouse() as conn:
            seeded = seed_build_schema(conn)
            conn.commit()
        if seeded:
            log.info("build schema seeded with the published incremental marts: %s", ", ".join(seeded))
    args = ["build"] + (["--full-refresh"] if full_refresh else [])
    result = run_dbt(args, wh, dbt_vars=dbt_vars, target_path=target / "target", log_path=target / "logs")
    with warehouse() as conn:
        from spm_warehouse import publish as publisher

        pruned = prune_build_schema(conn, target / "target" / "manifest.json")
        publisher.stamp_build(conn, run_id, as_of)
        conn.commit()
    if pruned:
        log.info("dropped from the build schema (no model builds them any more): %s", ", ".join(pruned))
    # Docs while the build schema exists, so the catalog describes the marts
    # that are about to be published; the run report links them.
    # The docs run starts from the build's parse (dbt_runner's parse cache).
    # --no-compile: the build has just compiled every node (and the models' compile-time
    # queries need not run twice); the docs show the models' SQL as written.
    docs = run_dbt(["docs", "generate", "--no-compile"], wh, dbt_vars=dbt_vars, target_path=target / "docs",
                   log_path=target / "logs")
    if not docs.success:
        log.warning("dbt docs generate failed; the run report will have no dbt docs:\n%s", docs.log_tail[-1500:])
    summary = result.summary()
    # Last in the task log, where an operator looks first: what failed or warned, by name.
    log.info("dbt build: %s in %.1fs", summary["counts"], result.elapsed_s)
    for line in failure_summary(result)[1:]:
        log.info("%s", line)
    if not result.results:
        raise StageFailed("dbt did not run (no run_results.json):\n" + result.log_tail[-3000:])
    return summary


_INDEX_DEF = re.compile(r"^CREATE (UNIQUE )?INDEX \S+ ON \S+ (USING .+)$")
STATE_COLUMNS = ("_as_of_date", "_cutoff_ts", "_watermark", "_backfill")


def seed_build_schema(conn: psycopg.Connection, target: str | None = None) -> list[str]:
    """Start a missing build schema with copies of the published incremental marts.

    Publish recycles the publication before last as the next build schema; on
    the first night after the first publication there is none yet, and every
    incremental mart would be rebuilt from the whole history. Copying the
    published ones (gate-passed, with their bookkeeping columns) is a plain
    COPY-speed scan, after which they catch up like a recycled schema.
    """
    from spm_warehouse import publish as publisher

    build, analytics = target or settings.build_schema(), settings.analytics_schema()
    if settings.get("SPM_RECYCLE_BUILD") != "1":
        return []
    exists = conn.execute("SELECT to_regnamespace(%s) IS NOT NULL, to_regnamespace(%s) IS NOT NULL",
                          (build, analytics)).fetchone()
    if exists[0] or not exists[1]:
        return []
    tables = [r[0] for r in conn.execute(
        """SELECT c.table_name FROM information_schema.columns c
           JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
           WHERE c.table_schema = %s AND t.table_type = 'BASE TABLE' AND c.column_name = ANY(%s)
           GROUP BY c.table_name HAVING count(*) = %s ORDER BY 1""",
        (analytics, list(STATE_COLUMNS), len(STATE_COLUMNS))).fetchall()]
    if not tables:
        return []
    conn.execute(f'CREATE SCHEMA "{build}"')
    for table in tables:
        conn.execute(f'CREATE TABLE "{build}"."{table}" AS SELECT * FROM "{analytics}"."{table}"')
        # the same indexes, built once on the full copy (the models' post-hooks would find them missing)
        for (definition,) in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s ORDER BY indexname",
                (analytics, table)).fetchall():
            match = _INDEX_DEF.match(definition)
            if match:
                conn.execute(f'CREATE {match.group(1) or ""}INDEX ON "{build}"."{table}" {match.group(2)}')
        conn.execute(f'ANALYZE "{build}"."{table}"')
    live = publisher.schema_stamp(conn, analytics).get("build_id") or "unknown"
    publisher.mark_recycled(conn, build, live)
    return tables


KEPT_IN_BUILD = ("publication_info", "data_health_runs")  # publish's health views, recreated at every publish


def prune_build_schema(conn: psycopg.Connection, manifest_path: Path) -> list[str]:
    """Drop tables and views of the build schema that no dbt model of this project builds.

    A recycled build schema still holds every relation of an older build; a
    model removed or renamed since would otherwise be published forever.
    Without a readable manifest nothing is dropped.
    """
    import json

    schema = settings.build_schema()
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return []
    wanted = {(node.get("alias") or node.get("name")) for node in manifest.get("nodes", {}).values()
              if node.get("resource_type") in ("model", "seed", "snapshot") and node.get("schema") == schema}
    if not wanted:
        return []
    rows = conn.execute(
        """SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1""", (schema,)).fetchall()
    dropped = []
    for name, kind in rows:
        if name in wanted or name in KEPT_IN_BUILD:
            continue
        what = {"v": "VIEW", "m": "MATERIALIZED VIEW"}.get(kind, "TABLE")
        conn.execute(f'DROP {what} IF EXISTS "{schema}"."{name}" CASCADE')
        dropped.append(name)
    return dropped


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
        # After the first publication there is no publication before last to recycle: prepare
        # tomorrow's build schema now, while tonight's window still has room (a full run is long
        # anyway), so that the next night is incremental from the start.
        started = time.monotonic()
        seeded = seed_build_schema(conn)
        if seeded and result.get("replaced_build_id") is None:
            # the first publication: night 2 will have no publication before last either, so it
            # gets a spare copy to recycle (publish renames it to the build schema)
            seed_build_schema(conn, publisher.spare_schema())
        conn.commit()
    if seeded:
        result["seeded_next_build"] = seeded
        log.info("tomorrow's build schema prepared from the publication in %.1fs: %s",
                 time.monotonic() - started, ", ".join(seeded))
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
