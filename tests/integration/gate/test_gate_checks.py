"""Each gate check on a tiny hand-made warehouse (real PostgreSQL, no dbt, no Airflow)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import psycopg
import pytest
from gate_tiny_warehouse import AS_OF, RUN_ID, build_marts, build_raw, build_source, conn_info, passing_dbt

from spm_warehouse import delta_indexes
from spm_warehouse.gate import (
    CheckContext,
    dbt_results,
    ensure_gate_tables,
    freshness,
    load_thresholds,
    pii,
    quarantine,
    reconciliation,
    volume,
)
from spm_warehouse.publication import ensure_publication_tables
from spm_warehouse.settings import ConnInfo


@pytest.fixture
def wh(fresh_database):
    url = fresh_database("gatechk")
    with psycopg.connect(url) as conn:
        rows = build_raw(conn)
        build_marts(conn, rows)
        ensure_gate_tables(conn)
        ensure_publication_tables(conn)
        conn.commit()
        conn.rows = rows  # type: ignore[attr-defined]
        conn.url = url  # type: ignore[attr-defined]
        yield conn


@pytest.fixture
def mis(fresh_database, wh):
    url = fresh_database("gatemis")
    with psycopg.connect(url) as conn:
        build_source(conn, wh.rows)
        conn.commit()
    return url


def ctx_for(conn, mis=None, thresholds=None, dbt=None, as_of=AS_OF, run_id=RUN_ID) -> CheckContext:
    return CheckContext(wh=conn, mis=mis, run_id=run_id, as_of=as_of, dbt_result=dbt or passing_dbt(),
                        thresholds=thresholds or load_thresholds(), build_schema="analytics_build",
                        analytics_schema="analytics")


def by_name(results):
    return {r.name: r for r in results}


# --------------------------------------------------------------------------- reconciliation


def test_reconciliation_passes_on_a_consistent_warehouse(wh, mis):
    results = by_name(reconciliation.run(ctx_for(wh, conn_info(mis))))
    assert {r.status for r in results.values()} == {"pass"}, [r.message for r in results.values()]
    assert results["reconciliation.outstanding_raw"].numbers["active_loans"] == 16
    assert results["reconciliation.outstanding_mart"].numbers["active_loans_compared"] == 16
    counts = results["reconciliation.source_counts"].numbers
    assert counts["clients_by_status"] == {"300": {"source": 16, "raw": 16}, "600": {"source": 4, "raw": 4}}
    assert counts["active_loans_compared"] == 16


def test_reconciliation_catches_lost_transactions_while_m_loan_totals_were_kept(wh, mis):
    """The issue's acceptance test: repayments vanished from the ledger, m_loan still says the right balance."""
    lost = wh.execute(
        """DELETE FROM raw_mis.m_loan_transaction
           WHERE transaction_type_enum = 2 AND loan_id IN (3, 4) AND NOT is_reversed RETURNING loan_id""").fetchall()
    assert len(lost) == 7  # loan 3 had 3 repayments, loan 4 had 4
    wh.commit()
    results = by_name(reconciliation.run(ctx_for(wh, conn_info(mis))))
    raw = results["reconciliation.outstanding_raw"]
    assert raw.status == "fail" and raw.blocking
    assert raw.numbers["mismatched_loans"] == 2
    assert {e["loan_id"] for e in raw.numbers["examples"]} == {3, 4}
    example = {e["loan_id"]: e for e in raw.numbers["examples"]}[4]
    assert (example["mis"], example["warehouse"]) == (600.0, 1000.0)
    assert "2 of 16 active loans" in raw.message
    # The source still agrees with raw m_loan: only the ledger is wrong, and the ledger check says so.
    assert results["reconciliation.source_counts"].status == "pass"


def test_reconciliation_catches_a_mart_that_disagrees_with_the_mis(wh, mis):
    wh.execute("UPDATE analytics_build.fct_portfolio_month SET outstanding_principal = outstanding_principal + 50 "
               "WHERE loan_id = 2")
    wh.execute("DELETE FROM analytics_build.fct_portfolio_month WHERE loan_id = 7")
    wh.commit()
    mart = by_name(reconciliation.run(ctx_for(wh, conn_info(mis))))["reconciliation.outstanding_mart"]
    assert mart.status == "fail"
    assert mart.numbers["mismatched_loans"] == 2
    assert {e["loan_id"] for e in mart.numbers["examples"]} == {2, 7}


def test_reconciliation_leaves_out_loans_with_activity_after_the_as_of_date(wh, mis):
    # A repayment dated after as_of: Fineract's balance includes it, the mart at as_of must not.
    wh.execute("""INSERT INTO raw_mis.m_loan_transaction (id, loan_id, office_id, is_reversed, transaction_type_enum,
                      transaction_date, amount, principal_portion_derived, created_on_utc, last_modified_on_utc)
                  VALUES (9001, 2, 1, false, 2, '2024-07-02', 100, 100, '2024-07-02 10:00Z', '2024-07-02 10:00Z')""")
    wh.execute("UPDATE raw_mis.m_loan SET principal_outstanding_derived = principal_outstanding_derived - 100 WHERE id = 2")
    wh.commit()
    results = by_name(reconciliation.run(ctx_for(wh)))
    assert results["reconciliation.outstanding_mart"].status == "pass"
    assert results["reconciliation.outstanding_mart"].numbers["active_loans_skipped_later_activity"] == 1
    assert results["reconciliation.outstanding_raw"].status == "pass"


def test_reconciliation_compares_counts_by_status_with_the_source(wh, mis):
    with psycopg.connect(mis) as src:
        # a client closed in the source but still active in raw, unchanged since the extraction (lost update)
        src.execute("UPDATE m_client SET status_enum = 600 WHERE id = 1")
        # a client changed after the extraction: left out of both sides
        src.execute("UPDATE m_client SET status_enum = 600, last_modified_on_utc = '2024-07-01 08:00Z' WHERE id = 2")
        # a loan created after the extraction: not in raw, left out
        src.execute("INSERT INTO m_loan VALUES (999, 1, 1, 300, 500, 500, '2024-07-01 09:00Z', '2024-07-01 09:00Z')")
        src.commit()
    result = by_name(reconciliation.run(ctx_for(wh, conn_info(mis))))["reconciliation.source_counts"]
    assert result.status == "fail"
    assert result.numbers["client_statuses_differing"] == ["300", "600"]
    assert result.numbers["clients_by_status"]["300"] == {"source": 14, "raw": 15}
    assert result.numbers["clients_changed_since_extraction"] == 1
    assert result.numbers["loan_statuses_differing"] == []
    assert "clients with status 300: raw 15 vs source 14" in result.message


def test_reconciliation_without_source_blocks_with_a_clear_message(wh):
    result = by_name(reconciliation.run(ctx_for(wh, None)))["reconciliation.source_counts"]
    assert result.status == "fail" and result.blocking
    assert "no MIS connection" in result.message
    unreachable = conn_info("postgresql://postgres@127.0.0.1:1/nothing")
    result = by_name(reconciliation.run(ctx_for(wh, unreachable)))["reconciliation.source_counts"]
    assert result.status == "fail" and "source MIS not readable" in result.message
    # the connection is still usable after the failed source read
    assert wh.execute("SELECT count(*) FROM raw_mis.m_loan").fetchone()[0] == 20


# --------------------------------------------------------------------------- dbt results


def test_dbt_results_block_on_errors_and_report_warnings():
    dbt = {"success": False, "counts": {"pass": 10, "fail": 1, "warn": 1, "skipped": 2}, "results": [
        {"unique_id": "test.spm_warehouse.not_null_kpi_branch_month_branch_id.ab12", "resource_type": "test",
         "status": "fail", "failures": 3, "message": "Got 3 results"},
        {"unique_id": "test.spm_warehouse.accepted_values_x.cd34", "resource_type": "test", "status": "warn",
         "failures": 1, "message": "Got 1 result"},
    ]}
    results = by_name(dbt_results.run(ctx_for(None, dbt=dbt)))
    assert results["dbt.tests"].status == "fail" and results["dbt.tests"].blocking
    assert "not_null_kpi_branch_month_branch_id (3 rows)" in results["dbt.tests"].message
    assert results["dbt.models"].status == "fail" and results["dbt.models"].numbers["nodes_skipped"] == 2
    assert results["dbt.test_warnings"].status == "warn" and not results["dbt.test_warnings"].blocking


def test_dbt_results_pass_a_clean_build_and_block_an_unexplained_failure():
    assert {r.status for r in dbt_results.run(ctx_for(None, dbt=passing_dbt()))} == {"pass"}
    broken = by_name(dbt_results.run(ctx_for(None, dbt={"success": False, "returncode": 2, "results": []})))
    assert broken["dbt.models"].status == "fail"
    assert "reported no failing node" in broken["dbt.models"].message
    model_error = {"success": False, "results": [{"unique_id": "model.spm_warehouse.kpi_branch_month",
                                                  "resource_type": "model", "status": "error", "failures": None,
                                                  "message": "Database Error\n division by zero"}]}
    res = by_name(dbt_results.run(ctx_for(None, dbt=model_error)))["dbt.models"]
    assert res.status == "fail" and "kpi_branch_month (Database Error)" in res.message


# --------------------------------------------------------------------------- freshness


def test_freshness_passes_a_recent_watermark_and_records_it(wh):
    ctx = ctx_for(wh)
    results = by_name(freshness.run(ctx))
    assert results["freshness.mis"].status == "pass"
    assert results["freshness.mis"].numbers["lag_days"] == 1
    assert results["freshness.mis"].numbers["loads_recorded_this_run"] == 1
    assert ctx.facts["watermarks"]["mis"].startswith("2024-06-29T14:00")
    # no survey loaded at all: a warning, never a block
    assert results["freshness.surveys"].status == "warn" and not results["freshness.surveys"].blocking


def test_freshness_blocks_a_stale_or_backwards_watermark(wh):
    stale = by_name(freshness.run(ctx_for(wh, as_of=date(2024, 7, 10))))["freshness.mis"]
    assert stale.status == "fail" and "11 days older than the as-of date" in stale.message
    wh.execute("""INSERT INTO meta.publications (build_id, as_of_date, watermarks)
                  VALUES ('b1', '2024-06-30', '{"mis": "2024-06-30T01:00:00+00:00"}')""")
    wh.commit()
    back = by_name(freshness.run(ctx_for(wh)))["freshness.mis"]
    assert back.status == "fail" and "moved backwards" in back.message
    other_run = by_name(freshness.run(ctx_for(wh, run_id="another_run")))["freshness.mis"]
    assert "records no MIS load for run another_run" in other_run.message
    # a backfill older than what is published: a warning by default
    older = by_name(freshness.run(ctx_for(wh, as_of=date(2024, 6, 1))))["freshness.as_of"]
    assert older.status == "warn" and "older than the published 2024-06-30" in older.message
    assert by_name(freshness.run(ctx_for(wh)))["freshness.as_of"].status == "pass"


def test_the_mis_watermark_is_read_through_the_delta_index_of_its_expression(wh):
    """The build stage indexes the watermark expression, so the nightly gate reads five index ends, not history."""
    before = freshness.mis_watermark(wh)
    created = delta_indexes.ensure_delta_indexes(wh)
    assert {f"{t}(watermark)" for t in ("m_client", "m_loan", "m_loan_transaction")} <= set(created), created
    wh.execute("SET LOCAL enable_seqscan = off")  # a tiny table: only an index matching the expression can be used
    plan = "\n".join(r[0] for r in wh.execute(
        f"EXPLAIN SELECT max({delta_indexes.WATERMARK_EXPRESSION}) FROM raw_mis.m_loan_transaction"))
    assert "m_loan_transaction__watermark__delta_idx" in plan and "Seq Scan" not in plan, plan
    assert freshness.mis_watermark(wh) == before
    wh.rollback()


# --------------------------------------------------------------------------- volume


def publish_baseline(conn, gross: float, active: int, row_counts: dict | None = None, as_of: date = AS_OF):
    conn.execute(
        """INSERT INTO meta.publications (build_id, as_of_date, metrics, row_counts) VALUES ('base', %s, %s, %s)""",
        (as_of, json.dumps({"gross_loan_portfolio": gross, "active_clients": active, "active_borrowers": 16}),
         json.dumps(row_counts or {"fct_portfolio_month": 16, "kpi_branch_month": 2})))
    conn.commit()


def test_volume_without_a_publication_passes_and_measures(wh):
    ctx = ctx_for(wh)
    results = by_name(volume.run(ctx))
    assert all(r.status == "pass" for r in results.values()), [r.message for r in results.values()]
    assert ctx.facts["metrics"] == {"gross_loan_portfolio": 12600.0, "active_clients": 16, "active_borrowers": 16}


def test_volume_blocks_a_portfolio_jump_against_the_last_publication(wh):
    publish_baseline(wh, gross=12600 * 2, active=16)
    results = by_name(volume.run(ctx_for(wh)))
    glp = results["volume.gross_loan_portfolio"]
    assert glp.status == "fail" and glp.numbers["relative_change"] == 0.5
    assert "moved 50.0%" in glp.message and "allowed 20%" in glp.message
    assert results["volume.active_clients"].status == "pass"


def test_volume_blocks_an_emptied_table_and_skips_distant_baselines(wh):
    publish_baseline(wh, gross=1.0, active=1, row_counts={"fct_portfolio_month": 13, "dim_product": 5},
                     as_of=date(2024, 3, 31))
    wh.execute("DELETE FROM analytics_build.dim_product")
    wh.commit()
    results = by_name(volume.run(ctx_for(wh)))
    assert results["volume.row_counts"].status == "fail"
    assert results["volume.row_counts"].numbers["dropped"] == {"dim_product": {"published": 5, "build": 0}}
    # the baseline is 91 days away: KPI totals are not compared
    assert results["volume.gross_loan_portfolio"].status == "pass"
    assert results["volume.gross_loan_portfolio"].numbers["days_apart"] == 91


# --------------------------------------------------------------------------- quarantine


def make_survey_quarantine(conn, bad: int, total: int):
    conn.execute("CREATE SCHEMA IF NOT EXISTS intermediate")
    conn.execute("CREATE TABLE intermediate.int_surveys__submissions (submission_key text, asset_uid text)")
    conn.execute("INSERT INTO intermediate.int_surveys__submissions SELECT 'k' || g, 'aFORM' FROM generate_series(1, %s) g",
                 (total,))
    conn.execute("""CREATE VIEW intermediate.int_surveys__quarantine AS
                    SELECT 'kobo:aFORM'::text AS source, submission_key AS source_key,
                           'unknown_client: account_no not in m_client'::text AS reason, 'unknown_client'::text AS reason_code,
                           42::bigint AS kobo_id, now() AS loaded_at
                    FROM intermediate.int_surveys__submissions LIMIT %s""" % int(bad))
    conn.commit()


def test_quarantine_copies_dbt_rows_idempotently_and_passes_a_small_share(wh):
    make_survey_quarantine(wh, bad=3, total=60)
    wh.execute("INSERT INTO meta.quarantine (source, source_key, reason, run_id) VALUES "
               "('fineract:m_loan', '77', 'impossible_value: principal_amount < 0', %s)", (RUN_ID,))
    wh.commit()
    for _ in range(2):  # a rerun of the gate must not double the rows
        with wh.transaction():
            results = by_name(quarantine.run(ctx_for(wh)))
    n = wh.execute("SELECT count(*) FROM meta.quarantine WHERE run_id = %s AND source = 'kobo:aFORM'", (RUN_ID,)).fetchone()[0]
    assert n == 3
    payload = wh.execute("SELECT payload FROM meta.quarantine WHERE source = 'kobo:aFORM' LIMIT 1").fetchone()[0]
    assert payload["kobo_id"] == 42 and payload["origin"] == "dbt:int_surveys__quarantine"
    res = results["quarantine.shares"]
    assert res.status == "pass"
    assert res.numbers["sources"]["kobo:aFORM"] == {"quarantined": 3, "population": 60, "share": 0.05,
                                                    "max_share": 0.1, "reasons": ["unknown_client"]}
    # 1 of 20 loans is 5 %, over the 1 % of m_loan, but 20 rows are too few to judge (min_rows_for_share)
    assert res.numbers["sources"]["fineract:m_loan"]["population"] == 20
    assert res.numbers["sources"]["fineract:m_loan"]["share"] == 0.05


def test_quarantine_blocks_when_a_source_share_passes_its_threshold(wh):
    make_survey_quarantine(wh, bad=12, total=60)
    res = by_name(quarantine.run(ctx_for(wh)))["quarantine.shares"]
    assert res.status == "fail" and res.blocking
    assert "kobo:aFORM 12/60 = 20.0% (allowed 10.0%)" in res.message


def test_quarantine_share_of_a_tiny_population_never_blocks(wh):
    make_survey_quarantine(wh, bad=5, total=10)
    res = by_name(quarantine.run(ctx_for(wh)))["quarantine.shares"]
    assert res.status == "pass"
    assert res.numbers["sources"]["kobo:aFORM"]["share"] == 0.5


# --------------------------------------------------------------------------- pii


def test_pii_check_blocks_personal_columns_in_the_build(wh):
    assert by_name(pii.run(ctx_for(wh)))["pii.forbidden_columns"].status == "pass"
    wh.execute("CREATE TABLE analytics_build.dim_client (client_id bigint, branch_id bigint, FirstName text, dob date)")
    wh.commit()
    res = by_name(pii.run(ctx_for(wh)))["pii.forbidden_columns"]
    assert res.status == "fail"
    assert res.numbers["forbidden_columns_found"] == ["dim_client.dob", "dim_client.firstname"]


def test_pii_check_blocks_real_account_numbers_in_the_build(wh):
    """Pseudonyms pass; one real m_client or m_loan account number in an account-number column blocks."""
    real_client = wh.execute("SELECT account_no FROM raw_mis.m_client ORDER BY id LIMIT 1").fetchone()[0]
    wh.execute("UPDATE raw_mis.m_loan SET account_no = 'L' || lpad(id::text, 8, '0')")
    wh.execute("""CREATE TABLE analytics_build.dim_client AS
                  SELECT id AS client_id, 'P' || left(md5(account_no), 16) AS account_no FROM raw_mis.m_client""")
    wh.execute("""CREATE TABLE analytics_build.fct_loan AS
                  SELECT id AS loan_id, 'P' || left(md5(account_no), 16) AS loan_account_no FROM raw_mis.m_loan""")
    wh.commit()
    res = by_name(pii.run(ctx_for(wh)))["pii.account_numbers"]
    assert res.status == "pass", res.message
    assert res.numbers["columns_checked"] == ["dim_client.account_no", "fct_loan.loan_account_no"]
    assert res.blocking

    wh.execute("UPDATE analytics_build.dim_client SET account_no = %s WHERE client_id = 1", (real_client,))
    wh.execute("UPDATE analytics_build.fct_loan SET loan_account_no = 'L00000003' WHERE loan_id IN (3, 4)")
    wh.commit()
    res = by_name(pii.run(ctx_for(wh)))["pii.account_numbers"]
    assert res.status == "fail" and res.blocks
    assert res.numbers["real_account_numbers_found"] == {"dim_client.account_no": 1, "fct_loan.loan_account_no": 2}
    assert "dim_client.account_no (1 rows)" in res.message and "restricted schema" in res.message


@pytest.fixture
def mariadb_mis(wh, mariadb_database):
    """The same source in MariaDB (Fineract's MySQL types: datetime(6) holding UTC, decimal)."""
    conn, dbname = mariadb_database
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE m_client (id bigint PRIMARY KEY, status_enum int, last_modified_on_utc datetime(6))")
        cur.execute("CREATE TABLE m_loan (id bigint PRIMARY KEY, loan_status_id int, "
                    "principal_outstanding_derived decimal(19,6), last_modified_on_utc datetime(6))")
        for c in wh.rows:
            lm = (datetime(2024, 6, 29, 15, 0) - timedelta(hours=c["id"]))  # naive UTC, as Fineract writes it
            cur.execute("INSERT INTO m_client VALUES (%s, %s, %s)", (c["id"], c["status"], lm))
            cur.execute("INSERT INTO m_loan VALUES (%s, %s, %s, %s)", (c["id"], c["loan_status"], c["outstanding"], lm))
        # a loan changed in the source one minute after the newest extracted change: left out
        cur.execute("UPDATE m_loan SET loan_status_id = 600, last_modified_on_utc = '2024-06-29 14:01:00' WHERE id = 1")
    conn.commit()

    return ConnInfo("mis_fineract", "mariadb", "127.0.0.1", 3306, "root", "", dbname, {})


@pytest.mark.mariadb
def test_reconciliation_reads_a_mariadb_source(wh, mariadb_mis):
    wh.execute("SET TIME ZONE 'Africa/Kampala'")  # naive source datetimes must still be read as UTC
    result = by_name(reconciliation.run(ctx_for(wh, mariadb_mis)))["reconciliation.source_counts"]
    assert result.status == "pass", result.message
    assert result.numbers["loans_changed_since_extraction"] == 1  # naive datetimes compared as UTC
    assert result.numbers["loans_by_status"]["300"] == {"source": 15, "raw": 15}
    assert result.numbers["active_loans_compared"] == 15


def test_reconciliation_reads_a_fineract16_source_without_audit_columns(wh, mis):
    """Fineract 1.4-1.7 has no last_modified_on_utc: the check compares every row instead of failing."""
    from spm_warehouse import meta

    with psycopg.connect(mis) as src:
        src.execute("ALTER TABLE m_client DROP COLUMN last_modified_on_utc")
        src.execute("ALTER TABLE m_loan DROP COLUMN last_modified_on_utc")
        src.commit()
    meta.ensure_meta_schema(wh)
    meta.record_source_profile(wh, RUN_ID, "mis_fineract:postgresql", "Fineract 1.4-1.7",
                               {"m_client": "hash", "m_loan": "hash"})
    wh.commit()
    result = by_name(reconciliation.run(ctx_for(wh, conn_info(mis))))["reconciliation.source_counts"]
    assert result.status == "pass", result.message
    assert result.numbers["clients_changed_since_extraction"] == 0
    assert result.numbers["active_loans_compared"] > 0
    with psycopg.connect(mis) as src:
        src.execute("UPDATE m_client SET status_enum = 600 WHERE id = 1")
        src.commit()
    result = by_name(reconciliation.run(ctx_for(wh, conn_info(mis))))["reconciliation.source_counts"]
    assert result.status == "fail" and "clients with status 300: raw 16 vs source 15" in result.message


def test_mis_survey_quarantine_is_judged_per_ppi_submission(wh):
    """int_mis_surveys__quarantine: share = quarantined / PPI submissions of the survey module (not answer rows)."""
    wh.execute("CREATE SCHEMA IF NOT EXISTS intermediate")
    wh.execute("CREATE TABLE intermediate.int_mis_surveys__submissions (submission_key text, is_ppi_survey boolean)")
    wh.execute("""INSERT INTO intermediate.int_mis_surveys__submissions
                  SELECT 'mis:1:' || g, g <= 80 FROM generate_series(1, 100) g""")  # 80 PPI, 20 other surveys
    wh.execute("""CREATE VIEW intermediate.int_mis_surveys__quarantine AS
                  SELECT 'fineract:m_survey_scorecards'::text AS source, submission_key AS source_key,
                         'no_single_lookup_row: score 15 of survey PPI is in no band'::text AS reason,
                         'no_single_lookup_row'::text AS reason_code, 'mis'::text AS channel, 1::bigint AS survey_id,
                         7::bigint AS client_id
                  FROM intermediate.int_mis_surveys__submissions WHERE is_ppi_survey LIMIT 12""")
    wh.commit()
    with wh.transaction():
        results = by_name(quarantine.run(ctx_for(wh)))
    res = results["quarantine.shares"]
    assert res.numbers["sources"]["fineract:m_survey_scorecards"] == {
        "quarantined": 12, "population": 80, "share": 0.15, "max_share": 0.1, "reasons": ["no_single_lookup_row"]}
    assert res.status == "fail" and "fineract:m_survey_scorecards 12/80" in res.message
    payload = wh.execute("SELECT payload FROM meta.quarantine WHERE source = 'fineract:m_survey_scorecards' "
                         "LIMIT 1").fetchone()[0]
    assert payload["channel"] == "mis" and payload["survey_id"] == 1 and payload["client_id"] == 7
