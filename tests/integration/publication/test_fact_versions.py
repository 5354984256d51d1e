"""The versioned facts: one table for every copy of the marts, views pinned at publish, old versions dropped.

The versions table is written here the way dbt's versions models write it
(dbt_project/macros/history.sql: close the replaced rows, append the new ones,
both with a version from history.versions); the dbt side is covered by
test_kpi_incremental.py and the e2e nights.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from gate_tiny_warehouse import AS_OF, analytics_fingerprint, build_marts, build_raw, build_versioned_fact

from spm_warehouse import fact_versions
from spm_warehouse import publication as publish
from spm_warehouse.gate import CheckResult, GateVerdict

PASSED = GateVerdict(passed=True, checks=[CheckResult("dbt.tests", "dbt", "pass", True, {}, "ok")])
OPEN = fact_versions.OPEN_VERSION


@pytest.fixture
def wh(fresh_database):
    url = fresh_database("fact_versions")
    with psycopg.connect(url) as conn:
        conn.rows = build_raw(conn)  # type: ignore[attr-defined]
        conn.url = url  # type: ignore[attr-defined]
        conn.commit()
        yield conn


def night(conn: psycopg.Connection, marker: str, amounts: dict[int, int | None]) -> None:
    """A build: the other marts, and the loans in `amounts` closed and written again (None: removed)."""
    build_marts(conn, conn.rows, marker=marker)
    build_versioned_fact(conn, {loan: None if amount is None else (1, amount) for loan, amount in amounts.items()})
    conn.commit()


def shown(conn: psycopg.Connection, schema: str) -> dict[int, int]:
    rows = {loan: int(amount) for loan, amount in conn.execute(f"SELECT loan_id, amount FROM {schema}.fct_x")}
    conn.commit()  # publish and rollback run in transactions of their own
    return rows


def stored(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM history.fct_x__versions").fetchone()[0]


def test_published_and_previous_facts_keep_their_night_while_later_builds_write(wh):
    night(wh, "n1", {1: 10, 2: 20, 3: 30})
    first = publish.publish(wh, "run-1", AS_OF, PASSED)
    assert first["row_counts"]["fct_x"] == 3  # the view is data: counted, locked and pinned
    version = publish.read_state(wh, "analytics").history_version
    assert version is not None and f"_valid_from <= {version}" in wh.execute(
        "SELECT pg_get_viewdef('analytics.fct_x'::regclass)").fetchone()[0]
    before = analytics_fingerprint(wh)
    wh.commit()

    # tonight's build closes and appends rows of the same table: the published fact does not move
    night(wh, "n2", {2: 21, 3: None, 4: 40})
    assert shown(wh, "analytics_build") == {1: 10, 2: 21, 4: 40}
    assert shown(wh, "analytics") == {1: 10, 2: 20, 3: 30}
    assert analytics_fingerprint(wh) == before
    wh.commit()

    publish.publish(wh, "run-2", AS_OF, PASSED)
    assert shown(wh, "analytics") == {1: 10, 2: 21, 4: 40}
    assert shown(wh, "analytics_prev") == {1: 10, 2: 20, 3: 30}
    # rollback brings the first night back from the same table, and a second rollback rolls forward
    publish.rollback(wh)
    assert shown(wh, "analytics") == {1: 10, 2: 20, 3: 30}
    publish.rollback(wh)
    assert shown(wh, "analytics") == {1: 10, 2: 21, 4: 40}


def test_garbage_collection_deletes_only_what_no_retained_view_can_show(wh):
    night(wh, "n1", {1: 10, 2: 20, 3: 30})
    publish.publish(wh, "run-1", AS_OF, PASSED)
    night(wh, "n2", {2: 21, 3: None})
    publish.publish(wh, "run-2", AS_OF, PASSED)
    night(wh, "n3", {2: 22, 1: 11})
    publish.publish(wh, "run-3", AS_OF, PASSED)
    # stored: night 1's 1, 2, 3 (2 and 3 closed at night 2, 1 at night 3), night 2's 2 (closed at night 3),
    # night 3's 1 and 2
    assert stored(wh) == 6
    views = {s: shown(wh, s) for s in ("analytics", "analytics_prev")}
    assert views == {"analytics": {1: 11, 2: 22}, "analytics_prev": {1: 10, 2: 21}}

    # a publication whose views carry no version keeps every row
    assert fact_versions.collect_garbage(wh, [None, 5]) == {}
    retained = publish.retained_history_versions(wh)
    assert len(retained) == 2 and None not in retained
    deleted = fact_versions.collect_garbage(wh, retained)
    wh.commit()
    # night 1's loans 2 and 3 were replaced before the previous publication: no view can show them
    assert deleted == {"fct_x__versions": 2}
    assert stored(wh) == 4
    assert {s: shown(wh, s) for s in views} == views
    assert wh.execute("SELECT count(*) FROM history.fct_x__versions WHERE _valid_to = %s", (OPEN,)).fetchone()[0] == 2
    # and again: nothing more to delete until the next publication
    assert fact_versions.collect_garbage(wh, retained) == {"fct_x__versions": 0}


def test_publish_queues_for_a_versions_table_that_autovacuum_holds(wh):
    """Autovacuum of a versions table gives way to a lock that waits, never to NOWAIT.

    LOCK on a fact view locks its versions table too, and PostgreSQL's error then names
    the table without its schema: publish must recognise it and queue for it. The
    holder here behaves like autovacuum: it keeps its lock until a lock request waits.
    """
    night(wh, "n1", {1: 10})
    publish.publish(wh, "run-1", AS_OF, PASSED)
    night(wh, "n2", {1: 11})
    seen_waiter = threading.Event()
    held = threading.Event()

    def vacuum_like() -> None:
        with psycopg.connect(wh.url) as holder:
            holder.execute("LOCK TABLE history.fct_x__versions IN SHARE UPDATE EXCLUSIVE MODE")
            held.set()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with psycopg.connect(wh.url, autocommit=True) as probe:
                    if probe.execute("""SELECT count(*) FROM pg_locks
                                        WHERE relation = 'history.fct_x__versions'::regclass AND NOT granted""").fetchone()[0]:
                        seen_waiter.set()
                        break
                time.sleep(0.1)
            holder.rollback()

    holder = threading.Thread(target=vacuum_like)
    holder.start()
    held.wait(10)
    publish.publish(wh, "run-2", AS_OF, PASSED)
    holder.join()
    assert seen_waiter.is_set(), "publish never queued for the versions table (it polled with NOWAIT)"
    assert shown(wh, "analytics") == {1: 11}
