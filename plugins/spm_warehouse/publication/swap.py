"""Publish: swap the audited build into the published schema, atomically.

dbt builds tonight's marts into analytics_build; the gate audits them and
returns a verdict; `publish` takes that verdict and, in ONE transaction:

    advisory lock (one publisher at a time)
    stamp the build (SchemaState) and add the data-health views to it
    lock the previous publication's tables, rename analytics_prev to analytics_build_recycling
    lock the live tables (NOWAIT), rename analytics to analytics_prev
    rename analytics_build to analytics
    rename analytics_build_recycling to analytics_build (state: recycled)
    grants to bi_reader (and branch RLS policies), nothing on analytics_prev
    INSERT INTO meta.publications
    COMMIT

Readers therefore see the old or the new version, never a mix or nothing:
the renames become visible at commit only, all at once; and because publish
holds ACCESS EXCLUSIVE locks on the live tables while it renames, a query
that started planning before the commit either finished on the old tables
before publish could lock them, or waits and resolves every name afresh to
the new tables after the commit (locking.py says how the locks are taken).

Why recycle the publication before last instead of dropping it: see
schemas.py (SPM_RECYCLE_BUILD=0 drops it instead).

Views or other objects outside these schemas that depend on the published
tables would follow them into analytics_prev and be dropped with it: publish
refuses to run and names them (BI tools should query analytics by name).
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import date, datetime, timezone

import psycopg
from psycopg import sql

from spm_warehouse import faults, roles, settings
from spm_warehouse.fact_versions import pin_views
from spm_warehouse.gate import GateVerdict, ensure_gate_tables, read_verdict
from spm_warehouse.publication import schemas
from spm_warehouse.publication.health import create_health_views
from spm_warehouse.publication.locking import (
    PublishError,
    begin_swap,
    lock_live,
    outside_dependents,
    require_idle,
    with_lock_retries,
)
from spm_warehouse.publication.schemas import SchemaState, read_state, rename_schema, schema_exists, write_state

log = logging.getLogger(__name__)

PUBLICATION_DDL: tuple[str, ...] = (
    "CREATE SCHEMA IF NOT EXISTS meta",
    """CREATE TABLE IF NOT EXISTS meta.publications (
        publication_id    bigserial PRIMARY KEY,
        build_id          text NOT NULL,
        action            text NOT NULL DEFAULT 'publish' CHECK (action IN ('publish', 'rollback')),
        run_id            text,
        as_of_date        date NOT NULL,
        published_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
        row_counts        jsonb NOT NULL DEFAULT '{}',
        check_summary     text NOT NULL DEFAULT '',
        checks            jsonb NOT NULL DEFAULT '{}',
        metrics           jsonb NOT NULL DEFAULT '{}',
        watermarks        jsonb NOT NULL DEFAULT '{}',
        replaced_build_id text,
        published_by      text NOT NULL DEFAULT current_user
    )""",
    "CREATE INDEX IF NOT EXISTS publications_build_idx ON meta.publications (build_id)",
    "CREATE INDEX IF NOT EXISTS publications_run_idx ON meta.publications (run_id)",
    """COMMENT ON TABLE meta.publications IS
        'Every change of what BI reads: a publication of an audited build, or a rollback to the previous one. '
        'The newest row describes the live build (and is the volume/freshness baseline of the next gate).'""",
)


class PublishBlocked(RuntimeError):
    """The gate did not pass this run: analytics is unchanged. The message is the verdict summary."""


def ensure_publication_tables(conn: psycopg.Connection) -> None:
    """Create the meta tables that publication and rollback write or read (idempotent, no commit)."""
    ensure_gate_tables(conn)  # the data-health views read meta.gate_runs
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('spm_warehouse.meta'))")
    for stmt in PUBLICATION_DDL:
        conn.execute(stmt)


def check_summary(verdict: GateVerdict) -> tuple[str, dict]:
    """The one-line summary and {check: status} that meta.publications keeps of a verdict."""
    n = verdict.counts()
    text = f"{n['passed']} checks passed, {n['warned']} warned, {n['failed']} failed"
    if verdict.warned():
        text += " (warnings: " + ", ".join(c.name for c in verdict.warned()) + ")"
    return text, {c.name: c.status for c in verdict.checks}


def _refuse_unpublishable(conn: psycopg.Connection, build: str, run_id: str, guarded: list[str]) -> None:
    """PublishError unless the build schema holds a build of this run and nothing outside depends on it."""
    if not schema_exists(conn, build):
        raise PublishError(f"nothing to publish: schema {build} does not exist (did the dbt build run, "
                           f"or was this build published already?)")
    if not schemas.relations(conn, build, ("r", "p", "m", "v")):
        raise PublishError(f"nothing to publish: schema {build} is empty")
    state = read_state(conn, build)
    if state.is_recycled:
        raise PublishError(f"nothing to publish: schema {build} holds the recycled publication "
                           f"{state.recycled_from}, not a build of run {run_id} (was this build "
                           f"published already?)")
    if state.run_id is not None and state.run_id != run_id:
        raise PublishError(f"nothing to publish for run {run_id}: schema {build} was last built by run "
                           f"{state.run_id}")
    restricted_build = settings.restricted_build_schema()
    if schema_exists(conn, restricted_build):
        restricted_run = read_state(conn, restricted_build).run_id
        if restricted_run is not None and restricted_run != run_id:
            raise PublishError(f"nothing to publish for run {run_id}: schema {restricted_build} was last built "
                               f"by run {restricted_run}")
    dependents = outside_dependents(conn, guarded)
    if dependents:
        raise PublishError(
            "objects outside the published schemas depend on published tables and would be dropped "
            "or left pointing at an old build: " + "; ".join(dependents)
            + ". Drop them and query analytics by name (e.g. a Superset virtual dataset) instead.")


def publish(wh_conn: psycopg.Connection, run_id: str, as_of: date, verdict: GateVerdict | None = None) -> dict:
    """Swap the build into the published schema if the gate passed this run; return what was published.

    verdict: the gate's verdict, as the nightly DAG hands it over. When None
    (an operator publishing by hand), the verdict recorded in meta.gate_runs
    for run_id is used: publish never publishes an unjudged run.
    Raises PublishBlocked (the verdict did not pass) or PublishError; in both
    cases analytics is untouched. The swap is its own transaction, committed
    here: the caller must not have one open.
    """
    require_idle(wh_conn, "publish")
    with wh_conn.transaction():
        ensure_publication_tables(wh_conn)
        if verdict is None:
            verdict = read_verdict(wh_conn, run_id)
    if verdict is None:
        raise PublishBlocked(f"run {run_id} was never judged by the quality gate (no row in meta.gate_runs): "
                             "nothing is published without a passing verdict")
    if not verdict.passed:
        raise PublishBlocked(verdict.summary())
    if verdict.run_id and verdict.run_id != run_id:
        raise PublishBlocked(f"the verdict handed to publish is of run {verdict.run_id}, not of run {run_id}")
    analytics, build, prev = settings.analytics_schema(), schemas.build_schema(), schemas.previous_schema()
    build_id = f"{as_of:%Y%m%d}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    summary, checks = check_summary(verdict)
    hint: dict = {}

    def swap() -> dict:
        with wh_conn.transaction():
            begin_swap(wh_conn)
            _refuse_unpublishable(wh_conn, build, run_id, [analytics, prev, build])
            # The slow part first, while readers are not affected: stamp, views, row counts, old previous build.
            # the versioned facts' views show the rows of this version from now on (history.py)
            pinned = pin_views(wh_conn, build)
            write_state(wh_conn, build, SchemaState.published(build_id, run_id, as_of, history_version=pinned))
            create_health_views(wh_conn, build, build_id)
            counts = schemas.row_counts(wh_conn, build)
            live = schema_exists(wh_conn, analytics)
            replaced = read_state(wh_conn, analytics).build_id if live else None
            recycled = None
            if live and schema_exists(wh_conn, prev):
                lock_live(wh_conn, [prev], hint)
                if schemas.recycling_enabled():
                    # The publication before last becomes the next build schema: its incremental
                    # facts then only catch up two nights of changes instead of being rebuilt.
                    recycled = read_state(wh_conn, prev).build_id or "unknown"
                    rename_schema(wh_conn, prev, build + schemas.RECYCLING_SUFFIX)
                else:
                    wh_conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(prev)))
            # The swap itself: lock the live tables, rename, grant - then commit makes it visible at once.
            if live:
                lock_live(wh_conn, [analytics], hint)
                rename_schema(wh_conn, analytics, prev)
            rename_schema(wh_conn, build, analytics)
            # the real account numbers follow, in the same transaction (readers of analytics_restricted
            # see the build that matches analytics)
            restricted = settings.restricted_schema()
            lock_live(wh_conn, [s for s in (restricted, settings.restricted_prev_schema())
                                if schema_exists(wh_conn, s)], hint)
            schemas.rotate(wh_conn, settings.restricted_build_schema(), restricted,
                           settings.restricted_prev_schema(), drop_previous=True)
            if schema_exists(wh_conn, restricted):
                write_state(wh_conn, restricted, SchemaState.published(build_id, run_id, as_of))
            faults.point("publish.swap")
            if recycled is not None:
                rename_schema(wh_conn, build + schemas.RECYCLING_SUFFIX, build)
                write_state(wh_conn, build, SchemaState.recycled_copy(recycled))
            # versions before the facts were versioned left a copy of the first publication's facts here
            wh_conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(build + schemas.OLD_SPARE_SUFFIX)))
            access = roles.apply_published_access(wh_conn, analytics, prev_schema=prev)
            published_at = wh_conn.execute(
                """INSERT INTO meta.publications (build_id, action, run_id, as_of_date, row_counts, check_summary,
                                                  checks, metrics, watermarks, replaced_build_id)
                   VALUES (%s, 'publish', %s, %s, %s::jsonb, %s, %s::jsonb, %s::jsonb, %s::jsonb, %s)
                   RETURNING published_at""",
                (build_id, run_id, as_of, json.dumps(counts), summary, json.dumps(checks),
                 json.dumps(verdict.facts.get("metrics") or {}, default=str),
                 json.dumps(verdict.facts.get("watermarks") or {}, default=str), replaced),
            ).fetchone()[0]
        return {"build_id": build_id, "run_id": run_id, "as_of_date": as_of.isoformat(),
                "published_at": published_at.isoformat(), "row_counts": counts, "check_summary": summary,
                "replaced_build_id": replaced, "schema": analytics, "previous_schema": prev,
                "recycled_build_id": recycled,
                "bi_reader_granted": access["bi_reader"], "branch_rls_tables": access["rls_tables"]}

    result = with_lock_retries(swap, f"publish {build_id}")
    log.info("published build %s (as of %s) into %s: %s", build_id, as_of, analytics, summary)
    return result
