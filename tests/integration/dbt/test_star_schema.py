"""Dimensions and facts of the star schema on the hand-made world (fixtures/star_world.py).

Client history (type 2), the office hierarchy, unknown members, loan facts
and transactions, checked against values worked out by hand from the rows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import stat
from datetime import date

import psycopg
import pytest
from databases import drop_database
from star_world import NIGHT2, SURVEY_LEVELS, band_of, clone_world, likelihood_of

from spm_warehouse.build import pseudonym_key, run_dbt
from spm_warehouse.settings import parse_conn_uri

pytestmark = pytest.mark.usefixtures("star_world")

D = date.fromisoformat
OPEN = D("9999-12-31")


def versions(world, client_id: int) -> list[tuple]:
    rows = world.q("""SELECT valid_from, valid_to, is_current, branch_id, loan_officer_id, status, poverty_band
                      FROM analytics_build.dim_client WHERE client_id = %s ORDER BY valid_from""", (client_id,))
    return [(r["valid_from"], r["valid_to"], r["is_current"], r["branch_id"], r["loan_officer_id"], r["status"],
             r["poverty_band"]) for r in rows]


def test_every_dbt_test_of_the_core_models_passed(star_world):
    for run in star_world.runs:
        tests = [r for r in run.results if r["resource_type"] == "test"]
        names = {r["unique_id"].split(".")[2] for r in tests}
        assert {"core__no_pii_columns_in_marts", "core__portfolio_equals_loan_snapshots",
                "kpi__par30_not_above_portfolio", "kpi__ratios_between_0_and_1",
                "core__no_future_dated_facts"} <= names
        assert any(n.startswith("relationships_fct_loan_client_sk") for n in names)
        assert [r["unique_id"] for r in tests if r["status"] != "pass"] == []


def test_big_staging_keys_are_held_by_the_raw_primary_keys(star_world, tmp_path):
    """Transaction and schedule ids are not GROUPed BY every night: their test reads the raw primary key.

    Without that key (and with a duplicate row it no longer prevents) exactly
    that test fails; the other staging tests still pass.
    """
    name, url = clone_world(star_world, "star_nopk")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            (pkey,) = conn.execute("""SELECT conname FROM pg_constraint
                                      WHERE conrelid = 'raw_mis.m_loan_transaction'::regclass AND contype = 'p'""").fetchone()
            conn.execute(f'ALTER TABLE raw_mis.m_loan_transaction DROP CONSTRAINT "{pkey}"')
            conn.execute("INSERT INTO raw_mis.m_loan_transaction SELECT * FROM raw_mis.m_loan_transaction LIMIT 1")
        result = run_dbt(["test", "--select", "stg_fineract__m_loan_transaction", "stg_fineract__m_loan_repayment_schedule"],
                         parse_conn_uri("warehouse", url), dbt_vars={"as_of_date": NIGHT2.isoformat()},
                         target_path=tmp_path / "target", log_path=tmp_path / "logs")
        nodes = json.loads((tmp_path / "target" / "manifest.json").read_text())["nodes"]

        def label(uid: str) -> tuple[str, str]:  # (test, model): long test names are hashed by dbt
            node = nodes[uid]
            return node["test_metadata"]["name"], node["attached_node"].rsplit(".", 1)[1]

        status = {label(r["unique_id"]): r["status"] for r in result.results}
        assert not result.success
        assert [t for t, s in status.items() if s != "pass"] == [
            ("core_primary_key_in_source", "stg_fineract__m_loan_transaction")], status
        assert status[("core_primary_key_in_source", "stg_fineract__m_loan_repayment_schedule")] == "pass"
        assert status[("not_null", "stg_fineract__m_loan_transaction")] == "pass"
    finally:
        drop_database(star_world.server_url, name)


def test_the_ratio_test_names_each_ratio_out_of_range(star_world, tmp_path):
    """kpi__ratios_between_0_and_1 reads each mart once and still names every ratio out of [0, 1].

    An IRIS retention rate below 0 is allowed (new clients who leave within the period), above 1 is not.
    """
    name, url = clone_world(star_world, "star_ratios")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            one_row = "ctid = (SELECT ctid FROM analytics_build.{0} WHERE branch_id > 0 ORDER BY period_end LIMIT 1)"
            changed = conn.execute("UPDATE analytics_build.kpi_branch_month SET par30_ratio = 1.5, "
                                   "retention_rate_iris = -0.2 WHERE " + one_row.format("kpi_branch_month")).rowcount
            changed += conn.execute("UPDATE analytics_build.kpi_segment_period SET women_borrowers_share = -0.1, "
                                    "retention_rate_iris_12m = 1.2 WHERE "
                                    + one_row.format("kpi_segment_period")).rowcount
            assert changed == 2
        result = run_dbt(["test", "--select", "kpi__ratios_between_0_and_1"],
                         parse_conn_uri("warehouse", url), dbt_vars={"as_of_date": NIGHT2.isoformat()},
                         target_path=tmp_path / "target", log_path=tmp_path / "logs")
        assert not result.success
        (test,) = [r for r in result.results if r["resource_type"] == "test"]
        assert test["failures"] == 3, test
        # the rows it found: its compiled SQL, run on the same database
        compiled = next((tmp_path / "target" / "compiled").rglob("kpi__ratios_between_0_and_1.sql")).read_text()
        with psycopg.connect(url) as conn:
            found = {f"{r[0]}.{r[1]}" for r in conn.execute(compiled)}
        assert found == {"kpi_branch_month.par30_ratio", "kpi_segment_period.women_borrowers_share",
                         "kpi_segment_period.retention_rate_iris_12m"}
    finally:
        drop_database(star_world.server_url, name)


def test_the_keys_that_nightly_relationships_tests_look_up_are_indexed(star_world):
    """Each parent key of a relationships test that reads only the night's rows has an index.

    A night's test of a history-sized fact reads the rows that night wrote. The planner may estimate
    them at one row and join them in a nested loop: without an index on the parent key, each of those
    rows scans the parent (at 500k clients, a 2-second test ran for more than ten minutes).
    """
    nodes = json.loads((star_world.tmp / "target" / "manifest.json").read_text())["nodes"]
    looked_up = set()
    for node in nodes.values():
        if (node.get("test_metadata") or {}).get("name") != "relationships":
            continue
        model = nodes.get(node.get("attached_node") or "")
        if model is None or (model["config"].get("meta") or {}).get("nightly_test_scope") != "written_tonight":
            continue
        kwargs = node["test_metadata"]["kwargs"]
        name = re.search(r"ref\(['\"](\w+)['\"]\)", kwargs["to"]).group(1)
        if "seed.spm_warehouse." + name in nodes:
            continue  # reference data of a few dozen rows: a scan per row costs nothing
        parent = nodes["model.spm_warehouse." + name]
        looked_up.add((parent["schema"], parent["alias"], kwargs["field"]))
    assert {("analytics_build", "dim_client", "client_sk"), ("analytics_build", "fct_loan", "loan_id")} <= looked_up
    unindexed = []
    for schema, table, column in sorted(looked_up):
        leading = {re.search(r"\((\w+)", r["indexdef"]).group(1) for r in star_world.q(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s", (schema, table))}
        if column not in leading:
            unindexed.append(f"{schema}.{table}.{column}")
    assert unindexed == []


def test_client_closed_and_reactivated_keeps_its_closure_in_history(star_world):
    """Night 1 saw client 2 closed on 04-20; night 2 sees it reactivated and active again on 05-10."""
    assert versions(star_world, 2) == [
        (D("2024-01-02"), D("2024-01-14"), False, 3, 101, "pending", "unknown"),
        (D("2024-01-15"), D("2024-04-19"), False, 3, 101, "active", "unknown"),
        (D("2024-04-20"), D("2024-05-09"), False, 3, 101, "closed", "unknown"),
        (D("2024-05-10"), OPEN, True, 3, 101, "active", "unknown"),
    ]


def test_branch_transfer_dated_by_office_joining_date(star_world):
    c4 = likelihood_of(SURVEY_LEVELS["C4"])
    assert versions(star_world, 4) == [
        (D("2024-01-20"), D("2024-01-31"), False, 3, 101, "pending", "unknown"),
        (D("2024-02-01"), D("2024-02-04"), False, 3, 101, "active", "unknown"),
        (D("2024-02-05"), D("2024-04-30"), False, 3, 101, "active", band_of(c4)),   # surveyed 02-05
        (D("2024-05-01"), OPEN, True, 4, 102, "active", band_of(c4)),               # transferred 05-01
    ]
    # the loan fact points at the version of its disbursement day (Branch A), the contract tables do not
    loan = star_world.one("""SELECT l.branch_id, c.branch_id AS branch_at_disbursement
                             FROM analytics_build.fct_loan l JOIN analytics_build.dim_client c USING (client_sk)
                             WHERE l.loan_id = 4""")
    assert (loan["branch_id"], loan["branch_at_disbursement"]) == (4, 3)


def test_client_attributes_without_personal_data(star_world):
    c1 = star_world.one("SELECT * FROM analytics_build.dim_client WHERE client_id = 1 AND is_current")
    s1 = likelihood_of(SURVEY_LEVELS["S1"])
    assert (c1["gender"], c1["area"], c1["age_band"]) == ("female", "rural", "25_34")   # born 1990-06-15
    assert c1["poverty_band_at_entry"] == band_of(s1)                 # first survey (S1), not the latest
    assert c1["poverty_band"] == band_of(likelihood_of(SURVEY_LEVELS["S4"]))
    assert c1["segment_key"] == f"female|rural|{band_of(s1)}"
    c5 = star_world.one("SELECT gender, area, segment_key, status FROM analytics_build.dim_client WHERE client_id = 5")
    assert (c5["gender"], c5["area"], c5["segment_key"], c5["status"]) == (
        "unknown", "unknown", "unknown|unknown|unknown", "pending")
    male = star_world.one("SELECT gender FROM analytics_build.dim_client WHERE client_id = 2 AND is_current")
    assert male["gender"] == "male"   # code value 'male' in lower case
    cols = {r["column_name"] for r in star_world.q(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'analytics_build'")}
    assert not cols & {"date_of_birth", "firstname", "lastname", "display_name", "mobile_no", "external_id"}


def test_account_numbers_are_published_as_keyed_pseudonyms(star_world):
    """dim_client.account_no and fct_loan.loan_account_no: 'P' + HMAC-SHA256(SPM_PSEUDONYM_KEY, number)[:16];
    the real numbers only in the restricted build schema, next to the same pseudonym."""
    key = pseudonym_key().encode()

    def expected(number: str) -> str:
        return "P" + hmac.new(key, number.encode(), hashlib.sha256).hexdigest()[:16]

    clients = star_world.q("""SELECT d.client_id, d.account_no, r.account_no AS real_no, r.account_no_pseudonym,
                                     m.account_no AS raw_no
                              FROM analytics_build.dim_client d
                              JOIN raw_mis.m_client m ON m.id = d.client_id
                              LEFT JOIN analytics_restricted_build.client_account r ON r.client_id = d.client_id
                              WHERE d.is_current ORDER BY 1""")
    assert len(clients) >= 5
    for c in clients:
        assert c["account_no"] == expected(c["raw_no"]) != c["raw_no"]
        assert (c["real_no"], c["account_no_pseudonym"]) == (c["raw_no"], c["account_no"])
    loans = star_world.q("""SELECT f.loan_account_no, m.account_no AS raw_no, r.loan_account_no AS real_no
                            FROM analytics_build.fct_loan f JOIN raw_mis.m_loan m ON m.id = f.loan_id
                            JOIN analytics_restricted_build.loan_account r ON r.loan_id = f.loan_id""")
    assert loans and all(r["loan_account_no"] == expected(r["raw_no"]) and r["real_no"] == r["raw_no"] for r in loans)
    assert star_world.one("SELECT count(*) AS n FROM analytics_build.fct_loan")["n"] == len(loans)
    # the compiled SQL holds the key: dbt's target folders are the owner's only
    for run in star_world.runs:
        assert stat.S_IMODE(run.target_path.stat().st_mode) == 0o700, run.target_path


def test_dimensions_have_unknown_members_and_hierarchy(star_world):
    for table, key in (("dim_client", "client_sk"), ("dim_branch", "branch_id"), ("dim_loan_officer", "loan_officer_id"),
                       ("dim_product", "product_id"), ("dim_date", "date_key")):
        assert star_world.q(f"SELECT 1 FROM analytics_build.{table} WHERE {key} = -1"), table
    rows = star_world.q("""SELECT branch_id, region_id, region_name, hierarchy_level, is_leaf
                           FROM analytics_build.dim_branch WHERE branch_id > 0 ORDER BY branch_id""")
    assert [(r["branch_id"], r["region_id"], r["region_name"], r["hierarchy_level"], r["is_leaf"]) for r in rows] == [
        (1, 1, "Head Office", 0, False), (2, 2, "East Region", 1, False),
        (3, 2, "East Region", 2, True), (4, 2, "East Region", 2, True)]


def test_loan_facts(star_world):
    rows = star_world.q("""SELECT loan_id, client_id, loan_officer_id, loan_cycle, loan_status, principal_disbursed,
                                  principal_repaid, written_off_principal, outstanding_principal, days_in_arrears,
                                  loan_purpose, disbursed_date_key
                           FROM analytics_build.fct_loan ORDER BY loan_id""")
    got = [(r["loan_id"], r["client_id"], r["loan_officer_id"], r["loan_cycle"], r["loan_status"],
            r["principal_disbursed"], r["principal_repaid"], r["written_off_principal"], r["outstanding_principal"],
            r["days_in_arrears"]) for r in rows]
    assert got == [
        (1, 1, 101, 1, "active", 1200, 600, None, 600, 41),
        (2, 2, 101, 1, "closed_obligations_met", 600, 600, None, 0, 0),
        (3, 3, 102, 1, "closed_written_off", 900, 0, 900, 0, 0),
        (4, 4, 102, 1, "active", 1000, 850, None, 150, 20),
        (5, 2, -1, 2, "active", 500, 250, None, 250, 0),        # no officer: the unknown member
    ]
    assert {r["loan_purpose"] for r in rows} == {"Agriculture"}
    assert rows[0]["disbursed_date_key"] == 20240120


def test_transaction_facts(star_world):
    rows = star_world.q("""SELECT transaction_id, transaction_type, transaction_date_key, branch_id
                           FROM analytics_build.fct_loan_transaction ORDER BY transaction_id""")
    ids = [r["transaction_id"] for r in rows]
    assert ids == [1001, 1002, 1003, 1004, 1005, 2001, 2002, 2003, 2004, 3001, 3002,
                   4001, 4002, 4004, 4005, 4006, 5001, 5002]          # 4003 was reversed
    by_id = {r["transaction_id"]: r for r in rows}
    assert by_id[3002]["transaction_type"] == "write_off"
    assert by_id[4006]["transaction_date_key"] == 20240325 and by_id[4006]["branch_id"] == 4
