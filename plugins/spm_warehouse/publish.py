"""Write-audit-publish: swap the audited build into the published schema, atomically.

dbt builds tonight's marts into analytics_build; the gate audits them; this
module publishes them. In ONE transaction:

    advisory lock (one publisher at a time)
    stamp the build (schema comment) and add the data-health views to it
    lock the previous publication's tables, ALTER SCHEMA analytics_prev RENAME TO analytics_build_recycling
    lock the live tables (NOWAIT), ALTER SCHEMA analytics RENAME TO analytics_prev
    ALTER SCHEMA analytics_build RENAME TO analytics
    ALTER SCHEMA analytics_build_recycling RENAME TO analytics_build (stamped "recycled")
    grants to bi_reader (and branch RLS policies), nothing on analytics_prev
    INSERT INTO meta.publications
    COMMIT

Readers therefore see the old or the new version, never a mix or nothing:
the renames become visible at commit only, all at once; and because publish
holds ACCESS EXCLUSIVE locks on the live tables while it renames, a query
that started planning before the commit either finished on the old tables
before publish could lock them, or waits and resolves every name afresh to
the new tables after the commit.

How publish takes those locks without hurting readers: everything slow
(row counts, views, dropping the old previous build) happens before it
touches a live table. Then it waits (up to LOCK_TIMEOUT) for ONE table - the
one a reader held at the last attempt - while holding no other live table,
and takes all the others with NOWAIT. Waiting while holding nothing a reader
needs cannot deadlock with a reader; NOWAIT never waits; and the queued wait
makes new readers of that table line up behind publish, so a busy dashboard
cannot starve the publication. A failed attempt rolls back (analytics
untouched) and is retried up to LOCK_ATTEMPTS times.

Why recycle the publication before last instead of dropping it: the next
night's dbt build runs into it, so its incremental facts (fct_loan_transaction,
fct_portfolio_month) only catch up the two nights since that build instead of
being rebuilt from the whole history (the nightly time then grows with the
day's changes, not with the size of the loan book). Table models are replaced
as usual. A recycled schema is stamped in its comment and publish refuses it
until a build of the run being published has replaced the stamp
(SPM_RECYCLE_BUILD=0 drops it instead, as before).

Views or other objects outside these schemas that depend on the published
tables would follow them into analytics_prev and be dropped with it: publish
refuses to run and names them (BI tools should query analytics by name).

rollback() swaps analytics and analytics_prev the same way and records it;
a second rollback rolls forward again.

The build's identity travels with the schema as a comment (build id, run id,
as-of date), so publication_info - a view created inside each build - always
describes the data next to it, whichever schema it currently is.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import date, datetime, timezone

import psycopg
from psycopg import sql

from spm_warehouse import roles, settings
from spm_warehouse.gate import GateVerdict, ensure_gate_tables, read_verdict

log = logging.getLogger(__name__)

# Lock acquisition: attempts, with a pause between them that grows to LOCK_MAX_PAUSE_S.
LOCK_ATTEMPTS = 60
LOCK_MAX_PAUSE_S = 2.0
# How long one attempt may wait for a lock (readers of that table wait behind publish meanwhile).
LOCK_TIMEOUT = "5s"
_LOCKED_RELATION = re.compile(r'relation "([^"]+)"')

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


class PublishError(RuntimeError):
    """Publishing could not happen (nothing built, dependent objects, locks); analytics is unchanged."""


class RollbackUnavailable(PublishError):
    """There is no previous publication to restore."""


def ensure_publication_tables(conn: psycopg.Connection) -> None:
    """Create meta.publications if missing (idempotent, no commit)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('spm_warehouse.meta'))")
    for stmt in PUBLICATION_DDL:
        conn.execute(stmt)


def _schemas() -> tuple[str, str, str]:
    analytics = settings.analytics_schema()
    return analytics, settings.build_schema(), analytics + "_prev"


def _schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    return conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (schema,)).fetchone()[0]


def _relations(conn: psycopg.Connection, schema: str, kinds: tuple[str, ...] = ("r", "p", "m")) -> list[str]:
    return [r[0] for r in conn.execute(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relkind = ANY(%s) ORDER BY 1""", (schema, list(kinds))).fetchall()]


def _lock_live(conn: psycopg.Connection, schemas: list[str], hint: dict) -> None:
    """ACCESS EXCLUSIVE on every table of these schemas: wait for the one that was busy last time, NOWAIT the rest.

    hint["busy"] remembers which table a reader held when an attempt failed,
    so the next attempt queues for exactly that one (holding no other table of
    these schemas meanwhile, which is what makes waiting deadlock-free).
    """
    tables = [(schema, t) for schema in schemas for t in _relations(conn, schema)]
    if not tables:
        return
    busy = hint.get("busy")
    for schema, t in tables:
        if busy == f"{schema}.{t}":
            conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(schema, t)))
            break
    try:
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE NOWAIT").format(
            sql.SQL(", ").join(sql.Identifier(schema, t) for schema, t in tables)))
    except psycopg.errors.LockNotAvailable as exc:
        found = _LOCKED_RELATION.search(str(exc))
        if found:
            hint["busy"] = found.group(1)
        raise


def outside_dependents(conn: psycopg.Connection, schemas: list[str]) -> list[str]:
    """Objects in other schemas whose definition depends on relations of these schemas (views, FKs)."""
    rows = conn.execute(
        """
        SELECT DISTINCT format('%%I.%%I', dn.nspname, dc.relname) || ' -> ' || format('%%I.%%I', rn.nspname, rc.relname)
        FROM pg_depend d
        JOIN pg_class rc ON d.refclassid = 'pg_class'::regclass AND rc.oid = d.refobjid
        JOIN pg_namespace rn ON rn.oid = rc.relnamespace
        JOIN pg_rewrite w ON d.classid = 'pg_rewrite'::regclass AND w.oid = d.objid
        JOIN pg_class dc ON dc.oid = w.ev_class
        JOIN pg_namespace dn ON dn.oid = dc.relnamespace
        WHERE rn.nspname = ANY(%(s)s) AND NOT dn.nspname = ANY(%(s)s)
        UNION
        SELECT DISTINCT format('%%I.%%I', dn.nspname, dc.relname) || ' (foreign key) -> ' || format('%%I.%%I', rn.nspname, rc.relname)
        FROM pg_constraint k
        JOIN pg_class rc ON rc.oid = k.confrelid
        JOIN pg_namespace rn ON rn.oid = rc.relnamespace
        JOIN pg_class dc ON dc.oid = k.conrelid
        JOIN pg_namespace dn ON dn.oid = dc.relnamespace
        WHERE k.contype = 'f' AND rn.nspname = ANY(%(s)s) AND NOT dn.nspname = ANY(%(s)s)
        ORDER BY 1
        """, {"s": schemas}).fetchall()
    return [r[0] for r in rows]


RECYCLING_SUFFIX = "_recycling"


def spare_schema() -> str:
    """Where the first publication leaves a copy of its incremental marts for the second night to recycle."""
    return settings.build_schema() + "_spare"
RECYCLED_KEY = "recycled_from_build_id"


def mark_recycled(conn: psycopg.Connection, schema: str, build_id: str) -> None:
    """Stamp a schema as the recycled copy of an old publication: publish refuses it until a build replaces the stamp."""
    conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
        sql.Identifier(schema), sql.Literal(json.dumps({RECYCLED_KEY: build_id}))))


def stamp_build(conn: psycopg.Connection, run_id: str, as_of: date) -> None:
    """Record in the build schema's comment which run built it (publish checks it is the run it publishes)."""
    schema = settings.build_schema()
    if _schema_exists(conn, schema):
        conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
            sql.Identifier(schema), sql.Literal(json.dumps({"built_by_run_id": run_id, "as_of_date": as_of.isoformat()}))))


def _raw_stamp(conn: psycopg.Connection, schema: str) -> dict:
    row = conn.execute(
        "SELECT obj_description(to_regnamespace(%s)::oid, 'pg_namespace')", (schema,)).fetchone()
    try:
        data = json.loads(row[0]) if row and row[0] else {}
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def schema_stamp(conn: psycopg.Connection, schema: str) -> dict:
    """The build identity publish wrote into the schema comment ({} when none)."""
    data = _raw_stamp(conn, schema)
    return data if "build_id" in data else {}


def row_counts(conn: psycopg.Connection, schema: str) -> dict[str, int]:
    return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, t))).fetchone()[0]
            for t in _relations(conn, schema)}


def _check_summary(verdict: GateVerdict) -> tuple[str, dict]:
    n = verdict.counts()
    text = f"{n['passed']} checks passed, {n['warned']} warned, {n['failed']} failed"
    if verdict.warned():
        text += " (warnings: " + ", ".join(c.name for c in verdict.warned()) + ")"
    return text, {c.name: c.status for c in verdict.checks}


def _create_health_views(conn: psycopg.Connection, schema: str, build_id: str) -> None:
    """publication_info (this build) and data_health_runs (every run) inside the build, reading meta.

    Views run with their owner's rights, so BI roles read them without any
    access to meta; they expose run ids, dates, counts and statuses only.
    """
    has_quarantine = conn.execute("SELECT to_regclass('meta.quarantine') IS NOT NULL").fetchone()[0]
    has_manifest = conn.execute("SELECT to_regclass('meta.load_manifest') IS NOT NULL").fetchone()[0]
    ident = sql.Identifier
    conn.execute(sql.SQL("DROP VIEW IF EXISTS {}, {}").format(
        ident(schema, "publication_info"), ident(schema, "data_health_runs")))
    conn.execute(sql.SQL("""
        CREATE VIEW {} AS
        SELECT p.build_id,
               p.as_of_date,
               p.published_at,
               p.row_counts,
               p.check_summary,
               (SELECT max(l.published_at) FROM meta.publications l WHERE l.build_id = p.build_id) AS live_since,
               (p.watermarks ->> 'mis')::timestamptz AS mis_data_until,
               (p.watermarks ->> 'surveys')::timestamptz AS surveys_data_until,
               p.run_id
        FROM meta.publications p
        WHERE p.build_id = {} AND p.action = 'publish'
        """).format(ident(schema, "publication_info"), sql.Literal(build_id)))
    quarantine = sql.SQL(
        "LEFT JOIN (SELECT run_id, count(*) AS n FROM meta.quarantine GROUP BY run_id) q ON q.run_id = r.run_id"
        if has_quarantine else "LEFT JOIN (SELECT NULL::text AS run_id, 0::bigint AS n) q ON false")
    incomplete = sql.SQL("""
        UNION ALL
        SELECT m.run_id, max(m.as_of), NULL::boolean, NULL::integer, NULL::integer, NULL::integer, max(m.finished_at)
        FROM meta.load_manifest m
        WHERE NOT EXISTS (SELECT 1 FROM meta.gate_runs g WHERE g.run_id = m.run_id)
        GROUP BY m.run_id""" if has_manifest else "")
    conn.execute(sql.SQL("""
        CREATE VIEW {view} AS
        WITH runs AS (
            SELECT g.run_id, g.as_of_date, g.passed, g.checks_passed, g.checks_failed, g.checks_warned,
                   g.finished_at AS checked_at
            FROM meta.gate_runs g
            {incomplete}
        )
        SELECT r.run_id,
               r.as_of_date,
               p.published_at,
               CASE WHEN p.published_at IS NOT NULL THEN 'published'
                    WHEN r.passed THEN 'passed'
                    WHEN r.passed IS NULL THEN 'incomplete'
                    ELSE 'blocked' END::text AS status,
               r.checks_passed,
               r.checks_failed,
               r.checks_warned,
               coalesce(q.n, 0)::bigint AS quarantine_rows,
               r.checked_at
        FROM runs r
        LEFT JOIN LATERAL (
            SELECT max(x.published_at) AS published_at FROM meta.publications x
            WHERE x.run_id = r.run_id AND x.action = 'publish') p ON true
        {quarantine}
        """).format(view=ident(schema, "data_health_runs"), incomplete=incomplete, quarantine=quarantine))
    for view in ("publication_info", "data_health_runs"):
        conn.execute(sql.SQL("COMMENT ON VIEW {} IS {}").format(ident(schema, view), sql.Literal(
            "What BI is looking at and how fresh it is (build, as-of date, publication time, row counts, checks)"
            if view == "publication_info" else
            "Every nightly run: as-of date, gate verdict counts, quarantined rows, when it was published")))


def _with_lock_retries(action, what: str):
    """Run action() (one transaction) until its locks are granted."""
    pause = 0.1
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            return action()
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as exc:
            if attempt == LOCK_ATTEMPTS:
                raise PublishError(
                    f"{what}: readers kept the published tables locked through {LOCK_ATTEMPTS} attempts "
                    f"({str(exc).strip().splitlines()[0]}); analytics is unchanged - retry later") from None
            log.info("%s: tables busy (attempt %d/%d), retrying in %.1fs", what, attempt, LOCK_ATTEMPTS, pause)
            time.sleep(pause)
            pause = min(pause * 2, LOCK_MAX_PAUSE_S)


def _start(conn: psycopg.Connection) -> None:
    """Publishing is a unit of work: commit what the caller left open (e.g. ensure_bi_roles)."""
    status = conn.info.transaction_status
    if status == psycopg.pq.TransactionStatus.INERROR:
        conn.rollback()
    elif status == psycopg.pq.TransactionStatus.INTRANS:
        conn.commit()
    with conn.transaction():
        ensure_gate_tables(conn)  # the data-health views read meta.gate_runs
        ensure_publication_tables(conn)


def publish(wh_conn: psycopg.Connection, run_id: str, as_of: date, verdict: GateVerdict | None = None) -> dict:
    """Swap the build into the published schema if the gate passed this run; return what was published.

    verdict: the gate's verdict; when None, the verdict recorded in
    meta.gate_runs for run_id is used (publish never publishes an unjudged run).
    Raises PublishBlocked (verdict did not pass) or PublishError; in both cases
    analytics is untouched.
    """
    _start(wh_conn)
    if verdict is None:
        verdict = read_verdict(wh_conn, run_id)
        if verdict is None:
            raise PublishBlocked(f"run {run_id} was never judged by the quality gate (no row in meta.gate_runs): "
                                 "nothing is published without a passing verdict")
    if not verdict.passed:
        raise PublishBlocked(verdict.summary())
    analytics, build, prev = _schemas()
    build_id = f"{as_of:%Y%m%d}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    summary, checks = _check_summary(verdict)

    hint: dict = {}

    def swap() -> dict:
        with wh_conn.transaction():
            wh_conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            wh_conn.execute("SELECT pg_advisory_xact_lock(hashtext('spm_warehouse.publish'))")
            if not _schema_exists(wh_conn, build):
                raise PublishError(f"nothing to publish: schema {build} does not exist (did the dbt build run, "
                                   f"or was this build published already?)")
            if not _relations(wh_conn, build, ("r", "p", "m", "v")):
                raise PublishError(f"nothing to publish: schema {build} is empty")
            stamp_now = _raw_stamp(wh_conn, build)
            if RECYCLED_KEY in stamp_now:
                raise PublishError(f"nothing to publish: schema {build} holds the recycled publication "
                                   f"{stamp_now[RECYCLED_KEY]}, not a build of run {run_id} (was this build "
                                   f"published already?)")
            built_by = stamp_now.get("built_by_run_id")
            if built_by is not None and built_by != run_id:
                raise PublishError(f"nothing to publish for run {run_id}: schema {build} was last built by run "
                                   f"{built_by}")
            dependents = outside_dependents(wh_conn, [analytics, prev, build])
            if dependents:
                raise PublishError(
                    "objects outside the published schemas depend on published tables and would be dropped "
                    "or left pointing at an old build: " + "; ".join(dependents)
                    + ". Drop them and query analytics by name (e.g. a Superset virtual dataset) instead.")
            # The slow part first, while readers are not affected: stamp, views, row counts, old previous build.
            stamp = {"build_id": build_id, "run_id": run_id, "as_of_date": as_of.isoformat()}
            wh_conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                sql.Identifier(build), sql.Literal(json.dumps(stamp))))
            _create_health_views(wh_conn, build, build_id)
            counts = row_counts(wh_conn, build)
            live = _schema_exists(wh_conn, analytics)
            replaced = schema_stamp(wh_conn, analytics).get("build_id") if live else None
            recycled = None
            if live and _schema_exists(wh_conn, prev):
                _lock_live(wh_conn, [prev], hint)
                if settings.get("SPM_RECYCLE_BUILD") == "1":
                    # The publication before last becomes the next build schema: its incremental
                    # facts then only catch up two nights of changes instead of being rebuilt.
                    recycled = schema_stamp(wh_conn, prev).get("build_id") or "unknown"
                    wh_conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                        sql.Identifier(prev), sql.Identifier(build + RECYCLING_SUFFIX)))
                else:
                    wh_conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(prev)))
            # The swap itself: lock the live tables, rename, grant - then commit makes it visible at once.
            if live:
                _lock_live(wh_conn, [analytics], hint)
                wh_conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                    sql.Identifier(analytics), sql.Identifier(prev)))
            wh_conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                sql.Identifier(build), sql.Identifier(analytics)))
            if recycled is not None:
                wh_conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                    sql.Identifier(build + RECYCLING_SUFFIX), sql.Identifier(build)))
                mark_recycled(wh_conn, build, recycled)
            elif _schema_exists(wh_conn, spare_schema()):
                # no publication before last yet: the spare copy the first publication left is
                # tomorrow's build schema (it holds the incremental marts only, never published)
                recycled = "spare"
                wh_conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                    sql.Identifier(spare_schema()), sql.Identifier(build)))
                mark_recycled(wh_conn, build, recycled)
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

    result = _with_lock_retries(swap, f"publish {build_id}")
    log.info("published build %s (as of %s) into %s: %s", build_id, as_of, analytics, summary)
    return result


def rollback(wh_conn: psycopg.Connection) -> dict:
    """Swap analytics and analytics_prev (one transaction) and record it; a second rollback rolls forward."""
    _start(wh_conn)
    analytics, _build, prev = _schemas()
    swap_name = analytics + "_swap"
    hint: dict = {}

    def swap() -> dict:
        with wh_conn.transaction():
            wh_conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            wh_conn.execute("SELECT pg_advisory_xact_lock(hashtext('spm_warehouse.publish'))")
            if not _schema_exists(wh_conn, prev):
                raise RollbackUnavailable(f"no previous publication to roll back to: schema {prev} does not exist")
            restored = schema_stamp(wh_conn, prev)
            current = schema_stamp(wh_conn, analytics) if _schema_exists(wh_conn, analytics) else {}
            live = _schema_exists(wh_conn, analytics)
            _lock_live(wh_conn, [prev, analytics] if live else [prev], hint)
            if live:
                wh_conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                    sql.Identifier(analytics), sql.Identifier(swap_name)))
            wh_conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                sql.Identifier(prev), sql.Identifier(analytics)))
            if _schema_exists(wh_conn, swap_name):
                wh_conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                    sql.Identifier(swap_name), sql.Identifier(prev)))
            roles.apply_published_access(wh_conn, analytics, prev_schema=prev)
            build_id = restored.get("build_id") or "unknown"
            original = wh_conn.execute(
                """SELECT as_of_date, row_counts, check_summary, checks, metrics, watermarks FROM meta.publications
                   WHERE build_id = %s AND action = 'publish' ORDER BY published_at DESC LIMIT 1""",
                (build_id,)).fetchone()
            if original is None:  # a build published by something else: describe it from what is there
                as_of_text = restored.get("as_of_date")
                original = (date.fromisoformat(as_of_text) if as_of_text else date.today(),
                            row_counts(wh_conn, analytics), "restored by rollback (no publication record)", {}, {}, {})
            published_at = wh_conn.execute(
                """INSERT INTO meta.publications (build_id, action, run_id, as_of_date, row_counts, check_summary,
                                                  checks, metrics, watermarks, replaced_build_id)
                   VALUES (%s, 'rollback', NULL, %s, %s::jsonb, %s, %s::jsonb, %s::jsonb, %s::jsonb, %s)
                   RETURNING published_at""",
                (build_id, original[0], json.dumps(original[1]), original[2], json.dumps(original[3]),
                 json.dumps(original[4]), json.dumps(original[5]), current.get("build_id")),
            ).fetchone()[0]
        return {"restored_build_id": build_id, "as_of_date": str(original[0]), "replaced_build_id": current.get("build_id"),
                "published_at": published_at.isoformat(), "schema": analytics, "previous_schema": prev}

    result = _with_lock_retries(swap, "rollback")
    log.info("rolled back: %s is build %s again (as of %s)", analytics, result["restored_build_id"], result["as_of_date"])
    return result
