"""BI access: bi_reader reads analytics only; branch roles see only their branch (row-level security).

Every check logs in as the role itself (with bi_reader's password from the
settings, and a password given to each branch role: the embedded test server
authenticates every login with scram-sha-256), so PostgreSQL's own privilege
and policy checks are what is tested.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from gate_tiny_warehouse import AS_OF, build_marts, build_raw, build_versioned_fact, clients
from psycopg import sql

from spm_warehouse import publication as publish
from spm_warehouse import roles, settings
from spm_warehouse.gate import GateVerdict, load_thresholds

PASSED = GateVerdict(passed=True, checks=[])
BM_PASSWORD = "bm-test-password-1"
PRIVATE = ["raw_mis.m_client", "raw_kobo.submissions", "staging.stg_client", "intermediate.int_loan",
           "meta.publications", "meta.quarantine", "analytics_build.kpi_branch_month",
           "analytics_prev.kpi_branch_month", "reference.ppi_points"]


def as_user(url: str, user: str, password: str = BM_PASSWORD) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = quote(user, safe="") + (":" + quote(password, safe="") if password else "") + "@" + host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def can_read(url: str, relation: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            conn.execute(f"SELECT count(*) FROM {relation}").fetchone()
            return True
        except psycopg.errors.InsufficientPrivilege:
            return False


@pytest.fixture
def warehouse(fresh_database):
    """Every schema of the warehouse, two publications (analytics + analytics_prev) and a pending build."""
    url = fresh_database("roles")
    with psycopg.connect(url) as conn:
        rows = build_raw(conn)
        conn.execute("""CREATE SCHEMA raw_kobo; CREATE TABLE raw_kobo.submissions (payload jsonb);
                        CREATE SCHEMA staging; CREATE VIEW staging.stg_client AS SELECT id FROM raw_mis.m_client;
                        CREATE SCHEMA intermediate; CREATE TABLE intermediate.int_loan AS SELECT id FROM raw_mis.m_loan;
                        CREATE SCHEMA reference; CREATE TABLE reference.ppi_points (points int)""")
        conn.commit()
        roles.ensure_bi_roles(conn)
        for n, marker in enumerate(("first", "second", "pending")):
            build_marts(conn, rows, marker=marker)
            # a versioned fact (fact_versions.py): loans 1-2 of branch 1, 3-4 of branch 2, amount = night
            build_versioned_fact(conn, {1: (1, n), 2: (1, n), 3: (2, n), 4: (2, n)})
            conn.commit()
            if marker != "pending":
                publish.publish(conn, f"run-{marker}", AS_OF, PASSED)
    return url


@pytest.fixture
def branch_role(warehouse):
    """A login role for a branch manager, dropped after the test (roles are cluster-wide)."""
    name = f"spm_test_bm_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(warehouse, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def branch_rls_on(monkeypatch):
    """SPM_BRANCH_RLS=true (declared here until settings.py lists it)."""
    monkeypatch.setitem(settings.SETTINGS, "SPM_BRANCH_RLS",
                        settings.SETTINGS.get("SPM_BRANCH_RLS", ("false", "branch row-level security")))
    monkeypatch.setenv("SPM_BRANCH_RLS", "true")


def bi_url(warehouse: str) -> str:
    return as_user(warehouse, roles.BI_READER, settings.get("SPM_BI_READER_PASSWORD"))


def test_bi_reader_reads_analytics_and_nothing_else(warehouse):
    url = bi_url(warehouse)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == "bi_reader"
        assert conn.execute("SELECT count(*) FROM analytics.kpi_branch_month").fetchone()[0] == 2
        assert conn.execute("SELECT product_name FROM analytics.dim_product").fetchone()[0] == "second"
        # BI can always see what it is looking at and how fresh it is
        info = conn.execute("SELECT build_id, as_of_date, published_at, row_counts FROM analytics.publication_info").fetchone()
        assert info[1] == AS_OF and info[3]["kpi_branch_month"] == 2
        assert conn.execute("SELECT count(*) FROM analytics.data_health_runs").fetchone()[0] >= 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE analytics.mine (x int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM analytics.dim_product")
    for relation in PRIVATE:
        assert not can_read(url, relation), f"bi_reader can read {relation}"


def test_nothing_published_carries_personal_data(warehouse):

    patterns = [re.compile(p, re.IGNORECASE) for p in load_thresholds()["pii"]["forbidden_columns"]]
    with psycopg.connect(warehouse) as conn:
        cols = conn.execute("""SELECT table_name, column_name FROM information_schema.columns
                               WHERE table_schema = 'analytics'""").fetchall()
        source_pii = conn.execute("""SELECT count(*) FROM information_schema.columns
                                     WHERE table_schema = 'raw_mis' AND column_name = 'firstname'""").fetchone()[0]
    assert cols and source_pii == 0
    assert [c for c in cols if any(p.fullmatch(c[1]) for p in patterns)] == []


def test_bi_reader_password_comes_from_the_settings(warehouse, monkeypatch):
    monkeypatch.setenv("SPM_BI_READER_PASSWORD", "s3cret-from-env")
    try:
        with psycopg.connect(warehouse) as conn:
            roles.ensure_bi_roles(conn)
            stored = conn.execute("SELECT rolpassword, rolcanlogin FROM pg_authid WHERE rolname = 'bi_reader'").fetchone()
        assert stored[1] is True
        assert stored[0] is not None and stored[0].startswith(("SCRAM-SHA-256$", "md5"))
        assert "s3cret-from-env" not in stored[0]
        # an empty setting leaves the password alone (a DBA's password survives the next night)
        monkeypatch.delenv("SPM_BI_READER_PASSWORD")
        with psycopg.connect(warehouse) as conn:
            roles.ensure_bi_roles(conn)
            assert conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'bi_reader'").fetchone()[0] == stored[0]
    finally:
        with psycopg.connect(warehouse) as conn:  # back to the test server's password (settings)
            roles.ensure_bi_roles(conn)


def test_grants_follow_every_publish_and_rollback(warehouse):
    url = bi_url(warehouse)
    with psycopg.connect(warehouse) as conn:
        publish.publish(conn, "run-pending", AS_OF, PASSED)  # a brand-new schema object becomes analytics
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT product_name FROM analytics.dim_product").fetchone()[0] == "pending"
    assert not can_read(url, "analytics_prev.dim_product")
    with psycopg.connect(warehouse) as conn:
        publish.rollback(conn)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT product_name FROM analytics.dim_product").fetchone()[0] == "second"
    assert not can_read(url, "analytics_prev.dim_product")


def test_branch_role_sees_only_its_branch(warehouse, branch_role, branch_rls_on):
    with psycopg.connect(warehouse) as conn:
        roles.set_branch_access(conn, branch_role, [2], create_login=True, password=BM_PASSWORD)
    bm = as_user(warehouse, branch_role)
    with psycopg.connect(bm, autocommit=True) as conn:
        assert conn.execute("SELECT array_agg(DISTINCT branch_id) FROM analytics.kpi_branch_month").fetchone()[0] == [2]
        loans = conn.execute("SELECT count(*), array_agg(DISTINCT branch_id) FROM analytics.fct_portfolio_month").fetchone()
        assert loans == (8, [2])
        assert conn.execute("SELECT count(*) FROM analytics.dim_product").fetchone()[0] == 1  # shared dimension
        assert conn.execute("SELECT count(*) FROM analytics.publication_info").fetchone()[0] == 1
        # the versioned fact: its branch's rows of the published night (the second), through the view
        # and even straight from the versions table, which holds every night and branch
        fact = "SELECT array_agg(loan_id ORDER BY loan_id), array_agg(DISTINCT amount) FROM {}"
        assert conn.execute(fact.format("analytics.fct_x")).fetchone() == ([3, 4], [1])
        assert conn.execute(fact.format("history.fct_x__versions")).fetchone() == ([3, 4], [1])
    for relation in PRIVATE:
        assert not can_read(bm, relation), f"{branch_role} can read {relation}"
    # bi_reader is not restricted by the branch policies, only to the published night
    with psycopg.connect(bi_url(warehouse), autocommit=True) as conn:
        assert conn.execute("SELECT array_agg(DISTINCT branch_id ORDER BY branch_id) FROM analytics.kpi_branch_month"
                            ).fetchone()[0] == [1, 2]
        assert conn.execute(fact.format("analytics.fct_x")).fetchone() == ([1, 2, 3, 4], [1])
        assert conn.execute(fact.format("history.fct_x__versions")).fetchone() == ([1, 2, 3, 4], [1])
    # the next publish brings new tables: the policies come with them
    with psycopg.connect(warehouse) as conn:
        publish.publish(conn, "run-pending", AS_OF, PASSED)
        policies = conn.execute("""SELECT tablename, policyname FROM pg_policies WHERE schemaname = 'analytics'
                                   ORDER BY 1, 2""").fetchall()
    assert ("fct_portfolio_month", f"spm_branch_{branch_role}") in policies
    assert ("kpi_branch_month", "spm_bi_reader_all") in policies
    with psycopg.connect(bm, autocommit=True) as conn:
        assert conn.execute("SELECT product_name FROM analytics.dim_product").fetchone()[0] == "pending"
        assert conn.execute("SELECT array_agg(DISTINCT branch_id) FROM analytics.fct_portfolio_month").fetchone()[0] == [2]
        assert conn.execute(fact.format("analytics.fct_x")).fetchone() == ([3, 4], [2])
    # widening the mapping applies at once
    with psycopg.connect(warehouse) as conn:
        roles.set_branch_access(conn, branch_role, [1, 2])
    with psycopg.connect(bm, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM analytics.fct_portfolio_month").fetchone()[0] == 16
        assert conn.execute(fact.format("analytics.fct_x")).fetchone() == ([1, 2, 3, 4], [2])
    # a rollback brings back the previous night's rows, under the same policies
    with psycopg.connect(warehouse) as conn:
        publish.rollback(conn)
    with psycopg.connect(bm, autocommit=True) as conn:
        assert conn.execute(fact.format("history.fct_x__versions")).fetchone() == ([1, 2, 3, 4], [1])


def test_without_branch_rls_branch_roles_read_nothing(warehouse, branch_role):
    with psycopg.connect(warehouse) as conn:
        roles.set_branch_access(conn, branch_role, [2], create_login=True, password=BM_PASSWORD)
        publish.publish(conn, "run-pending", AS_OF, PASSED)
        assert conn.execute("SELECT count(*) FROM pg_policies WHERE schemaname = 'analytics'").fetchone()[0] == 0
    assert not can_read(as_user(warehouse, branch_role), "analytics.kpi_branch_month")
    assert can_read(bi_url(warehouse), "analytics.kpi_branch_month")
    # the versioned fact: bi_reader reads the published view, never the versions table behind it
    assert not can_read(as_user(warehouse, branch_role), "analytics.fct_x")
    assert can_read(bi_url(warehouse), "analytics.fct_x")
    assert not can_read(bi_url(warehouse), "history.fct_x__versions")


def test_branch_tables_with_client_rows_but_no_branch_are_withheld(warehouse, branch_role, branch_rls_on):
    with psycopg.connect(warehouse) as conn:
        conn.execute("CREATE TABLE analytics_build.fct_survey (client_id bigint, poverty_likelihood numeric)")
        conn.commit()
        roles.set_branch_access(conn, branch_role, [2], create_login=True, password=BM_PASSWORD)
        publish.publish(conn, "run-pending", AS_OF, PASSED)
    assert not can_read(as_user(warehouse, branch_role), "analytics.fct_survey")
    assert can_read(bi_url(warehouse), "analytics.fct_survey")


def _restricted_build(conn: psycopg.Connection, marker: str) -> None:
    """Tonight's restricted marts: real account numbers of clients in branches 1 and 2."""
    conn.execute(f"""CREATE SCHEMA analytics_restricted_build;
                     CREATE TABLE analytics_restricted_build.client_account AS
                     SELECT id AS client_id, office_id AS branch_id, account_no, '{marker}'::text AS build
                     FROM raw_mis.m_client""")
    conn.commit()


def test_real_account_numbers_are_published_restricted_to_branch_roles(warehouse, branch_role, branch_rls_on):
    """analytics_restricted turns with analytics (publish, rollback); bi_reader never reads it; branch roles
    read their branches' rows only (RLS)."""
    with psycopg.connect(warehouse) as conn:
        _restricted_build(conn, "pending")
        roles.set_branch_access(conn, branch_role, [2], create_login=True, password=BM_PASSWORD)
        publish.publish(conn, "run-pending", AS_OF, PASSED)
        assert conn.execute("SELECT to_regnamespace('analytics_restricted_build') IS NULL").fetchone()[0]
        total = conn.execute("SELECT count(*) FROM analytics_restricted.client_account").fetchone()[0]
        in_branch_2 = conn.execute("SELECT count(*) FROM raw_mis.m_client WHERE office_id = 2").fetchone()[0]
    assert 0 < in_branch_2 < total
    bi = bi_url(warehouse)
    assert not can_read(bi, "analytics_restricted.client_account")
    assert can_read(bi, "analytics.kpi_branch_month")
    with psycopg.connect(bi, autocommit=True) as conn:
        assert not conn.execute("SELECT has_schema_privilege('analytics_restricted', 'USAGE')").fetchone()[0]
    with psycopg.connect(as_user(warehouse, branch_role), autocommit=True) as conn:
        rows = conn.execute("SELECT count(*), array_agg(DISTINCT branch_id), min(build) "
                            "FROM analytics_restricted.client_account").fetchone()
    assert rows == (in_branch_2, [2], "pending")

    # the next publication brings its own restricted build, the old one becomes analytics_restricted_prev
    with psycopg.connect(warehouse) as conn:
        build_marts(conn, clients(conn.execute("SELECT count(*) FROM raw_mis.m_client").fetchone()[0]),
                    marker="third")
        publish.stamp_build(conn, "run-third", AS_OF)  # what the dbt build stage does
        _restricted_build(conn, "third")
        publish.publish(conn, "run-third", AS_OF, PASSED)
    with psycopg.connect(as_user(warehouse, branch_role), autocommit=True) as conn:
        assert conn.execute("SELECT min(build) FROM analytics_restricted.client_account").fetchone()[0] == "third"
    assert not can_read(as_user(warehouse, branch_role), "analytics_restricted_prev.client_account")
    assert not can_read(bi, "analytics_restricted_prev.client_account")
    # rollback puts back the real account numbers of the restored build, with the same access
    with psycopg.connect(warehouse) as conn:
        publish.rollback(conn)
        assert conn.execute("SELECT min(build) FROM analytics_restricted_prev.client_account").fetchone()[0] == "third"
    with psycopg.connect(as_user(warehouse, branch_role), autocommit=True) as conn:
        assert conn.execute("SELECT min(build), array_agg(DISTINCT branch_id) FROM analytics_restricted.client_account"
                            ).fetchone() == ("pending", [2])
    assert not can_read(bi, "analytics_restricted.client_account")


def _bi_roles_while_another_database_holds_bi_reader(fresh_database) -> dict:
    """Warehouse A sets bi_reader's password and keeps its transaction open; warehouse B (another
    database of the same server) does the same, waits for A's row, and goes on once A commits."""
    import threading
    import time

    a_url, b_url = fresh_database("roles_a"), fresh_database("roles_b")
    outcome: dict = {}
    with psycopg.connect(a_url) as a, psycopg.connect(b_url) as b, psycopg.connect(a_url, autocommit=True) as watch:
        a.execute("SELECT 1")  # A's transaction is open: ensure_bi_roles runs in a savepoint of it
        roles.ensure_bi_roles(a)

        def other() -> None:
            try:
                roles.ensure_bi_roles(b)
                outcome["ok"] = True
            except psycopg.Error as exc:
                outcome["error"] = str(exc).strip()

        thread = threading.Thread(target=other)
        thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not outcome.get("waited"):
            outcome["waited"] = watch.execute(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                (b.info.backend_pid,)).fetchone()[0] or False
            time.sleep(0.05)
        a.commit()
        thread.join(60)
    return outcome


def test_two_warehouses_of_one_server_publish_bi_readers_password_at_once(fresh_database, monkeypatch):
    """Roles are cluster-wide: two warehouses of one server publishing at the same moment update the
    same pg_authid row. The later one must not fail ("tuple concurrently updated", seen when `make faults`
    ran two worlds at once): it tries again once the first has committed."""
    import os

    monkeypatch.setenv("SPM_BI_READER_PASSWORD", os.environ.get("SPM_BI_READER_PASSWORD") or "reader-roles-test")
    monkeypatch.setattr(roles, "ROLE_UPDATE_ATTEMPTS", 1)  # the race itself: without trying again, B fails
    raced = _bi_roles_while_another_database_holds_bi_reader(fresh_database)
    assert raced["waited"] and "tuple concurrently updated" in raced.get("error", ""), raced
    monkeypatch.undo()
    monkeypatch.setenv("SPM_BI_READER_PASSWORD", os.environ.get("SPM_BI_READER_PASSWORD") or "reader-roles-test")
    fixed = _bi_roles_while_another_database_holds_bi_reader(fresh_database)
    assert fixed == {"waited": True, "ok": True}, fixed
