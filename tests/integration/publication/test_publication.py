"""Write-audit-publish: the swap, blocked publications, rollback, readers during a publish."""

from __future__ import annotations

import threading
from datetime import date

import psycopg
import pytest
from gate_tiny_warehouse import AS_OF, RUN_ID, analytics_fingerprint, build_marts, build_raw
from psycopg import sql

from spm_warehouse import gate, roles
from spm_warehouse import publication as publish
from spm_warehouse.gate import CheckResult, GateVerdict

PASSED = GateVerdict(passed=True, checks=[CheckResult("dbt.tests", "dbt", "pass", True, {}, "ok")])


def failed_verdict(run_id: str = RUN_ID) -> GateVerdict:
    return GateVerdict(passed=False, run_id=run_id, as_of=AS_OF, checks=[
        CheckResult("dbt.tests", "dbt", "pass", True, {}, "ok"),
        CheckResult("reconciliation.outstanding_raw", "reconciliation", "fail", True,
                    {"mismatched_loans": 2, "active_loans": 16}, "2 of 16 active loans differ"),
    ])


@pytest.fixture
def wh(fresh_database):
    url = fresh_database("publish")
    with psycopg.connect(url) as conn:
        conn.rows = build_raw(conn)  # type: ignore[attr-defined]
        conn.commit()
        roles.ensure_bi_roles(conn)
        conn.url = url  # type: ignore[attr-defined]
        yield conn


def new_build(conn, marker: str) -> None:
    build_marts(conn, conn.rows, marker=marker)
    conn.commit()


def live_marker(conn) -> str:
    return conn.execute("SELECT product_name FROM analytics.dim_product").fetchone()[0]


def test_a_passing_run_publishes_and_records_it(wh):
    new_build(wh, "build-1")
    result = publish.publish(wh, "run-1", AS_OF, PASSED)
    assert live_marker(wh) == "build-1"
    assert wh.execute("SELECT to_regnamespace('analytics_build')").fetchone()[0] is None
    assert result["row_counts"] == {"dim_product": 1, "fct_portfolio_month": 16, "kpi_branch_month": 2}
    row = wh.execute("""SELECT build_id, action, run_id, as_of_date, row_counts, check_summary
                        FROM meta.publications""").fetchall()
    assert row == [(result["build_id"], "publish", "run-1", AS_OF, result["row_counts"],
                    "1 checks passed, 0 warned, 0 failed")]
    info = wh.execute("SELECT build_id, as_of_date, row_counts, check_summary FROM analytics.publication_info").fetchall()
    assert info == [(result["build_id"], AS_OF, result["row_counts"], "1 checks passed, 0 warned, 0 failed")]
    # second publication: the first is kept as analytics_prev
    new_build(wh, "build-2")
    second = publish.publish(wh, "run-2", AS_OF, PASSED)
    assert second["replaced_build_id"] == result["build_id"]
    assert live_marker(wh) == "build-2"
    assert wh.execute("SELECT product_name FROM analytics_prev.dim_product").fetchone()[0] == "build-1"
    # each build's publication_info describes itself
    assert wh.execute("SELECT build_id FROM analytics_prev.publication_info").fetchone()[0] == result["build_id"]


def test_a_blocked_run_leaves_analytics_byte_for_byte_unchanged(wh):
    new_build(wh, "good")
    publish.publish(wh, "run-good", AS_OF, PASSED)
    new_build(wh, "also-good")
    publish.publish(wh, "run-good-2", AS_OF, PASSED)
    wh.commit()
    before = analytics_fingerprint(wh), analytics_fingerprint(wh, "analytics_prev")
    n_pub = wh.execute("SELECT count(*) FROM meta.publications").fetchone()[0]
    wh.commit()
    new_build(wh, "bad")
    with pytest.raises(publish.PublishBlocked) as blocked:
        publish.publish(wh, "run-bad", AS_OF, failed_verdict("run-bad"))
    message = str(blocked.value)
    assert "reconciliation.outstanding_raw: 2 of 16 active loans differ" in message
    assert "mismatched_loans=2" in message
    after = analytics_fingerprint(wh), analytics_fingerprint(wh, "analytics_prev")
    assert after == before
    assert live_marker(wh) == "also-good"
    assert wh.execute("SELECT count(*) FROM meta.publications").fetchone()[0] == n_pub
    # the blocked build stays where it is, for inspection
    assert wh.execute("SELECT product_name FROM analytics_build.dim_product").fetchone()[0] == "bad"


def test_publish_uses_the_recorded_verdict_and_refuses_an_unjudged_run(wh):
    new_build(wh, "x")
    with pytest.raises(publish.PublishBlocked, match="never judged by the quality gate"):
        publish.publish(wh, "run-unjudged", AS_OF)
    gate.ensure_gate_tables(wh)
    verdict = failed_verdict("run-judged")
    verdict.started_at = verdict.finished_at = date(2024, 7, 1)
    gate.record_verdict(wh, verdict)
    wh.commit()
    with pytest.raises(publish.PublishBlocked, match="reconciliation.outstanding_raw"):
        publish.publish(wh, "run-judged", AS_OF)
    assert wh.execute("SELECT to_regnamespace('analytics')").fetchone()[0] is None
    passed = GateVerdict(passed=True, checks=[], run_id="run-ok", as_of=AS_OF, started_at=date(2024, 7, 1),
                         finished_at=date(2024, 7, 1), facts={"metrics": {"gross_loan_portfolio": 12600.0}})
    gate.record_verdict(wh, passed)
    wh.commit()
    result = publish.publish(wh, "run-ok", AS_OF)
    assert live_marker(wh) == "x"
    assert wh.execute("SELECT metrics FROM meta.publications WHERE build_id = %s",
                      (result["build_id"],)).fetchone()[0] == {"gross_loan_portfolio": 12600.0}


def test_rollback_restores_the_previous_build_and_records_it(wh):
    with pytest.raises(publish.RollbackUnavailable):
        publish.rollback(wh)
    new_build(wh, "first")
    first = publish.publish(wh, "run-1", AS_OF, PASSED)
    new_build(wh, "second")
    second = publish.publish(wh, "run-2", date(2024, 7, 1), PASSED)
    wh.commit()
    result = publish.rollback(wh)
    assert result["restored_build_id"] == first["build_id"]
    assert result["replaced_build_id"] == second["build_id"]
    assert live_marker(wh) == "first"
    assert wh.execute("SELECT product_name FROM analytics_prev.dim_product").fetchone()[0] == "second"
    last = wh.execute("""SELECT build_id, action, as_of_date, replaced_build_id FROM meta.publications
                         ORDER BY publication_id DESC LIMIT 1""").fetchone()
    assert last == (first["build_id"], "rollback", AS_OF, second["build_id"])
    # BI sees what it is looking at: the restored build, live again since the rollback
    info = wh.execute("SELECT build_id, as_of_date, live_since > published_at FROM analytics.publication_info").fetchone()
    assert info == (first["build_id"], AS_OF, True)
    # bi_reader can read the restored build and not the rolled-back one
    wh.commit()
    wh.execute("SET ROLE bi_reader")
    assert wh.execute("SELECT count(*) FROM analytics.fct_portfolio_month").fetchone()[0] == 16
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        wh.execute("SELECT count(*) FROM analytics_prev.fct_portfolio_month")
    wh.rollback()
    wh.execute("RESET ROLE")
    wh.commit()  # publication and rollback refuse to run inside a caller's open transaction
    # a second rollback rolls forward
    publish.rollback(wh)
    assert live_marker(wh) == "second"


def test_a_reader_during_publishes_never_sees_an_empty_or_half_schema(fresh_database):
    """Readers loop while many publishes swap builds: every answer comes from one complete build."""
    url = fresh_database("pubrace")
    rows_per_table = 50

    def make_build(conn, i: int) -> None:
        conn.execute("DROP SCHEMA IF EXISTS analytics_build CASCADE")  # publish recycles the one before last
        conn.execute("CREATE SCHEMA analytics_build")
        for t in ("t_a", "t_b"):
            conn.execute(sql.SQL("CREATE TABLE analytics_build.{} AS SELECT %s::text AS build, g AS n "
                                 "FROM generate_series(1, %s) g").format(sql.Identifier(t)), (f"b{i}", rows_per_table))
        conn.execute("CREATE VIEW analytics_build.v_ab AS SELECT (SELECT min(build) FROM analytics_build.t_a) AS a, "
                     "(SELECT min(build) FROM analytics_build.t_b) AS b")
        conn.commit()

    with psycopg.connect(url) as conn:
        make_build(conn, 0)
        publish.publish(conn, "run-0", AS_OF, PASSED)

    stop = threading.Event()
    problems: list = []
    seen: set[str] = set()
    seen_lock = threading.Lock()
    QUERIES = [
        # two tables in one statement: must come from the same build, complete
        "SELECT (SELECT min(build) FROM analytics.t_a), (SELECT min(build) FROM analytics.t_b), "
        "(SELECT count(*) FROM analytics.t_a), (SELECT count(*) FROM analytics.t_b)",
        # a join
        "SELECT min(a.build), min(b.build), count(*) FILTER (WHERE a.n = b.n), count(DISTINCT a.n) "
        "FROM analytics.t_a a JOIN analytics.t_b b ON b.n = a.n",
        # a view over both tables, plus a slow reader that holds its locks for a while
        "SELECT v.a, v.b, (SELECT count(*) FROM analytics.t_a), (SELECT count(*) FROM analytics.t_b) "
        "FROM analytics.v_ab v, pg_sleep(0.05)",
    ]

    def reader(query: str) -> None:
        with psycopg.connect(url, autocommit=True) as r:
            while not stop.is_set():
                try:
                    a, b, n_a, n_b = r.execute(query).fetchone()
                except Exception as exc:  # noqa: BLE001 - any error is a failure of the property
                    problems.append(repr(exc))
                    continue
                if a is None or a != b or n_a != rows_per_table or n_b != rows_per_table:
                    problems.append((a, b, n_a, n_b))
                with seen_lock:
                    seen.add(a)

    threads = [threading.Thread(target=reader, args=(q,), daemon=True) for q in QUERIES]
    for t in threads:
        t.start()
    publishes = 12
    try:
        with psycopg.connect(url) as conn:
            for i in range(1, publishes + 1):
                make_build(conn, i)
                publish.publish(conn, f"run-{i}", AS_OF, PASSED)
                # wait (without a clock) until a reader has seen this build, so reads interleave with publishes
                while not stop.is_set():
                    with seen_lock:
                        if f"b{i}" in seen:
                            break
                    if problems:
                        break
                    threading.Event().wait(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert problems == []
    assert {f"b{i}" for i in range(1, publishes + 1)} <= seen
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM meta.publications").fetchone()[0] == publishes + 1


def test_publish_refuses_when_outside_objects_depend_on_published_tables(wh):
    new_build(wh, "one")
    publish.publish(wh, "run-1", AS_OF, PASSED)
    wh.execute("CREATE SCHEMA sandbox")
    wh.execute("CREATE VIEW sandbox.my_glp AS SELECT sum(gross_loan_portfolio) FROM analytics.kpi_branch_month")
    wh.commit()
    before = analytics_fingerprint(wh)
    new_build(wh, "two")
    with pytest.raises(publish.PublishError, match=r"sandbox\.my_glp -> analytics\.kpi_branch_month"):
        publish.publish(wh, "run-2", AS_OF, PASSED)
    assert analytics_fingerprint(wh) == before


def test_publish_without_a_build_says_so(wh):
    with pytest.raises(publish.PublishError, match="schema analytics_build does not exist"):
        publish.publish(wh, "run-x", AS_OF, PASSED)


def test_data_health_views_show_every_run(wh):
    gate.ensure_gate_tables(wh)
    for run_id, passed in (("run-blocked", False), ("run-ok", True)):
        v = GateVerdict(passed=passed, checks=[CheckResult("a", "dbt", "pass" if passed else "fail", True, {}, "")],
                        run_id=run_id, as_of=AS_OF, started_at=date(2024, 7, 1), finished_at=date(2024, 7, 1))
        gate.record_verdict(wh, v)
    wh.execute("INSERT INTO meta.quarantine (source, source_key, reason, run_id) VALUES "
               "('kobo:a', 'k1', 'unknown_client', 'run-ok'), ('kobo:a', 'k2', 'unknown_client', 'run-ok')")
    wh.commit()
    new_build(wh, "ok")
    publish.publish(wh, "run-ok", AS_OF)
    rows = {r[0]: r[1:] for r in wh.execute(
        """SELECT run_id, status, checks_passed, checks_failed, checks_warned, quarantine_rows, published_at IS NOT NULL
           FROM analytics.data_health_runs""").fetchall()}
    assert rows["run-blocked"] == ("blocked", 0, 1, 0, 0, False)
    assert rows["run-ok"] == ("published", 1, 0, 0, 2, True)
    assert rows[RUN_ID][0] == "incomplete"  # extracted (meta.load_manifest) but never judged


def test_the_publication_before_last_becomes_the_next_build_and_cannot_be_published_as_it_is(wh):
    for marker, run in (("first", "run-1"), ("second", "run-2"), ("third", "run-3")):
        new_build(wh, marker)
        result = publish.publish(wh, run, AS_OF, PASSED)
    assert live_marker(wh) == "third"
    assert wh.execute("SELECT product_name FROM analytics_prev.dim_product").fetchone()[0] == "second"
    # the first publication is the next build schema: its tables are there for incremental models...
    assert wh.execute("SELECT product_name FROM analytics_build.dim_product").fetchone()[0] == "first"
    assert result["recycled_build_id"] is not None
    # ... BI cannot read it ...
    assert not wh.execute("SELECT has_schema_privilege('bi_reader', 'analytics_build', 'USAGE')").fetchone()[0]
    # ... and publishing it without a new build is refused, analytics unchanged
    before = analytics_fingerprint(wh)
    wh.commit()
    with pytest.raises(publish.PublishError, match="recycled publication"):
        publish.publish(wh, "run-4", AS_OF, PASSED)
    assert analytics_fingerprint(wh) == before
    # a build of run-4 stamps the schema; a publish for another run is refused, run-4's is not
    new_build(wh, "fourth")
    publish.stamp_build(wh, "run-4", AS_OF)
    wh.commit()  # stamp_build leaves the commit to its caller
    with pytest.raises(publish.PublishError, match="last built by run run-4"):
        publish.publish(wh, "run-5", AS_OF, PASSED)
    publish.publish(wh, "run-4", AS_OF, PASSED)
    assert live_marker(wh) == "fourth"


def test_recycling_can_be_turned_off(wh, monkeypatch):
    monkeypatch.setenv("SPM_RECYCLE_BUILD", "0")
    for marker, run in (("first", "run-1"), ("second", "run-2"), ("third", "run-3")):
        new_build(wh, marker)
        publish.publish(wh, run, AS_OF, PASSED)
    assert wh.execute("SELECT to_regnamespace('analytics_build')").fetchone()[0] is None


def test_publish_refuses_a_verdict_of_another_run(wh):
    new_build(wh, "x")
    other = GateVerdict(passed=True, checks=[CheckResult("dbt.build", "dbt", "pass", True, {}, "ok")],
                        run_id="run-other", as_of=AS_OF)
    with pytest.raises(publish.PublishBlocked, match="of run run-other, not of run run-mine"):
        publish.publish(wh, "run-mine", AS_OF, other)
    assert wh.execute("SELECT to_regnamespace('analytics')").fetchone()[0] is None


def test_the_gate_verdict_survives_the_trip_through_xcom():
    """The gate task returns as_dict(); publish rebuilds the verdict from it, blocking checks included."""
    failed = failed_verdict("run-x")
    failed.facts = {"metrics": {"gross_loan_portfolio": 12600.0}, "watermarks": {"mis": "2024-06-30 00:00:00+00:00"}}
    back = GateVerdict.from_dict(failed.as_dict())
    assert (back.passed, back.run_id, back.as_of) == (False, "run-x", failed.as_of)
    assert [(c.name, c.status, c.blocking, c.numbers) for c in back.checks] == \
        [(c.name, c.status, c.blocking, c.numbers) for c in failed.checks]
    assert back.facts["metrics"] == {"gross_loan_portfolio": 12600.0}
    # a dict that claims to pass while carrying a blocking failure does not pass
    forged = dict(failed.as_dict(), passed=True)
    assert GateVerdict.from_dict(forged).passed is False


def test_data_health_says_which_check_warned_why_rows_were_quarantined_and_when_data_is_stale(wh, monkeypatch):
    gate.ensure_gate_tables(wh)
    checks = [CheckResult("dbt.test_warnings", "dbt", "warn", False, {"warned": 1}, "1 dbt tests warned: x (1 rows)"),
              CheckResult("rows.kpi", "rows", "pass", True, {}, "")]
    gate.record_verdict(wh, GateVerdict(passed=True, checks=checks, run_id="run-ok", as_of=AS_OF,
                                        started_at=date(2024, 7, 1), finished_at=date(2024, 7, 1)))
    wh.execute("INSERT INTO meta.quarantine (source, source_key, reason, run_id) VALUES "
               "('kobo:a', 'k1', 'unknown_client: account_no ''976140861'' not in m_client', 'run-ok'), "
               "('kobo:a', 'k2', 'unknown_client: account_no ''950745863'' not in m_client', 'run-ok'), "
               "('kobo:a', 'k3', 'missing_ppi_answer: ppi/q03 empty', 'run-ok'), ('kobo:a', 'k4', NULL, 'run-ok')")
    wh.commit()
    monkeypatch.setenv("SPM_PUBLICATION_STALE_DAYS", "3")
    new_build(wh, "ok")
    publish.publish(wh, "run-ok", AS_OF)
    assert wh.execute("SELECT check_name, status, blocking, message FROM analytics.data_health_checks").fetchall() == [
        ("dbt.test_warnings", "warn", False, "1 dbt tests warned: x (1 rows)")]
    quarantine = wh.execute("SELECT reason, quarantined_rows FROM analytics.data_health_quarantine "
                            "WHERE run_id = 'run-ok' ORDER BY 1").fetchall()
    assert quarantine == [("missing_ppi_answer", 1), ("no reason recorded", 1), ("unknown_client", 2)]
    # the rejected values (account numbers) stay in meta: BI sees reason codes only
    assert "976140861" not in str(wh.execute("SELECT * FROM analytics.data_health_quarantine").fetchall())
    stale, age, note = wh.execute("SELECT is_stale, data_age_days, freshness FROM analytics.publication_info").fetchone()
    assert stale is True and age == (date.today() - AS_OF).days and note.startswith(f"STALE: the figures are as of {AS_OF}")
    monkeypatch.setenv("SPM_PUBLICATION_STALE_DAYS", str(age + 1))
    new_build(wh, "again")
    publish.publish(wh, "run-ok", AS_OF)
    assert wh.execute("SELECT is_stale, freshness LIKE 'Fresh:%' FROM analytics.publication_info").fetchone() == (
        False, True)
    for view in ("data_health_checks", "data_health_quarantine"):
        assert wh.execute("SELECT has_table_privilege('bi_reader', %s, 'SELECT')", (f"analytics.{view}",)).fetchone()[0]
