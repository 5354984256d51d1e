"""The yearly KPIs, PAR buckets, caseload and the period-grain marts on a seventeen-month world.

The world (fixtures/year_world.py) runs from January 2023 to the as-of date
2024-05-15. The tables below were worked out on paper from its rows with the
rules of docs/kpi-contract.md and the formulas of macros/core_kpi_month.sql;
each ratio is then computed here from those tables with the formula it
checks, never read back from the build.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import psycopg
import pytest
from databases import drop_database
from psycopg.rows import dict_row
from star_world import dbt, likelihood_of
from year_world import AS_OF, SURVEY_LEVELS, build_year_world

D = date.fromisoformat
MONTHS = [f"2023-{m:02d}" for m in range(1, 13)] + [f"2024-{m:02d}" for m in range(1, 6)]
PERIOD_ENDS = {
    "2023-01": "2023-01-31", "2023-02": "2023-02-28", "2023-03": "2023-03-31", "2023-04": "2023-04-30",
    "2023-05": "2023-05-31", "2023-06": "2023-06-30", "2023-07": "2023-07-31", "2023-08": "2023-08-31",
    "2023-09": "2023-09-30", "2023-10": "2023-10-31", "2023-11": "2023-11-30", "2023-12": "2023-12-31",
    "2024-01": "2024-01-31", "2024-02": "2024-02-29", "2024-03": "2024-03-31", "2024-04": "2024-04-30",
    "2024-05": "2024-05-15",   # the as-of date ends its month
}

# Branch A (office 3), month by month. Clients: 1 active from 2023-01-10; 2 from 2023-01-20, closed 2023-08-10;
# 3 reopened (the source knows it active from its reactivation on 2023-10-10 only: it is new in October and not
# active in March..June 2023, when it first was); 4 from 2023-06-01, closed 2024-02-10; 5 activated 2023-11-15
# and closed 2023-11-25 (new and exited in November, never active at a period end); 6 from 2024-01-05.
ACTIVE_A = [2, 2, 2, 2, 2, 3, 3, 2, 2, 3, 3, 3, 4, 3, 3, 3, 3]
NEW_A = [2, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0]
EXITED_A = [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0]
# Outstanding principal: L1 1200 - 100 a month Feb..Jun, 700 until its write-off on 2023-12-15; L2 600, 300 after
# 05-10, repaid 08-01; L3 1000 from 06-10, 800 / 600 after July / August, written off 2024-01-25; L4 800 from
# 2023-10-20, -100 every month from November; L6 400 from 2024-01-10, 300, 200 (April and May unpaid); L7 300
# from 2024-02-01, 200, 100 (May unpaid).
GLP_A = [1200, 1700, 1600, 1500, 1100, 2000, 1800, 1300, 1300, 2100, 2000, 1200, 900, 1000, 700, 500, 500]
WRITE_OFF_A = [0] * 11 + [700, 600] + [0] * 4          # L1 in December 2023, L3 in January 2024
# (par1, par30, par90) where not all 0. Days in arrears at the period end: L1 (installment 6 due 2023-07-20 unpaid)
# 11, 42, 72, 103, 133 in July..November; L3 (installment 3 due 2023-09-10 unpaid) 20, 51, 81, 112 in
# September..December; L6 (due 2024-04-10) 20 and 35 in April and May 2024; L7 (due 2024-05-01) 14 on 05-15.
PAR_A = {"2023-07": (700, 0, 0), "2023-08": (700, 700, 0), "2023-09": (1300, 700, 0), "2023-10": (1300, 1300, 700),
         "2023-11": (1300, 1300, 700), "2023-12": (600, 600, 600), "2024-04": (200, 0, 0), "2024-05": (300, 200, 0)}
# Branch W (office 6): client 7 active from 2023-02-01; its L5 (500 on 2023-02-15, first due 2023-03-15) is never
# paid (16, 46, 77, 107 ... days late at the ends of March, April, May, June ...) and written off on 2024-03-05.
GLP_W = [0] + [500] * 13 + [0] * 3
WRITE_OFF_W = [0] * 14 + [500, 0, 0]
L = {name: likelihood_of(level) for name, level in SURVEY_LEVELS.items()}


def close(actual, expected) -> bool:
    if expected is None or actual is None:
        return actual is None and expected is None
    return abs(Decimal(actual) - Decimal(expected)) < Decimal("1e-12")


def ratio(numerator, denominator) -> Decimal | None:
    return None if denominator == 0 else Decimal(numerator) / Decimal(denominator)


def retention_12m(active: list[int], new: list[int], i: int) -> Decimal | None:
    """The contract: active / (active twelve periods earlier + new of the twelve periods ending with this one)."""
    if i < 12:
        return None
    return ratio(active[i], active[i - 12] + sum(new[i - 11:i + 1]))


def write_off_ratio_12m(write_off: list[int], glp: list[int], i: int) -> Decimal | None:
    """Write-offs of the twelve periods ending with this one / the mean portfolio of their twelve period ends."""
    if i < 11:
        return None
    return ratio(sum(write_off[i - 11:i + 1]), Decimal(sum(glp[i - 11:i + 1])) / 12)


@pytest.fixture(scope="module")
def year_world(pg_server_url, tmp_path_factory):
    world = build_year_world(pg_server_url, tmp_path_factory.mktemp("year_world"))
    yield world
    drop_database(pg_server_url, world.name)


def rows_by_month(world, sql: str, params: tuple = ()) -> dict[str, dict]:
    return {r["period_end"].isoformat()[:7]: r for r in world.q(sql, params)}


def test_every_dbt_test_passed(year_world):
    tests = [r for r in year_world.runs[0].results if r["resource_type"] == "test"]
    names = {r["unique_id"].split(".")[2] for r in tests}
    assert {"kpi__periods_match_months", "kpi__ratios_between_0_and_1", "kpi__slices_add_up"} <= names
    assert [r["unique_id"] for r in tests if r["status"] != "pass"] == []


def test_branch_counts_and_retention_12m(year_world):
    rows = rows_by_month(year_world, """SELECT * FROM analytics_build.kpi_branch_month WHERE branch_id = 3
                                        ORDER BY period_end""")
    assert [rows[m]["period_end"].isoformat() for m in MONTHS] == [PERIOD_ENDS[m] for m in MONTHS]
    for i, m in enumerate(MONTHS):
        r = rows[m]
        assert (r["active_clients"], r["new_clients"], r["exited_clients"]) == (ACTIVE_A[i], NEW_A[i], EXITED_A[i]), m
        assert close(r["retention_rate_12m"], retention_12m(ACTIVE_A, NEW_A, i)), (m, r["retention_rate_12m"])
    # fewer than twelve earlier periods: null up to December 2023 (eleven earlier)
    assert rows["2023-12"]["retention_rate_12m"] is None
    # January 2024: 4 active / (2 active at the end of January 2023 + 4 new since: clients 4, 3 (reopened), 5, 6)
    assert close(rows["2024-01"]["retention_rate_12m"], Decimal(4) / Decimal(6))
    # May 2024: 3 / (2 at the end of May 2023 + 4 new)
    assert close(rows["2024-05"]["retention_rate_12m"], Decimal("0.5"))


def test_retention_12m_zero_denominator_and_a_branch_that_started_empty(year_world):
    rows = {(r["branch_id"], r["period_end"].isoformat()[:7]): r for r in year_world.q(
        "SELECT * FROM analytics_build.kpi_branch_month WHERE branch_id IN (6, 7)")}
    # Branch Z: one pending client, never active, never new: 0 / (0 + 0) is null, however many periods
    assert all(rows[(7, m)]["retention_rate_12m"] is None for m in MONTHS)
    assert all(rows[(7, m)]["retention_rate"] is None for m in MONTHS)
    # Branch W: nobody active at the end of January 2023, client 7 new in February: 1 / (0 + 1)
    assert rows[(6, "2024-01")]["retention_rate_12m"] == 1
    assert rows[(6, "2023-12")]["retention_rate_12m"] is None


def test_iris_pi9319(year_world):
    rows = rows_by_month(year_world, "SELECT * FROM analytics_build.kpi_branch_month WHERE branch_id = 3")
    nov = rows["2023-11"]
    # November 2023: 3 active at the start (1, 4, 3), all still active at the end; client 5 joined and left.
    # PI9319 = (3 active at the end - 1 new) / 3 = 2/3; the share of survivors (the old formula) would be 3/3.
    assert (nov["active_clients_previous"], nov["active_clients"], nov["new_clients"]) == (3, 3, 1)
    assert close(nov["retention_rate_iris"], Decimal(2) / Decimal(3))
    assert close(rows["2023-10"]["retention_rate_iris"], Decimal(1))         # (3 - 1 reopened) / 2
    assert rows["2023-01"]["retention_rate_iris"] is None                    # nobody active at the start
    for i, m in enumerate(MONTHS):
        previous = ACTIVE_A[i - 1] if i else 0
        assert close(rows[m]["retention_rate_iris"], ratio(ACTIVE_A[i] - NEW_A[i], previous)), m
        # twelve periods: (active - new of the twelve periods ending here) / active twelve periods earlier
        expected = None if i < 12 else ratio(ACTIVE_A[i] - sum(NEW_A[i - 11:i + 1]), ACTIVE_A[i - 12])
        assert close(rows[m]["retention_rate_iris_12m"], expected), m
    # May 2024: (3 - 4) / 2 - two of the four new clients (4 and 5) left within the year
    assert close(rows["2024-05"]["retention_rate_iris_12m"], Decimal("-0.5"))


def test_retention_method_iris_is_the_published_retention_rate(year_world, tmp_path):
    """var retention_method: iris_pi9319 makes retention_rate the PI9319 column."""
    dbt(year_world.url, AS_OF, tmp_path, ["run", "--select", "kpi_branch_month",
                                          "--vars", '{"retention_method": "iris_pi9319"}'], select=False)
    try:
        rows = year_world.q("""SELECT retention_rate, retention_rate_iris FROM analytics_build.kpi_branch_month
                               WHERE branch_id = 3 AND period_end = '2023-11-30'""")
        assert close(rows[0]["retention_rate"], Decimal(2) / Decimal(3))
        assert rows[0]["retention_rate"] == rows[0]["retention_rate_iris"]
    finally:
        dbt(year_world.url, AS_OF, tmp_path, ["run", "--select", "kpi_branch_month"], select=False)
    restored = year_world.one("""SELECT retention_rate FROM analytics_build.kpi_branch_month
                                 WHERE branch_id = 3 AND period_end = '2023-11-30'""")
    assert close(restored["retention_rate"], Decimal(3) / Decimal(3 + 1))       # contract: 3 / (3 + 1)


def test_product_retention_by_entry_product(year_world):
    rows = {(r["branch_id"], r["product_id"]): r for r in year_world.q(
        "SELECT * FROM analytics_build.kpi_product_month WHERE period_end = %s", (AS_OF,))}
    assert set(rows) == {(3, 1), (3, 2), (3, -1), (6, 1), (7, -1)}
    # entry products: clients 1, 4, 6 Monthly loan (L1, L3, L6); 2, 3 Agri (L2, L4); 5 and 8 never borrowed
    assert (rows[(3, 1)]["active_clients"], rows[(3, 2)]["active_clients"], rows[(3, -1)]["active_clients"]) == (2, 1, 0)
    assert rows[(3, -1)]["product_name"] == "No loan"
    # May 2024 over twelve periods: Monthly loan 2 / (1 (client 1) + 2 new (4, 6)); Agri 1 / (1 (client 2) + 1 new
    # (3)); no loan 0 / (0 + 1 new (5)); Branch W 1 / (1 + 0); Branch Z nothing: null
    assert close(rows[(3, 1)]["retention_rate_12m"], Decimal(2) / Decimal(3))
    assert close(rows[(3, 2)]["retention_rate_12m"], Decimal("0.5"))
    assert close(rows[(3, -1)]["retention_rate_12m"], Decimal(0))
    assert close(rows[(6, 1)]["retention_rate_12m"], Decimal(1))
    assert rows[(7, -1)]["retention_rate_12m"] is None
    # loans count for their own product: Agri borrowers are client 3 (L4) and client 1 (L7, entered with Monthly loan)
    assert (rows[(3, 2)]["active_borrowers"], rows[(3, 2)]["gross_loan_portfolio"]) == (2, 300)
    # PPI over the entry product's active clients: client 1 (surveyed) and 6 (surveyed) of Monthly loan
    assert rows[(3, 1)]["ppi_assessed_clients"] == 2 and close(rows[(3, 1)]["ppi_coverage"], Decimal(1))
    assert close(rows[(3, 2)]["ppi_coverage"], Decimal(0))


def test_par1_and_par90(year_world):
    rows = rows_by_month(year_world, "SELECT * FROM analytics_build.kpi_branch_month WHERE branch_id = 3")
    for i, m in enumerate(MONTHS):
        par1, par30, par90 = PAR_A.get(m, (0, 0, 0))
        r = rows[m]
        assert r["gross_loan_portfolio"] == GLP_A[i], m
        assert (r["par1_principal"], r["par30_principal"], r["par90_principal"]) == (par1, par30, par90), m
        assert close(r["par1_ratio"], ratio(par1, GLP_A[i])), m
        assert close(r["par90_ratio"], ratio(par90, GLP_A[i])), m
    w = rows_by_month(year_world, "SELECT * FROM analytics_build.kpi_branch_month WHERE branch_id = 6")
    # L5: 16 days late at the end of March 2023 (PAR1 only), 46 in April (PAR30), 107 in June (PAR90)
    assert [(w[m]["par1_principal"], w[m]["par30_principal"], w[m]["par90_principal"])
            for m in ("2023-02", "2023-03", "2023-04", "2023-06", "2024-03")] == [
        (0, 0, 0), (500, 0, 0), (500, 500, 0), (500, 500, 500), (0, 0, 0)]
    assert w["2024-03"]["par90_ratio"] is None                                # no portfolio left


def test_write_off_ratio_12m(year_world):
    for branch, glp, write_off in ((3, GLP_A, WRITE_OFF_A), (6, GLP_W, WRITE_OFF_W)):
        rows = rows_by_month(year_world, "SELECT * FROM analytics_build.kpi_branch_month WHERE branch_id = %s",
                             (branch,))
        for i, m in enumerate(MONTHS):
            assert rows[m]["write_off_amount"] == write_off[i], (branch, m)
            assert close(rows[m]["write_off_ratio_12m"], write_off_ratio_12m(write_off, glp, i)), (branch, m)
    a = rows_by_month(year_world, "SELECT * FROM analytics_build.kpi_branch_month WHERE branch_id = 3")
    assert a["2023-11"]["write_off_ratio_12m"] is None                        # eleven periods only
    # December 2023: 700 / (18800 / 12)
    assert close(a["2023-12"]["write_off_ratio_12m"], Decimal(700 * 12) / Decimal(18800))
    z = year_world.q("SELECT write_off_ratio_12m FROM analytics_build.kpi_branch_month WHERE branch_id = 7")
    assert {r["write_off_ratio_12m"] for r in z} == {None}                    # no portfolio ever


def test_caseload_and_shares(year_world):
    a = rows_by_month(year_world, "SELECT * FROM analytics_build.kpi_branch_month WHERE branch_id = 3")
    # June 2023: L1, L2 (officer 101; clients 1, 2), L3 (102; client 4): 3 borrowers, 2 officers
    assert (a["2023-06"]["active_borrowers"], a["2023-06"]["loan_officers"]) == (3, 2)
    assert close(a["2023-06"]["borrowers_per_officer"], Decimal("1.5"))
    # January 2024: L4 (101, client 3), L6 (102, client 6); L3 written off on 01-25
    assert (a["2024-01"]["active_borrowers"], a["2024-01"]["loan_officers"]) == (2, 2)
    assert close(a["2024-01"]["borrowers_per_officer"], Decimal(1))
    # March 2024: L4, L6 and L7 (client 1, no loan officer): 3 borrowers, still 2 officers
    assert (a["2024-03"]["active_borrowers"], a["2024-03"]["loan_officers"]) == (3, 2)
    assert close(a["2024-03"]["borrowers_per_officer"], Decimal("1.5"))
    # women: clients 1 of 1, 2, 4 in June 2023; 1, 3, 6 in March 2024
    assert close(a["2023-06"]["women_borrowers_share"], Decimal(1) / Decimal(3))
    assert close(a["2024-03"]["women_borrowers_share"], Decimal(1))
    # PPI: client 1 (surveyed before its activation) of 1, 2 in March 2023; 1 and 6 of 1, 3, 6 in March 2024
    assert close(a["2023-03"]["ppi_coverage"], Decimal("0.5"))
    assert close(a["2024-03"]["ppi_coverage"], Decimal(2) / Decimal(3))
    assert close(a["2024-03"]["avg_poverty_likelihood"], (L["C1"] + L["C6"]) / 2)
    officers = {(r["branch_id"], r["loan_officer_id"], r["period_end"].isoformat()[:7]): r for r in year_world.q(
        "SELECT * FROM analytics_build.kpi_loan_officer_month WHERE period_end IN ('2023-06-30', '2024-03-31')")}
    caseload = {k: (r["active_borrowers"], r["loan_officers"], r["borrowers_per_officer"]) for k, r in officers.items()}
    assert caseload[(3, 101, "2023-06")] == (2, 1, 2)           # the officer's own borrowers
    assert caseload[(3, 102, "2023-06")] == (1, 1, 1)
    assert caseload[(3, 101, "2024-03")] == (1, 1, 1)
    assert caseload[(3, -1, "2024-03")] == (1, 0, None)         # L7 has no loan officer
    assert caseload[(6, 103, "2024-03")] == (0, 0, None)        # L5 written off


def test_every_mart_with_a_branch_carries_its_region(year_world):
    with psycopg.connect(year_world.url, row_factory=dict_row) as conn:
        tables = [r["table_name"] for r in conn.execute(
            """SELECT table_name FROM information_schema.columns
               WHERE table_schema = 'analytics_build' AND column_name = 'branch_id' AND table_name LIKE 'kpi\\_%%'
               ORDER BY 1""").fetchall()]
        every_branch = {"kpi_branch_month", "kpi_loan_officer_month", "kpi_product_month", "kpi_segment_month",
                        "kpi_branch_period", "kpi_loan_officer_period", "kpi_product_period", "kpi_segment_period"}
        assert every_branch <= set(tables)
        # Branch A is under East Region, Branches W and Z under West Region (offices 2 and 5)
        expected = [(3, 2, "East Region"), (6, 5, "West Region"), (7, 5, "West Region")]
        for table in tables:
            regions = [tuple(r.values()) for r in conn.execute(
                f"""SELECT DISTINCT branch_id, region_id, region_name FROM analytics_build.{table}
                    WHERE branch_id IN (3, 6, 7) ORDER BY 1""").fetchall()]
            if table in every_branch:
                assert regions == expected, table
            else:  # kpi_alerts, kpi_at_risk_loans: only the branches they list, each with its region
                assert set(regions) <= set(expected), table


def test_period_grain_quarter_and_year(year_world):
    rows = {(r["period_grain"], r["period_label"]): r for r in year_world.q(
        "SELECT * FROM analytics_build.kpi_branch_period WHERE branch_id = 3")}
    assert sorted(k for k in rows if k[0] != "month") == [
        ("quarter", "2023 Q1"), ("quarter", "2023 Q2"), ("quarter", "2023 Q3"), ("quarter", "2023 Q4"),
        ("quarter", "2024 Q1"), ("quarter", "2024 Q2"), ("year", "2023"), ("year", "2024")]
    assert {k[1] for k in rows if k[0] == "month"} == set(MONTHS)
    assert sorted(k for k, r in rows.items() if r["is_latest_period"]) == [
        ("month", "2024-05"), ("quarter", "2024 Q2"), ("year", "2024")]

    q1 = rows[("quarter", "2024 Q1")]
    i = MONTHS.index("2024-03")
    assert (q1["period_start"], q1["period_end"], q1["is_partial_period"]) == (D("2024-01-01"), D("2024-03-31"), False)
    # stocks at the quarter's end (March 2024)
    assert (q1["active_clients"], q1["gross_loan_portfolio"], q1["active_borrowers"]) == (ACTIVE_A[i], GLP_A[i], 3)
    # flows over January..March: client 6 new, client 4 exited, L3 written off (600), L6 and L7 disbursed (400 + 300)
    assert (q1["new_clients"], q1["exited_clients"]) == (sum(NEW_A[i - 2:i + 1]), sum(EXITED_A[i - 2:i + 1])) == (1, 1)
    assert (q1["write_off_amount"], q1["loans_written_off"], q1["disbursed_amount"], q1["loans_disbursed"]) == (
        600, 1, 700, 2)
    # retention over the quarter: 3 / (3 active at the end of 2023 Q4 + 1 new); PI9319 (3 - 1) / 3
    assert q1["active_clients_previous"] == ACTIVE_A[i - 3] == 3
    assert close(q1["retention_rate"], Decimal(3) / Decimal(4))
    assert close(q1["retention_rate_iris"], Decimal(2) / Decimal(3))
    assert close(q1["ppi_coverage"], Decimal(2) / Decimal(3))
    # the same quarter a year earlier (2023 Q1): 2 active, both new, 1600 outstanding, no write-off
    assert (q1["active_clients_year_ago"], q1["new_clients_year_ago"], q1["exited_clients_year_ago"],
            q1["gross_loan_portfolio_year_ago"], q1["write_off_amount_year_ago"], q1["active_borrowers_year_ago"]) == (
        2, 2, 0, 1600, 0, 2)
    assert close(q1["ppi_coverage_year_ago"], Decimal("0.5"))
    assert q1["retention_rate_12m_year_ago"] is None and q1["write_off_ratio_12m_year_ago"] is None

    q2 = rows[("quarter", "2024 Q2")]
    i = MONTHS.index("2024-05")
    # the quarter still running: it ends on the as-of date
    assert (q2["period_start"], q2["period_end"], q2["is_partial_period"], q2["is_latest_period"]) == (
        D("2024-04-01"), AS_OF, True, True)
    assert (q2["active_clients"], q2["new_clients"], q2["exited_clients"], q2["gross_loan_portfolio"]) == (3, 0, 0, 500)
    assert close(q2["par30_ratio"], Decimal(200) / Decimal(500)) and close(q2["par1_ratio"], Decimal(300) / Decimal(500))
    assert close(q2["retention_rate"], Decimal(1))                           # 3 / (3 + 0)
    assert close(q2["retention_rate_12m"], retention_12m(ACTIVE_A, NEW_A, i))
    assert close(q2["write_off_ratio_12m"], write_off_ratio_12m(WRITE_OFF_A, GLP_A, i))
    # a year earlier, the same part of the quarter: April..May 2023
    assert (q2["active_clients_year_ago"], q2["new_clients_year_ago"], q2["gross_loan_portfolio_year_ago"],
            q2["write_off_amount_year_ago"]) == (2, 0, 1100, 0)
    assert close(q2["par30_ratio_year_ago"], Decimal(0))

    y23 = rows[("year", "2023")]
    assert (y23["period_end"], y23["is_partial_period"]) == (D("2023-12-31"), False)
    # clients 1, 2, 4, 3, 5 new; 2 and 5 exited; nobody active before: 3 / (0 + 5); PI9319 null (0 at the start)
    assert (y23["active_clients"], y23["new_clients"], y23["exited_clients"], y23["active_clients_previous"]) == (
        3, sum(NEW_A[:12]), sum(EXITED_A[:12]), 0) == (3, 5, 2, 0)
    assert close(y23["retention_rate"], Decimal(3) / Decimal(5)) and y23["retention_rate_iris"] is None
    # L2 repaid on 2023-08-01 and client 2 took no other loan within 90 days: a decided drop-out
    assert (y23["repaid_loans_decided"], y23["dropouts"], y23["retention_rate_followon"]) == (1, 1, 0)
    assert (y23["write_off_amount"], y23["disbursed_amount"], y23["loans_disbursed"]) == (700, 3600, 4)
    assert close(y23["write_off_ratio_12m"], Decimal(700 * 12) / Decimal(18800))
    assert y23["active_clients_year_ago"] is None                             # no 2022

    y24 = rows[("year", "2024")]
    assert (y24["period_end"], y24["is_partial_period"], y24["is_latest_period"]) == (AS_OF, True, True)
    assert (y24["active_clients"], y24["new_clients"], y24["exited_clients"], y24["write_off_amount"]) == (3, 1, 1, 600)
    assert close(y24["retention_rate"], Decimal(3) / Decimal(4))
    # January..May 2023
    assert (y24["active_clients_year_ago"], y24["new_clients_year_ago"], y24["exited_clients_year_ago"],
            y24["gross_loan_portfolio_year_ago"], y24["active_borrowers_year_ago"]) == (2, 2, 0, 1100, 2)

    m = rows[("month", "2024-05")]
    assert (m["period_end"], m["active_clients_year_ago"], m["gross_loan_portfolio_year_ago"]) == (AS_OF, 2, 1100)
    assert rows[("month", "2023-05")]["active_clients_year_ago"] is None
