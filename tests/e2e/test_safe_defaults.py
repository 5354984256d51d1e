"""Safe defaults on the real demo build: pseudonyms in analytics, real account numbers restricted, and a
blocked `make run` that says what failed and what to do, without a traceback.

The blocked night runs on a copy of the shared demo warehouse (the other e2e tests keep reading the
original): `python -m spm_warehouse.cli run`, the command `make run` calls, with its real
`airflow dags test`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from databases import clone_database, conn_uri_for, drop_database
from project import ROOT

from spm_warehouse.paths import run_dir_name

pytestmark = pytest.mark.e2e


def _ok(demo):
    assert demo.returncode == 0, "spm_nightly failed:\n" + demo.log[-6000:]


def test_analytics_publishes_pseudonyms_and_real_numbers_only_in_the_restricted_schema(demo_warehouse):
    _ok(demo_warehouse)
    key = demo_warehouse.env["SPM_PSEUDONYM_KEY"].encode()
    with psycopg.connect(demo_warehouse.warehouse_url) as conn:
        clients = conn.execute("""SELECT d.account_no, m.account_no FROM analytics.dim_client d
                                  JOIN raw_mis.m_client m ON m.id = d.client_id""").fetchall()
        loans = conn.execute("""SELECT f.loan_account_no, m.account_no FROM analytics.fct_loan f
                                JOIN raw_mis.m_loan m ON m.id = f.loan_id""").fetchall()
        real_in_analytics = conn.execute(
            """SELECT (SELECT count(*) FROM analytics.dim_client WHERE account_no IN (SELECT account_no FROM raw_mis.m_client))
                    + (SELECT count(*) FROM analytics.fct_loan WHERE loan_account_no IN (SELECT account_no FROM raw_mis.m_loan))"""
        ).fetchone()[0]
        restricted = conn.execute("""SELECT count(*), count(*) FILTER (WHERE r.account_no = m.account_no
                                                                        AND r.account_no_pseudonym = d.account_no)
                                     FROM analytics_restricted.client_account r
                                     JOIN raw_mis.m_client m ON m.id = r.client_id
                                     JOIN analytics.dim_client d ON d.client_id = r.client_id AND d.is_current""").fetchone()
        loan_rows = conn.execute("SELECT count(*) FROM analytics_restricted.loan_account").fetchone()[0]
        current_clients = conn.execute(
            "SELECT count(*) FROM analytics.dim_client WHERE is_current AND client_id <> -1").fetchone()[0]
        pii = conn.execute("""SELECT status, numbers FROM meta.check_results WHERE check_name = 'pii.account_numbers'
                              ORDER BY checked_at DESC LIMIT 1""").fetchone()
        bi_reader = {schema: conn.execute("SELECT has_schema_privilege('bi_reader', %s, 'USAGE')", (schema,)).fetchone()[0]
                     for schema in ("analytics", "analytics_restricted")}
    assert len(clients) > 100 and len(loans) > 100
    for published, real in clients + loans:
        assert published == "P" + hmac.new(key, real.encode(), hashlib.sha256).hexdigest()[:16]
    assert real_in_analytics == 0
    assert restricted[0] == current_clients
    assert restricted[0] == restricted[1]  # every real number sits beside the pseudonym analytics publishes
    assert loan_rows == len(loans)
    assert pii[0] == "pass" and pii[1]["columns_checked"] == ["dim_client.account_no", "fct_loan.loan_account_no",
                                                           "kpi_at_risk_loans.client_account_no",
                                                           "kpi_at_risk_loans.loan_account_no"]
    assert bi_reader == {"analytics": True, "analytics_restricted": False}
    # and bi_reader itself is refused the real numbers (its privileges, through SET ROLE)
    with psycopg.connect(demo_warehouse.warehouse_url, autocommit=True) as conn:
        conn.execute("SET ROLE bi_reader")
        assert conn.execute("SELECT count(*) FROM analytics.dim_client").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT account_no FROM analytics_restricted.client_account")


@pytest.fixture
def blocked_copy(demo_warehouse, pg_server_url):
    """A copy of the demo warehouse whose raw data lost repayments: the next night's gate blocks it."""
    _ok(demo_warehouse)
    name = f"spm_test_blocked_{uuid.uuid4().hex[:8]}"
    url = clone_database(pg_server_url, demo_warehouse.warehouse_url, name)
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            cur.execute("""DELETE FROM raw_mis.m_loan_transaction WHERE id IN (
                             SELECT t.id FROM raw_mis.m_loan_transaction t JOIN raw_mis.m_loan l ON l.id = t.loan_id
                             WHERE t.transaction_type_enum = 2 AND NOT t.is_reversed AND l.loan_status_id = 300
                             ORDER BY t.id LIMIT 5)""")
            assert cur.rowcount == 5
    yield url
    drop_database(pg_server_url, name)


def test_a_blocked_make_run_names_the_failing_checks_and_what_to_do_without_a_traceback(demo_warehouse, blocked_copy):
    env = dict(demo_warehouse.env, AIRFLOW_CONN_WAREHOUSE=conn_uri_for(blocked_copy),
               PYTHONPATH=os.pathsep.join((str(ROOT / "plugins"), str(ROOT))))
    with psycopg.connect(blocked_copy) as conn:
        before = conn.execute("SELECT build_id FROM meta.publications ORDER BY published_at DESC LIMIT 1").fetchone()[0]
    proc = subprocess.run([sys.executable, "-m", "spm_warehouse.cli", "run", "--date", demo_warehouse.as_of.isoformat()],
                          env=env, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-4000:]
    assert "Traceback" not in output and "raise StageFailed" not in output and "spm_warehouse.pipeline.StageFailed" not in output
    with psycopg.connect(blocked_copy) as conn:
        # the night's as-of date as the gate judged it (Airflow may reuse an earlier run of this logical
        # date, with the conf another test gave it: the text must name the night that really ran)
        run_id, night = conn.execute("SELECT run_id, as_of_date FROM meta.gate_runs "
                                     "ORDER BY finished_at DESC LIMIT 1").fetchone()
        failing = conn.execute("""SELECT check_name, message FROM meta.check_results
                                  WHERE run_id = %s AND status = 'fail' AND blocking""", (run_id,)).fetchall()
        assert conn.execute("SELECT build_id FROM meta.publications ORDER BY published_at DESC LIMIT 1"
                            ).fetchone()[0] == before  # analytics unchanged
    assert any(name.startswith("reconciliation.") for name, _ in failing), failing
    failure = proc.stderr[proc.stderr.index("The night FAILED:"):]
    assert f"quality gate blocked publication of the night of {night}" in failure
    for name, message in failing:
        assert f"  - {name}: {message}" in failure  # each failing check, with its message ...
    assert "      numbers: " in failure             # ... and its numbers
    report = demo_warehouse.local_dir / "reports"
    assert f"Run report: {report / run_dir_name(run_id) / 'index.html'}" in failure
    assert (report / run_dir_name(run_id) / "index.html").is_file()  # the report task ran after the gate
    assert f"make run RUN_DATE={night}" in failure and "make rollback" in failure and "meta.quarantine" in failure
    # the summary names the failing checks too, not only "n fail, m pass"
    for name, _ in failing:
        assert f"FAIL {name}: " in proc.stdout
