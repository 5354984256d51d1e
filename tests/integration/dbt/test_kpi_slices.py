"""The KPI slices (loan officer, product, client segment) on the hand-made world.

Same definitions as kpi_branch_month: the numbers here are the branch
numbers of test_kpi_contract.py split by hand by officer, product and segment.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from star_world import SURVEY_LEVELS, band_of, likelihood_of

pytestmark = pytest.mark.usefixtures("star_world")

JUNE = date(2024, 6, 30)
L = {name: likelihood_of(level) for name, level in SURVEY_LEVELS.items()}


def rounded(value: Decimal | None) -> Decimal | None:
    return None if value is None else round(value, 12)


def test_loan_officer_month_june(star_world):
    rows = star_world.q("""SELECT branch_id, loan_officer_id, loan_officer_name, active_clients, active_borrowers,
                                  gross_loan_portfolio, par30_principal, write_off_amount, is_latest_period
                           FROM analytics_build.kpi_loan_officer_month WHERE period_end = %s
                           ORDER BY branch_id, loan_officer_id""", (JUNE,))
    got = [(r["branch_id"], r["loan_officer_id"], r["loan_officer_name"], r["active_clients"], r["active_borrowers"],
            r["gross_loan_portfolio"], r["par30_principal"], r["write_off_amount"]) for r in rows]
    assert got == [
        # Branch A: officer 101 serves clients 1, 2 (5 is pending) and loan L1; L5 has no officer
        (3, -1, "No loan officer", 0, 1, Decimal(250), 0, 0),
        (3, 101, "Officer Amina", 2, 1, Decimal(600), Decimal(600), 0),
        # Branch B: officer 102 serves clients 3, 4 (6 closed), loans L3 (written off in June) and L4
        (4, 102, "Officer Baraka", 2, 1, Decimal(150), 0, Decimal(900)),
    ]
    assert all(r["is_latest_period"] for r in rows)


def test_product_month_counts_clients_by_entry_product(star_world):
    """Loans count for their product; clients (and their PPI) for the product of their first disbursed loan."""
    rows = star_world.q("""SELECT branch_id, product_id, product_name, active_clients, active_borrowers,
                                  gross_loan_portfolio, ppi_assessed_clients, avg_poverty_likelihood
                           FROM analytics_build.kpi_product_month WHERE period_end = %s
                           ORDER BY branch_id, product_id""", (JUNE,))
    got = [(r["branch_id"], r["product_id"], r["product_name"], r["active_clients"], r["active_borrowers"],
            r["gross_loan_portfolio"], r["ppi_assessed_clients"], rounded(r["avg_poverty_likelihood"])) for r in rows]
    assert got == [
        # client 5 (pending) never borrowed: 'No loan', nothing active
        (3, -1, "No loan", 0, 0, 0, 0, None),
        # clients 1 and 2 entered with L1 / L2 (product 1) and are active; only client 1 is surveyed (S4)
        (3, 1, "Monthly loan", 2, 2, Decimal(850), 1, rounded(L["S4"])),
        # client 6 (closed 03-15) never borrowed
        (4, -1, "No loan", 0, 0, 0, 0, None),
        # clients 3 and 4 entered with L3 / L4: both active clients with a survey (client 3's loan was
        # written off, so only client 4 is still a borrower)
        (4, 1, "Monthly loan", 2, 1, Decimal(150), 2, rounded((L["C3"] + L["C4"]) / 2)),
    ]


def test_segment_month(star_world):
    s1, c3, c4 = band_of(L["S1"]), band_of(L["C3"]), band_of(L["C4"])
    rows = star_world.q("""SELECT branch_id, segment_key, gender, area, poverty_band_at_entry, period_end,
                                  active_clients, new_clients, exited_clients, active_borrowers, women_borrowers,
                                  gross_loan_portfolio, par30_principal
                           FROM analytics_build.kpi_segment_month
                           WHERE period_end IN ('2024-03-31', '2024-06-30') ORDER BY period_end, branch_id, segment_key""")
    got = [(r["period_end"].isoformat(), r["branch_id"], r["segment_key"], r["active_clients"], r["new_clients"],
            r["exited_clients"], r["active_borrowers"], r["women_borrowers"], r["gross_loan_portfolio"],
            r["par30_principal"]) for r in rows]
    assert got == sorted([
        ("2024-03-31", 3, f"female|rural|{s1}", 1, 0, 0, 1, 1, 800, 0),          # client 1, L1
        ("2024-03-31", 3, "male|urban|unknown", 0, 0, 0, 1, 0, 200, 0),         # client 2 (active again in May), L2
        ("2024-03-31", 3, "unknown|unknown|unknown", 0, 0, 0, 0, 0, 0, 0),      # client 5, pending
        ("2024-03-31", 4, "female|rural|unknown", 0, 0, 1, 0, 0, 0, 0),         # client 6 closed 03-15
        ("2024-03-31", 4, f"female|urban|{c3}", 1, 0, 0, 1, 1, 900, 0),          # client 3, L3
        ("2024-03-31", 4, f"male|rural|{c4}", 1, 0, 0, 1, 0, 650, 0),            # client 4, L4
        ("2024-06-30", 3, f"female|rural|{s1}", 1, 0, 0, 1, 1, 600, 600),
        ("2024-06-30", 3, "male|urban|unknown", 1, 0, 0, 1, 0, 250, 0),
        ("2024-06-30", 3, "unknown|unknown|unknown", 0, 0, 0, 0, 0, 0, 0),
        ("2024-06-30", 4, "female|rural|unknown", 0, 0, 0, 0, 0, 0, 0),
        ("2024-06-30", 4, f"female|urban|{c3}", 1, 0, 0, 0, 0, 0, 0),
        ("2024-06-30", 4, f"male|rural|{c4}", 1, 0, 0, 1, 0, 150, 0),
    ], key=lambda t: (t[0], t[1], t[2]))


def test_retention_alternatives(star_world):
    """IRIS PI9319 and the follow-on drop-out rate next to the contract's retention."""
    march_b = star_world.one("""SELECT retention_rate_contract, retention_rate_iris, active_clients_previous
                                FROM analytics_build.kpi_branch_month WHERE branch_id = 4 AND period_end = '2024-03-31'""")
    # 3 active at the end of February, client 6 (active since January) left: 2 of 3 retained
    assert march_b["active_clients_previous"] == 3
    assert abs(march_b["retention_rate_iris"] - Decimal(2) / Decimal(3)) < Decimal("1e-12")
    april_a = star_world.one("""SELECT repaid_loans_decided, dropouts, retention_rate_followon
                                FROM analytics_build.kpi_branch_month WHERE branch_id = 3 AND period_end = '2024-04-30'""")
    # L2 repaid on 04-15, client 2 borrowed again (L5) on 05-15, within 90 days
    assert (april_a["repaid_loans_decided"], april_a["dropouts"], april_a["retention_rate_followon"]) == (1, 0, 1)
    night1 = star_world.one("""SELECT repaid_loans_decided, retention_rate_followon FROM night1.kpi_branch_month
                               WHERE branch_id = 3 AND period_end = '2024-04-30'""")
    # on 04-30 the 90 days had not passed and no follow-on loan existed yet: undecided
    assert (night1["repaid_loans_decided"], night1["retention_rate_followon"]) == (0, None)
