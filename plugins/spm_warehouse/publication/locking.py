"""How publication and rollback take the published tables without hurting readers.

Everything slow happens before publish touches a live table. Then it waits (up
to LOCK_TIMEOUT) for ONE table - the one a reader held at the last attempt -
while holding no other live table, and takes all the others with NOWAIT.
Waiting while holding nothing a reader needs cannot deadlock with a reader;
NOWAIT never waits; and the queued wait makes new readers of that table line
up behind publish, so a busy dashboard cannot starve the publication. A
failed attempt rolls back (analytics untouched) and is retried up to
LOCK_ATTEMPTS times.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Callable, TypeVar

import psycopg
from psycopg import sql

from spm_warehouse.fact_versions import HISTORY_SCHEMA, data_relations, history_views

log = logging.getLogger(__name__)

# Lock acquisition: attempts, with a pause between them that grows to LOCK_MAX_PAUSE_S.
LOCK_ATTEMPTS = 60
LOCK_MAX_PAUSE_S = 2.0
# How long one attempt may wait for a lock (readers of that table wait behind publish meanwhile).
LOCK_TIMEOUT = "5s"
_LOCKED_RELATION = re.compile(r'relation "([^"]+)"')
# One publisher or rollback at a time, whichever process runs it.
PUBLISH_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext('spm_warehouse.publish'))"

T = TypeVar("T")


class PublishError(RuntimeError):
    """Publishing could not happen (nothing built, dependent objects, locks); analytics is unchanged."""


def require_idle(conn: psycopg.Connection, what: str) -> None:
    """Publication and rollback commit their own transaction, so they never take a caller's work with them."""
    if not conn.autocommit and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise PublishError(f"{what} runs in a transaction of its own: commit or roll back the connection's "
                           "open transaction first")


def begin_swap(conn: psycopg.Connection) -> None:
    """First statements of a swap transaction: bounded lock waits, one publisher at a time."""
    conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    conn.execute(PUBLISH_LOCK_SQL)


def lock_live(conn: psycopg.Connection, schemas: list[str], hint: dict) -> None:
    """ACCESS EXCLUSIVE on every table of these schemas: wait for the one that was busy last time, NOWAIT the rest.

    hint["busy"] remembers which table a reader held when an attempt failed,
    so the next attempt queues for exactly that one (holding no other table of
    these schemas meanwhile, which is what makes waiting deadlock-free).
    """
    # the views of the versioned facts too: a query holding one must not see the other build's tables
    tables = [(schema, t) for schema in schemas for t in data_relations(conn, schema)]
    if not tables:
        return
    # PostgreSQL locks a view's base tables with it: the versions tables behind those views can be the
    # busy relation too (a reader, or autovacuum, which gives way to a waiting lock but not to NOWAIT),
    # and its error names them without their schema
    bases = sorted({(HISTORY_SCHEMA, base) for schema in schemas for _, base in history_views(conn, schema)})
    busy = hint.get("busy")
    for schema, t in tables + bases:
        if busy in (f"{schema}.{t}", t if schema == HISTORY_SCHEMA else None):
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


def with_lock_retries(action: Callable[[], T], what: str) -> T:
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
