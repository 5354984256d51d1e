"""The KPI contract tables on the hand-made world, against values worked out by hand.

The world (fixtures/star_world.py) has two branches, six clients and five
loans over January-June 2024. Every number below was computed on paper from
the rows in the harness with the rules of ../shared/spec/kpi-contract.md; the
comments say which rule each one exercises.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from star_world import NIGHT2, SURVEY_LEVELS, likelihood_of

pytestmark = pytest.mark.usefixtures("star_world")

D = date.fromisoformat
PERIODS = [D("2024-01-31"), D("2024-02-29"), D("2024-03-31"), D("2024-04-30"), D("2024-05-31"), D("2024-06-30")]

# fct_portfolio_month: (loan, period_end, branch, officer, outstanding, days in arrears, par30)
PORTFOLIO = [
    # L1 1200 on 2024-01-20, 6 x 200 due the 20th; repaid 200 (02-20), 200 (03-20), 100 (04-25), 100 (05-05)
    (1, "2024-01-31", 3, 101, 1200, 0, False),
    (1, "2024-02-29", 3, 101, 1000, 0, False),
    (1, "2024-03-31", 3, 101, 800, 0, False),
    (1, "2024-04-30", 3, 101, 700, 10, False),   # installment 3 (due 04-20) half paid at the period end
    (1, "2024-05-31", 3, 101, 600, 11, False),   # paid in May; installment 4 (due 05-20) now unpaid
    (1, "2024-06-30", 3, 101, 600, 41, True),
    # L2 600, repaid in full on 2024-04-15: no row from April on
    (2, "2024-01-31", 3, 101, 600, 0, False),
    (2, "2024-02-29", 3, 101, 400, 0, False),
    (2, "2024-03-31", 3, 101, 200, 0, False),
    # L3 900 on 2024-03-01, never repaid, written off 2024-06-10
    (3, "2024-03-31", 4, 102, 900, 0, False),    # installment 1 due exactly on the period end: not late yet
    (3, "2024-04-30", 4, 102, 900, 30, False),   # 30 days is not PAR30 (> 30)
    (3, "2024-05-31", 4, 102, 900, 61, True),
    # L4 1000 on 2024-02-10 (client 4, transferred to Branch B on 2024-05-01: Branch B for every period;
    # officer 102 now, 101 at night 1: 102 for every period). 250 on 03-10, 100 backdated to 03-25,
    # 250 on 04-10 reversed, corrected on 04-12, 250 on 05-10
    (4, "2024-02-29", 4, 102, 1000, 0, False),
    (4, "2024-03-31", 4, 102, 650, 0, False),
    (4, "2024-04-30", 4, 102, 400, 0, False),
    (4, "2024-05-31", 4, 102, 150, 0, False),
    (4, "2024-06-30", 4, 102, 150, 20, False),   # installment 4 due 06-10
    # L5 500 on 2024-05-15 for the reactivated client 2, no loan officer
    (5, "2024-05-31", 3, None, 500, 0, False),
    (5, "2024-06-30", 3, None, 250, 0, False),
]

L = {name: likelihood_of(level) for name, level in SURVEY_LEVELS.items()}
# kpi_branch_month: active, new, exited, retention, borrowers, women, GLP, PAR30, ratio, PPI clients, avg likelihood
BRANCH = {
    # Branch A: client 1 (active from 01-10), client 2 (reactivated: active from 05-10 only, no closure now),
    # client 5 pending (never active)
    (3, "2024-01-31"): (1, 1, 0, "1", 2, 1, 1800, 0, "0", 1, L["S1"]),   # S1 interviewed before activation counts
    (3, "2024-02-29"): (1, 0, 0, "1", 2, 1, 1400, 0, "0", 1, L["S1"]),
    (3, "2024-03-31"): (1, 0, 0, "1", 2, 1, 1000, 0, "0", 1, L["S1"]),
    (3, "2024-04-30"): (1, 0, 0, "1", 1, 1, 700, 0, "0", 1, L["S1"]),
    (3, "2024-05-31"): (2, 1, 0, "1", 2, 1, 1100, 0, "0", 1, L["S4"]),   # latest: S4 (same day/time as S3, higher _id)
    (3, "2024-06-30"): (2, 0, 0, "1", 2, 1, 850, 600, Decimal(600) / Decimal(850), 1, L["S4"]),
    # Branch B: client 6 (01-25 .. closed 03-15), client 3 (from 02-20), client 4 (from 02-01, transferred in)
    (4, "2024-01-31"): (1, 1, 0, "1", 0, 0, 0, 0, None, 0, None),          # no portfolio: ratio null
    (4, "2024-02-29"): (3, 2, 0, "1", 1, 0, 1000, 0, "0", 1, L["C4"]),
    (4, "2024-03-31"): (2, 0, 1, Decimal(2) / Decimal(3), 2, 1, 1550, 0, "0", 2, (L["C3"] + L["C4"]) / 2),
    (4, "2024-04-30"): (2, 0, 0, "1", 2, 1, 1300, 0, "0", 2, (L["C3"] + L["C4"]) / 2),
    (4, "2024-05-31"): (2, 0, 0, "1", 2, 1, 1050, 900, Decimal(900) / Decimal(1050), 2, (L["C3"] + L["C4"]) / 2),
    (4, "2024-06-30"): (2, 0, 0, "1", 1, 0, 150, 0, "0", 2, (L["C3"] + L["C4"]) / 2),
}
CONTRACT_COLUMNS = ["branch_id", "branch_name", "period_end", "active_clients", "new_clients", "exited_clients",
                    "retention_rate", "retention_rate_12m", "active_borrowers", "women_borrowers", "gross_loan_portfolio",
                    "par30_principal", "par30_ratio", "ppi_assessed_clients", "avg_poverty_likelihood"]


def close(actual, expected) -> bool:
    if expected is None or actual is None:
        return actual is None and expected is None
    return abs(Decimal(actual) - Decimal(expected)) < Decimal("1e-12")


def test_periods_run_from_first_activation_to_as_of(star_world):
    rows = star_world.q("SELECT DISTINCT period_end FROM analytics_build.kpi_branch_month ORDER BY 1")
    assert [r["period_end"] for r in rows] == PERIODS
    assert PERIODS[-1] == NIGHT2


def test_portfolio_month_rows(star_world):
    rows = star_world.q("""SELECT loan_id, period_end, branch_id, product_id, loan_officer_id, outstanding_principal,
                                  days_in_arrears, is_par30
                           FROM analytics_build.fct_portfolio_month ORDER BY loan_id, period_end""")
    got = [(r["loan_id"], r["period_end"].isoformat(), r["branch_id"], r["loan_officer_id"],
            r["outstanding_principal"], r["days_in_arrears"], r["is_par30"]) for r in rows]
    assert got == [(loan, p, b, o, Decimal(out), dia, par) for loan, p, b, o, out, dia, par in PORTFOLIO]
    assert {r["product_id"] for r in rows} == {1}


def test_kpi_branch_month_has_the_contract_columns_first(star_world):
    cols = star_world.q("""SELECT column_name FROM information_schema.columns
                           WHERE table_schema = 'analytics_build' AND table_name = 'kpi_branch_month'
                           ORDER BY ordinal_position""")
    assert [c["column_name"] for c in cols][:len(CONTRACT_COLUMNS)] == CONTRACT_COLUMNS


def test_kpi_branch_month_values(star_world):
    rows = star_world.q("SELECT * FROM analytics_build.kpi_branch_month ORDER BY branch_id, period_end")
    assert {(r["branch_id"], r["period_end"].isoformat()) for r in rows} == set(BRANCH)
    names = {3: "Branch A", 4: "Branch B"}
    for r in rows:
        exp = BRANCH[(r["branch_id"], r["period_end"].isoformat())]
        where = f"branch {r['branch_id']} {r['period_end']}"
        assert r["branch_name"] == names[r["branch_id"]], where
        assert (r["active_clients"], r["new_clients"], r["exited_clients"]) == exp[:3], where
        assert close(r["retention_rate"], exp[3]), (where, r["retention_rate"])
        assert r["retention_rate_12m"] is None, f"{where}: six periods, fewer than twelve earlier ones"
        assert (r["active_borrowers"], r["women_borrowers"]) == exp[4:6], where
        assert r["gross_loan_portfolio"] == exp[6] and r["par30_principal"] == exp[7], where
        assert close(r["par30_ratio"], exp[8]), (where, r["par30_ratio"])
        assert r["ppi_assessed_clients"] == exp[9], where
        assert close(r["avg_poverty_likelihood"], exp[10]), (where, r["avg_poverty_likelihood"])


def test_latest_survey_choice(star_world):
    """Client 1 has S2, S3, S4 on 2024-05-15: S3/S4 submitted later than S2, S4 has the higher _id."""
    assert len({L["S2"], L["S3"], L["S4"], L["S1"], L["S5"]}) == 5  # the choice is visible in the value
    row = star_world.one("""SELECT avg_poverty_likelihood FROM analytics_build.kpi_branch_month
                            WHERE branch_id = 3 AND period_end = '2024-06-30'""")
    assert row["avg_poverty_likelihood"] == L["S4"]


def test_reversed_transaction_does_not_exist(star_world):
    assert star_world.q("SELECT 1 FROM analytics_build.fct_loan_transaction WHERE transaction_id = 4003") == []
    repaid = star_world.one("""SELECT sum(principal_portion) AS p FROM analytics_build.fct_loan_transaction
                               WHERE loan_id = 4 AND transaction_type = 'repayment'""")
    assert repaid["p"] == 850  # 250 + 100 + 250 + 250, not the reversed 250


def test_write_off_removes_the_loan_and_counts_once(star_world):
    assert star_world.q("""SELECT 1 FROM analytics_build.fct_portfolio_month
                           WHERE loan_id = 3 AND period_end = '2024-06-30'""") == []
    wo = star_world.q("""SELECT branch_id, period_end, write_off_amount, loans_written_off
                         FROM analytics_build.kpi_branch_month WHERE write_off_amount <> 0""")
    assert [(r["branch_id"], r["period_end"], r["write_off_amount"], r["loans_written_off"]) for r in wo] == [
        (4, D("2024-06-30"), 900, 1)]


def test_night_one_before_the_changes(star_world):
    """What night 1 (as_of 2024-04-30) published, kept in schema night1."""
    l4 = star_world.q("""SELECT period_end, branch_id, loan_officer_id, outstanding_principal, days_in_arrears
                         FROM night1.fct_portfolio_month WHERE loan_id = 4 ORDER BY period_end""")
    # client 4 still in Branch A with officer 101; 250 repaid on 03-10 and (not yet reversed) on 04-10
    assert [(r["period_end"], r["branch_id"], r["loan_officer_id"], r["outstanding_principal"], r["days_in_arrears"])
            for r in l4] == [(D("2024-02-29"), 3, 101, 1000, 0), (D("2024-03-31"), 3, 101, 750, 0),
                             (D("2024-04-30"), 3, 101, 500, 0)]
    a = star_world.one("""SELECT active_clients, new_clients, exited_clients, retention_rate
                          FROM night1.kpi_branch_month WHERE branch_id = 3 AND period_end = '2024-04-30'""")
    # clients 1, 2 (closed 04-20) and 4 at Branch A: 3 active at the end of March, 2 at the end of April
    assert (a["active_clients"], a["new_clients"], a["exited_clients"]) == (2, 0, 1)
    assert close(a["retention_rate"], Decimal(2) / Decimal(3))
    last = star_world.one("SELECT max(period_end) AS m FROM night1.kpi_branch_month")
    assert last["m"] == D("2024-04-30")
