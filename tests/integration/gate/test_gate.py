"""The whole gate on a tiny warehouse: verdict, records in meta, summary, GX suites, no network."""

from __future__ import annotations

import shutil
import socket

import psycopg
import pytest
from gate_tiny_warehouse import (
    AS_OF,
    RUN_ID,
    analytics_fingerprint,
    build_marts,
    build_raw,
    build_source,
    clients,
    conn_info,
    passing_dbt,
    write_thresholds,
)

from spm_warehouse import gate, pipeline
from spm_warehouse import publication as publish
from spm_warehouse.gate import gx_suites
from spm_warehouse.publication import ensure_publication_tables

PROJECT = gx_suites.DEFAULT_PROJECT_DIR


@pytest.fixture
def gx_project(tmp_path):
    """A private copy of the committed GX project (validation results and docs land in its uncommitted/)."""
    target = tmp_path / "expectations"
    shutil.copytree(PROJECT, target, ignore=shutil.ignore_patterns("uncommitted"))
    return target


@pytest.fixture
def tiny(fresh_database):
    wh_url, mis_url = fresh_database("gate_wh"), fresh_database("gate_mis")
    with psycopg.connect(wh_url) as conn:
        rows = build_raw(conn)
        build_marts(conn, rows)
        conn.commit()
    with psycopg.connect(mis_url) as conn:
        build_source(conn, rows)
        conn.commit()
    return wh_url, mis_url


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt to a non-local address fails the test (GX must not phone home)."""
    attempts: list = []
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")):
            attempts.append(address)
            raise OSError(f"test forbids network access to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return attempts


def tree(path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_gate_passes_a_good_build_and_records_every_check(tiny, gx_project, tmp_path, no_network):
    wh_url, mis_url = tiny
    project_before = tree(gx_project)
    with psycopg.connect(wh_url) as conn:
        verdict = gate.run_gate(conn, conn_info(mis_url), RUN_ID, AS_OF, passing_dbt(),
                                gx_project_dir=gx_project, reports_dir=tmp_path / "reports")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # results committed
        assert verdict.passed, verdict.summary()
        kinds = {c.kind for c in verdict.checks}
        assert kinds == {"dbt", "quarantine", "freshness", "volume", "reconciliation", "gx", "pii"}
        gx_names = {c.name for c in verdict.checks if c.kind == "gx"}
        assert {"gx.raw_mis.m_loan", "gx.analytics_build.kpi_branch_month", "gx.analytics_build.fct_portfolio_month"} <= gx_names
        assert all(c.status == "pass" for c in verdict.checks if c.kind == "gx"), verdict.summary()
        recorded = conn.execute("SELECT count(*), count(*) FILTER (WHERE status = 'pass') FROM meta.check_results "
                                "WHERE run_id = %s", (RUN_ID,)).fetchone()
        assert recorded[0] == len(verdict.checks)
        row = conn.execute("SELECT passed, metrics, watermarks FROM meta.gate_runs WHERE run_id = %s", (RUN_ID,)).fetchone()
        assert row[0] is True
        assert row[1]["gross_loan_portfolio"] == 12600.0
        assert row[2]["mis"].startswith("2024-06-29")
    run_dir = tmp_path / "reports" / "manual__2024-06-30T02_00_00_00_00"
    assert (run_dir / "gx_data_docs" / "index.html").exists()
    assert list((run_dir / "gx_validations").rglob("*.json"))
    assert tree(gx_project) == project_before  # the committed project is never written to
    assert no_network == []
    with psycopg.connect(wh_url) as conn:  # GX closed its connections
        others = conn.execute("SELECT application_name, state, query FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
        assert others == []
    # the verdict is JSON-able for XCom and can be read back
    assert verdict.as_dict()["passed"] is True
    with psycopg.connect(wh_url) as conn:
        again = gate.read_verdict(conn, RUN_ID)
    assert again.passed and [c.name for c in again.checks] == [c.name for c in verdict.checks]


def test_gate_blocks_with_a_summary_naming_each_failed_check_and_its_numbers(tiny, gx_project, tmp_path):
    wh_url, mis_url = tiny
    with psycopg.connect(wh_url) as conn:
        # lost repayments in raw; a negative outstanding principal in the mart; a failed dbt test
        conn.execute("DELETE FROM raw_mis.m_loan_transaction WHERE loan_id = 4 AND transaction_type_enum = 2")
        conn.execute("UPDATE analytics_build.fct_portfolio_month SET outstanding_principal = -5 WHERE loan_id = 1")
        conn.commit()
        dbt = {"success": False, "counts": {"fail": 1}, "results": [
            {"unique_id": "test.spm_warehouse.unique_dim_client_client_id.1f", "resource_type": "test",
             "status": "fail", "failures": 2, "message": "Got 2 results"}]}
        verdict = gate.run_gate(conn, conn_info(mis_url), RUN_ID, AS_OF, dbt,
                                gx_project_dir=gx_project, reports_dir=tmp_path / "reports")
        assert not verdict.passed
        failed = {c.name for c in verdict.failed()}
        assert {"dbt.tests", "reconciliation.outstanding_raw", "reconciliation.outstanding_mart",
                "gx.analytics_build.fct_portfolio_month"} <= failed
        summary = verdict.summary()
        assert summary.startswith(f"quality gate BLOCKED for run {RUN_ID}")
        for name in failed:
            assert f"- {name}:" in summary
        assert "mismatched_loans=1" in summary  # numbers, not just names
        assert "unique_dim_client_client_id (2 rows)" in summary
        assert "expect_column_values_to_be_between(outstanding_principal): 1 unexpected" in summary
        assert "analytics was left unchanged" in summary
        assert conn.execute("SELECT passed, checks_failed FROM meta.gate_runs WHERE run_id = %s",
                            (RUN_ID,)).fetchone() == (False, len(failed))
        # a rerun of the same run replaces its results instead of adding to them
        gate.run_gate(conn, conn_info(mis_url), RUN_ID, AS_OF, dbt, gx_project_dir=gx_project, only=["dbt"])
        assert conn.execute("SELECT count(*) FROM meta.check_results WHERE run_id = %s",
                            (RUN_ID,)).fetchone()[0] == 3


def test_a_crashing_check_blocks_under_its_own_name(tiny, monkeypatch):
    wh_url, mis_url = tiny

    def broken(ctx):
        raise ZeroDivisionError("division by zero in the volume check")

    monkeypatch.setattr(gate.runner, "CHECKS", [("dbt", gate.dbt_results.run), ("volume", broken), ("pii", gate.pii.run)])
    with psycopg.connect(wh_url) as conn:
        verdict = gate.run_gate(conn, None, RUN_ID, AS_OF, passing_dbt())
    assert not verdict.passed
    crash = [c for c in verdict.checks if c.name == "volume.check_error"]
    assert crash and crash[0].blocking and "ZeroDivisionError" in crash[0].message
    # the checks after the crash still ran
    assert any(c.name == "pii.forbidden_columns" and c.status == "pass" for c in verdict.checks)


def test_thresholds_come_from_the_config_file(tiny, tmp_path):


    wh_url, _ = tiny
    with psycopg.connect(wh_url) as conn:
        ensure_publication_tables(conn)
        conn.execute("""INSERT INTO meta.publications (build_id, as_of_date, metrics)
                        VALUES ('b0', %s, '{"gross_loan_portfolio": 11000, "active_clients": 16}')""", (AS_OF,))
        conn.commit()
        strict = gate.run_gate(conn, None, RUN_ID, AS_OF, passing_dbt(), only=["volume"],
                               thresholds_path=write_thresholds(tmp_path / "strict.yml", volume={
                                   "metrics": {"gross_loan_portfolio": {"max_relative_change": 0.05, "blocking": True}}}))
        lenient = gate.run_gate(conn, None, RUN_ID, AS_OF, passing_dbt(), only=["volume"],
                                thresholds_path=write_thresholds(tmp_path / "lenient.yml", volume={
                                    "metrics": {"gross_loan_portfolio": {"max_relative_change": 0.5, "blocking": True}}}))
    assert [c.name for c in strict.failed()] == ["volume.gross_loan_portfolio"]
    assert lenient.passed


def test_thresholds_file_documents_every_section():
    data = gate.load_thresholds()
    assert {"dbt", "gx", "reconciliation", "freshness", "volume", "quarantine", "pii"} <= set(data)
    text = gate.THRESHOLDS_PATH.read_text()
    for key in ("max_share", "max_relative_change", "outstanding_tolerance", "max_lag_days", "min_rows_for_share"):
        assert key in text
    assert text.count("#") > 60  # documented inline


def test_pipeline_stages_publish_a_good_night_and_block_a_bad_one(tiny, gx_project, tmp_path, monkeypatch):
    """The stage functions the DAG calls: gate -> publish -> report, on a good and then a bad night."""


    wh_url, mis_url = tiny
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", "postgres://" + wh_url.split("://", 1)[1])
    monkeypatch.setenv("AIRFLOW_CONN_MIS_FINERACT", "postgres://" + mis_url.split("://", 1)[1])
    monkeypatch.setenv("SPM_LOCAL_DIR", str(tmp_path / "local"))
    monkeypatch.setenv("SPM_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setattr(gx_suites, "DEFAULT_PROJECT_DIR", gx_project)

    verdict = pipeline.gate(RUN_ID, AS_OF, passing_dbt())
    assert verdict["passed"] is True
    published = pipeline.publish(RUN_ID, AS_OF, verdict)  # the DAG hands the gate's verdict over
    assert published["row_counts"]["fct_portfolio_month"] == 16
    pipeline.report(RUN_ID, AS_OF)
    assert "PUBLISHED" in (tmp_path / "reports" / "latest" / "index.html").read_text(encoding="utf-8")

    # The next night: repayments lost in the extraction, and the mart built from it shows a higher portfolio.
    bad_run = "scheduled__2024-07-01T02:00:00+00:00"
    with psycopg.connect(wh_url) as conn:
        conn.execute("DELETE FROM raw_mis.m_loan_transaction WHERE transaction_type_enum = 2 AND loan_id IN (3, 4)")
        rows = clients(20)
        for c in rows:
            if c["id"] in (3, 4):
                c["outstanding"] = 1000
        build_marts(conn, rows)
        conn.execute("INSERT INTO meta.load_manifest (run_id, table_name, started_at) VALUES (%s, 'm_loan', now())",
                     (bad_run,))
        conn.commit()
        before = analytics_fingerprint(conn)
        conn.commit()
    with pytest.raises(pipeline.StageFailed) as failed:
        pipeline.gate(bad_run, AS_OF, passing_dbt())
    message = str(failed.value)
    assert "reconciliation.outstanding_raw" in message and "mismatched_loans=2" in message
    with pytest.raises(publish.PublishBlocked):
        pipeline.publish(bad_run, AS_OF)  # even if someone runs the publish task by hand
    page = pipeline.report(bad_run, AS_OF)["report"]
    assert "BLOCKED by the quality gate" in open(page, encoding="utf-8").read()
    with psycopg.connect(wh_url) as conn:
        assert analytics_fingerprint(conn) == before
        assert conn.execute("SELECT count(*) FROM meta.publications").fetchone()[0] == 1


def test_gx_validates_only_tonights_rows_of_scoped_tables(tiny, gx_project, tmp_path):
    """gx.scope run: a bad raw row merged by an earlier run is not judged again, one merged tonight is."""
    wh_url, mis_url = tiny
    with psycopg.connect(wh_url) as conn:
        conn.execute("UPDATE raw_mis.m_loan_transaction SET _run_id = 'an-earlier-run'")
        conn.execute("UPDATE raw_mis.m_loan_transaction SET amount = -1 WHERE id = (SELECT min(id) FROM raw_mis.m_loan_transaction)")
        conn.commit()
        verdict = gate.run_gate(conn, conn_info(mis_url), RUN_ID, AS_OF, {"success": True, "counts": {}, "results": []},
                                gx_project_dir=gx_project, reports_dir=tmp_path / "reports", only=["gx"])
        assert verdict.facts["gx_scoped"]["raw_mis.m_loan_transaction"] == 0
        assert next(c for c in verdict.checks if c.name == "gx.raw_mis.m_loan_transaction").status == "pass"
        # the same bad row merged tonight is judged (the raw suite warns)
        conn.execute("UPDATE raw_mis.m_loan_transaction SET _run_id = %s WHERE amount < 0", (RUN_ID,))
        conn.commit()
        verdict = gate.run_gate(conn, conn_info(mis_url), RUN_ID, AS_OF, {"success": True, "counts": {}, "results": []},
                                gx_project_dir=gx_project, reports_dir=tmp_path / "reports2", only=["gx"])
        assert verdict.facts["gx_scoped"]["raw_mis.m_loan_transaction"] == 1
        check = next(c for c in verdict.checks if c.name == "gx.raw_mis.m_loan_transaction")
        assert check.status == "warn" and "amount" in check.message, check.message
        # the tiny marts have no bookkeeping columns: validated whole
        assert "analytics_build.fct_portfolio_month" not in verdict.facts["gx_scoped"]
        # the copies are dropped once GX has read them (they would sit on disk through the next build)
        assert conn.execute("SELECT to_regnamespace('gate_scope')").fetchone()[0] is None
        assert "raw_mis.m_loan_transaction" not in verdict.facts.get("gx_in_place", [])
        # every row merged tonight (a first load): GX reads the table itself, no copy, and still judges the bad row
        conn.execute("UPDATE raw_mis.m_loan_transaction SET _run_id = %s", (RUN_ID,))
        conn.commit()
        total = conn.execute("SELECT count(*) FROM raw_mis.m_loan_transaction").fetchone()[0]
        verdict = gate.run_gate(conn, conn_info(mis_url), RUN_ID, AS_OF, {"success": True, "counts": {}, "results": []},
                                gx_project_dir=gx_project, reports_dir=tmp_path / "reports3", only=["gx"])
        assert verdict.facts["gx_scoped"]["raw_mis.m_loan_transaction"] == total > 1
        assert "raw_mis.m_loan_transaction" in verdict.facts["gx_in_place"]
        check = next(c for c in verdict.checks if c.name == "gx.raw_mis.m_loan_transaction")
        assert check.status == "warn" and "amount" in check.message, check.message


def test_a_suite_whose_table_is_missing_is_reported_and_the_others_still_run(tiny, gx_project, tmp_path):
    """A partial replica: one raw table is missing; its suite says so, the other suites run, nothing crashes."""
    wh_url, mis_url = tiny
    with psycopg.connect(wh_url) as conn:
        conn.execute("DROP TABLE raw_mis.m_loan_transaction")
        conn.commit()
        verdict = gate.run_gate(conn, conn_info(mis_url), RUN_ID, AS_OF, {"success": True, "counts": {}, "results": []},
                                gx_project_dir=gx_project, reports_dir=tmp_path / "reports", only=["gx"])
    by_name = {c.name: c for c in verdict.checks}
    assert "gx.check_error" not in by_name, by_name["gx.check_error"].message
    missing = by_name["gx.raw_mis.m_loan_transaction"]
    assert "raw_mis.m_loan_transaction does not exist" in missing.message, missing.message
    ran = [c for name, c in by_name.items() if name.startswith("gx.") and name != "gx.raw_mis.m_loan_transaction"]
    assert len(ran) >= 3 and all("does not exist" not in c.message for c in ran), [c.message for c in ran]
    assert (tmp_path / "reports" / RUN_ID.replace(":", "_").replace("+", "_") / "gx_data_docs" / "index.html").exists()


def test_a_blocked_night_names_each_failing_check_in_the_task_failure_the_alert_and_make_run(
        tiny, gx_project, tmp_path, monkeypatch):
    """A real gate failure (lost repayments and a personal column): the text the DAG task fails with, the alert
    and the outcome file `make run` prints are one text: every failing check with its message and numbers,
    the run report's path, what to do next; no traceback."""
    from spm_warehouse import alerts, failure_notifier

    wh_url, mis_url = tiny
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", "postgres://" + wh_url.split("://", 1)[1])
    monkeypatch.setenv("AIRFLOW_CONN_MIS_FINERACT", "postgres://" + mis_url.split("://", 1)[1])
    monkeypatch.setenv("SPM_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("SPM_OUTCOME_FILE", str(tmp_path / "outcome.txt"))
    monkeypatch.setattr(gx_suites, "DEFAULT_PROJECT_DIR", gx_project)
    with psycopg.connect(wh_url) as conn:
        rows = clients(20)
        for c in rows:
            if c["id"] in (3, 4):
                c["outstanding"] = 1000
        build_marts(conn, rows)
        conn.execute("ALTER TABLE analytics_build.dim_product ADD COLUMN mobile_no text")
        conn.commit()
    with pytest.raises(pipeline.StageFailed) as failed:
        pipeline.run_stage("gate", RUN_ID, AS_OF, pipeline.gate, RUN_ID, AS_OF, passing_dbt())
    text = str(failed.value)
    with psycopg.connect(wh_url) as conn:
        failing = [r[0] for r in conn.execute(
            "SELECT check_name FROM meta.check_results WHERE run_id = %s AND status = 'fail' AND blocking "
            "ORDER BY position", (RUN_ID,)).fetchall()]
    assert {"reconciliation.outstanding_mart", "pii.forbidden_columns"} <= set(failing)
    assert text.startswith(f"quality gate blocked publication of the night of {AS_OF} (run {RUN_ID}): "
                           f"{len(failing)} blocking check(s) failed")
    for name in failing:
        assert f"  - {name}: " in text, name
    assert "2 of 16 active loans" in text and "dim_product.mobile_no" in text  # messages and numbers
    assert "      numbers: " in text
    assert f"Run report: {tmp_path / 'reports' / 'manual__2024-06-30T02_00_00_00_00' / 'index.html'}" in text
    assert "make run RUN_DATE=2024-06-30" in text and "make rollback" in text and "meta.quarantine" in text
    assert "Traceback" not in text and "raise " not in text
    assert (tmp_path / "outcome.txt").read_text().strip() == text

    sent: list[str] = []
    monkeypatch.setattr(alerts, "post_webhook", lambda url, body: sent.append(body))
    monkeypatch.setenv("SPM_ALERT_WEBHOOK_URL", "https://chat.example/hook/T0")
    ti = type("TI", (), {"dag_id": "spm_nightly", "task_id": "gate.quality_gate", "run_id": RUN_ID,
                         "try_number": 1, "log_url": None})()
    failure_notifier.failure_notifier()({"task_instance": ti, "exception": failed.value, "params": {"as_of_date": "2024-06-30"}})
    assert len(sent) == 1 and text in sent[0]
