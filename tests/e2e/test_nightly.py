"""End to end: the real nightly DAG (`airflow dags test`) on tiny demo data.

The build happens once per session (fixture demo_warehouse in conftest.py);
these tests read what it published and run the DAG again where they must.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from project import ROOT

from spm_warehouse.publication.schemas import HEALTH_VIEWS
from tools.demo import fineract as demo_mis

pytestmark = pytest.mark.e2e

# Views that describe the publications and runs (timestamps, the last runs' checks and quarantine)
# rather than the data: a rerun adds a run to them.
PUBLICATION_METADATA = set(HEALTH_VIEWS)
PII_COLUMNS = {"firstname", "middlename", "lastname", "fullname", "mobile_no", "email_address",
               "date_of_birth", "external_id", "national_id"}


def _ok(demo):
    assert demo.returncode == 0, "spm_nightly failed:\n" + demo.log[-6000:]


def analytics_fingerprint(url: str) -> dict[str, str]:
    """md5 of every published table's rows in a canonical order."""
    out = {}
    with psycopg.connect(url) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'analytics' ORDER BY 1")]
        for name in names:
            if name in PUBLICATION_METADATA:
                continue
            rows = conn.execute(f'SELECT t::text FROM analytics."{name}" t ORDER BY 1').fetchall()
            out[name] = hashlib.md5("\n".join(r[0] for r in rows).encode()).hexdigest() + f":{len(rows)}"
    return out


def test_nightly_run_publishes(demo_warehouse):
    _ok(demo_warehouse)
    with psycopg.connect(demo_warehouse.warehouse_url) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'analytics'")}
        assert {"fct_portfolio_month", "kpi_branch_month"} <= tables
        n_kpi = conn.execute("SELECT count(*) FROM analytics.kpi_branch_month").fetchone()[0]
        assert n_kpi > 0
        last = conn.execute("SELECT max(period_end) FROM analytics.kpi_branch_month").fetchone()[0]
        assert last == demo_warehouse.as_of
        pub = conn.execute(
            "SELECT as_of_date FROM meta.publications ORDER BY published_at DESC LIMIT 1").fetchone()
        assert pub is not None and pub[0] == demo_warehouse.as_of
        # the history-sized facts are published as views of their versions, pinned to the version
        # the publication recorded, and showing every current row of the first night
        stamp = json.loads(conn.execute("SELECT obj_description(to_regnamespace('analytics')::oid, 'pg_namespace')"
                                        ).fetchone()[0])
        version = stamp["history_version"]
        assert isinstance(version, int) and version > 0, stamp
        for fact in ("fct_loan_transaction", "fct_portfolio_month", "fct_client_indicator"):
            kind = conn.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass",
                                (f"analytics.{fact}",)).fetchone()[0]
            assert kind == "v", (fact, kind)
            assert f"_valid_from <= {version}" in conn.execute(
                "SELECT pg_get_viewdef(%s::regclass)", (f"analytics.{fact}",)).fetchone()[0]
            published = conn.execute(f"SELECT count(*) FROM analytics.{fact}").fetchone()[0]
            current = conn.execute(f"SELECT count(*) FROM history.{fact}__versions "
                                   "WHERE _valid_to = 9223372036854775807").fetchone()[0]
            assert published == current > 0, (fact, published, current)


def test_retention_rate_12m_follows_the_contract_formula(demo_warehouse):
    """active / (active twelve periods earlier + new of the twelve periods ending here), per branch."""
    _ok(demo_warehouse)
    with psycopg.connect(demo_warehouse.warehouse_url) as conn:
        rows = conn.execute("SELECT branch_id, period_end, active_clients, new_clients, retention_rate_12m "
                            "FROM analytics.kpi_branch_month ORDER BY branch_id, period_end").fetchall()
    by_branch: dict[int, list] = {}
    for r in rows:
        by_branch.setdefault(r[0], []).append(r)
    checked = 0
    for series in by_branch.values():
        for i, (_b, period_end, active, _new, got) in enumerate(series):
            if i < 12:
                assert got is None, (period_end, got)
                continue
            denominator = series[i - 12][2] + sum(r[3] for r in series[i - 11:i + 1])
            expected = None if denominator == 0 else Decimal(active) / Decimal(denominator)
            assert (got is None) == (expected is None) and (got is None or abs(got - expected) < Decimal("1e-12")), \
                (period_end, got, expected)
            checked += got is not None
    assert checked > 12, "the demo has branches with more than a year of periods"


def test_raw_matches_source_counts(demo_warehouse):
    _ok(demo_warehouse)
    with psycopg.connect(demo_warehouse.mis_url) as src, psycopg.connect(demo_warehouse.warehouse_url) as wh:
        for table in ("m_office", "m_client", "m_loan", "m_loan_transaction", "m_loan_repayment_schedule"):
            n_src = src.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            n_raw = wh.execute(f"SELECT count(*) FROM raw_mis.{table} WHERE NOT _deleted").fetchone()[0]
            assert n_src == n_raw > 0, table


def test_no_pii_in_raw_or_published(demo_warehouse):
    _ok(demo_warehouse)
    with psycopg.connect(demo_warehouse.warehouse_url) as conn:
        cols = conn.execute(
            """SELECT table_schema, table_name, column_name FROM information_schema.columns
               WHERE table_schema IN ('analytics', 'raw_mis')""").fetchall()
    leaked = [(s, t, c) for s, t, c in cols
              if c in PII_COLUMNS and not (s == "raw_mis" and c == "date_of_birth" and t == "m_client")
              and not (s == "raw_mis" and c == "external_id" and t == "m_office")]
    assert not leaked, leaked


def test_rerun_same_day_changes_nothing(demo_warehouse):
    _ok(demo_warehouse)
    before = analytics_fingerprint(demo_warehouse.warehouse_url)
    proc = demo_warehouse.run_dag()
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    after = analytics_fingerprint(demo_warehouse.warehouse_url)
    assert before == after
    with psycopg.connect(demo_warehouse.warehouse_url) as conn:
        merged = conn.execute(
            """SELECT coalesce(sum(rows_merged), 0) FROM meta.load_manifest
               WHERE run_id = (SELECT run_id FROM meta.load_manifest ORDER BY started_at DESC LIMIT 1)""").fetchone()[0]
    assert merged == 0, "a rerun merged rows although the source did not change"


def test_the_next_nights_catch_the_incremental_facts_up(demo_warehouse):
    """A simulated next day: the versioned facts catch up from their current rows and stay consistent.

    The published facts must hold rows kept from the earlier night and rows
    rewritten tonight, and add up to the night's KPI mart, while the previous
    publication (rollback) still shows the first night from the same versions
    tables; afterwards the publication before last is tomorrow's build schema
    (the blocked night below builds into it).
    """

    _ok(demo_warehouse)
    for offset in (1,):
        day = demo_warehouse.as_of + timedelta(days=offset)
        with psycopg.connect(demo_warehouse.mis_url) as conn:
            demo_mis.simulate_days(conn, start=day, days=1, seed=7 + offset)
            conn.commit()
        proc = demo_warehouse.run_dag(as_of=day)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
        with psycopg.connect(demo_warehouse.warehouse_url) as conn:
            written = dict(conn.execute(
                "SELECT _as_of_date = %s, count(*) FROM analytics.fct_loan_transaction GROUP BY 1", (day,)).fetchall())
            assert written.get(True, 0) > 0 and written.get(False, 0) > 0, written
            # the survey fact too: its unchanged clients' rows kept from the first night
            kept = conn.execute("SELECT count(*) FILTER (WHERE _as_of_date < %s) FROM analytics.fct_client_indicator",
                                (day,)).fetchone()[0]
            assert kept > 0, "the night rewrote every row of fct_client_indicator"
            assert conn.execute("SELECT max(_as_of_date) FROM analytics.fct_portfolio_month").fetchone()[0] == day
            glp = conn.execute("""SELECT (SELECT sum(outstanding_principal) FROM analytics.fct_portfolio_month
                                          WHERE period_end = %(d)s),
                                         (SELECT sum(gross_loan_portfolio) FROM analytics.kpi_branch_month
                                          WHERE period_end = %(d)s)""", {"d": day}).fetchone()
            assert glp[0] is not None and glp[0] == glp[1], glp
            # the previous publication is still the first night: its views are pinned to its version
            for fact in ("fct_loan_transaction", "fct_portfolio_month", "fct_client_indicator"):
                assert conn.execute(f"SELECT max(_as_of_date) FROM analytics_prev.{fact}").fetchone()[0] == \
                    demo_warehouse.as_of + timedelta(days=offset - 1), fact
            assert conn.execute("SELECT sum(outstanding_principal) FROM analytics_prev.fct_portfolio_month "
                                "WHERE period_end = %s", (day,)).fetchone()[0] is None
            stamp = conn.execute("SELECT obj_description(to_regnamespace('analytics_build')::oid, 'pg_namespace')"
                                 ).fetchone()[0]
            # the publication before last is tomorrow's build schema, stamped so it cannot be published as it is
            assert stamp is not None and "recycled_from_build_id" in stamp, stamp
    demo_warehouse.as_of = day  # the later tests rerun the newest night


def test_status_command_prints_summary(demo_warehouse):
    _ok(demo_warehouse)
    proc = subprocess.run([sys.executable, "-m", "spm_warehouse.cli", "status"], env=demo_warehouse.env,
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Published" in proc.stdout and "kpi_branch_month" in proc.stdout
    assert "make airflow" in proc.stdout


def test_blocked_night_fails_the_run_and_leaves_analytics_unchanged(demo_warehouse):
    """Transactions lost in raw while m_loan totals are intact: the gate blocks.

    It corrupts the shared build's raw data, so it stays the last test of
    this module (a full refresh would repair it: see integration/extract/test_fineract_extract.py).
    """
    _ok(demo_warehouse)
    before = analytics_fingerprint(demo_warehouse.warehouse_url)
    with psycopg.connect(demo_warehouse.warehouse_url) as conn:
        with conn.cursor() as cur:
            cur.execute("""DELETE FROM raw_mis.m_loan_transaction WHERE id IN (
                             SELECT t.id FROM raw_mis.m_loan_transaction t JOIN raw_mis.m_loan l ON l.id = t.loan_id
                             WHERE t.transaction_type_enum = 2 AND NOT t.is_reversed AND l.loan_status_id = 300
                             ORDER BY t.id LIMIT 5)""")
            assert cur.rowcount == 5
        publications = conn.execute("SELECT count(*) FROM meta.publications").fetchone()[0]
    proc = demo_warehouse.run_dag()
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, "a blocked night must fail the DAG run"
    assert "quality gate blocked publication" in output
    assert "reconciliation" in output
    assert analytics_fingerprint(demo_warehouse.warehouse_url) == before
    with psycopg.connect(demo_warehouse.warehouse_url) as conn:
        assert conn.execute("SELECT count(*) FROM meta.publications").fetchone()[0] == publications
