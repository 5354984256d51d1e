"""Rollback: swap analytics and analytics_prev in one transaction and record it.

A second rollback rolls forward again. The same locking as publish
(locking.py): readers see one build or the other, never a mix.
"""

from __future__ import annotations

import json
import logging
from datetime import date

import psycopg

from spm_warehouse import roles, settings
from spm_warehouse.publication import schemas
from spm_warehouse.publication.locking import PublishError, begin_swap, lock_live, require_idle, with_lock_retries
from spm_warehouse.publication.schemas import read_state, rename_schema, schema_exists
from spm_warehouse.publication.swap import ensure_publication_tables

log = logging.getLogger(__name__)


class RollbackUnavailable(PublishError):
    """There is no previous publication to restore."""


def rollback(wh_conn: psycopg.Connection) -> dict:
    """Swap analytics and analytics_prev (one transaction, committed here) and record it in meta.publications."""
    require_idle(wh_conn, "rollback")
    with wh_conn.transaction():
        ensure_publication_tables(wh_conn)
    analytics, prev = settings.analytics_schema(), schemas.previous_schema()
    swap_name = analytics + "_swap"
    hint: dict = {}

    def swap() -> dict:
        with wh_conn.transaction():
            begin_swap(wh_conn)
            if not schema_exists(wh_conn, prev):
                raise RollbackUnavailable(f"no previous publication to roll back to: schema {prev} does not exist")
            restored = read_state(wh_conn, prev)
            live = schema_exists(wh_conn, analytics)
            current = read_state(wh_conn, analytics) if live else schemas.SchemaState()
            lock_live(wh_conn, [prev, analytics] if live else [prev], hint)
            if live:
                rename_schema(wh_conn, analytics, swap_name)
            rename_schema(wh_conn, prev, analytics)
            if schema_exists(wh_conn, swap_name):
                rename_schema(wh_conn, swap_name, prev)
            # the real account numbers go back with the build they belong to
            restricted, restricted_prev = settings.restricted_schema(), settings.restricted_prev_schema()
            lock_live(wh_conn, [s for s in (restricted, restricted_prev) if schema_exists(wh_conn, s)], hint)
            schemas.rotate(wh_conn, settings.restricted_build_schema(), restricted, restricted_prev,
                           drop_previous=False)
            roles.apply_published_access(wh_conn, analytics, prev_schema=prev)
            build_id = restored.build_id or "unknown"
            original = wh_conn.execute(
                """SELECT as_of_date, row_counts, check_summary, checks, metrics, watermarks FROM meta.publications
                   WHERE build_id = %s AND action = 'publish' ORDER BY published_at DESC LIMIT 1""",
                (build_id,)).fetchone()
            if original is None:  # a build published by something else: describe it from what is there
                as_of = date.fromisoformat(restored.as_of_date) if restored.as_of_date else date.today()
                original = (as_of, schemas.row_counts(wh_conn, analytics),
                            "restored by rollback (no publication record)", {}, {}, {})
            published_at = wh_conn.execute(
                """INSERT INTO meta.publications (build_id, action, run_id, as_of_date, row_counts, check_summary,
                                                  checks, metrics, watermarks, replaced_build_id)
                   VALUES (%s, 'rollback', NULL, %s, %s::jsonb, %s, %s::jsonb, %s::jsonb, %s::jsonb, %s)
                   RETURNING published_at""",
                (build_id, original[0], json.dumps(original[1]), original[2], json.dumps(original[3]),
                 json.dumps(original[4]), json.dumps(original[5]), current.build_id),
            ).fetchone()[0]
        return {"restored_build_id": build_id, "as_of_date": str(original[0]), "replaced_build_id": current.build_id,
                "published_at": published_at.isoformat(), "schema": analytics, "previous_schema": prev}

    result = with_lock_retries(swap, "rollback")
    log.info("rolled back: %s is build %s again (as of %s)", analytics, result["restored_build_id"], result["as_of_date"])
    return result
