"""The marts behind the managers' dashboards, on the real demo build (issue 16).

kpi_alerts against its targets recomputed here from kpi_branch_month / kpi_loan_officer_month, the
demo's seeded PAR30 breach at the latest period, the at-risk loans against fct_loan and the KPI
contract's PAR30, their real account numbers only in the restricted schema, every MIS exit in the exit
reasons mart, small samples in kpi_client_outcomes, and the night's new alerts sent once to a local
webhook over real HTTP.
"""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from psycopg.rows import dict_row
from webhook_server import webhook_server

from spm_warehouse import kpi_alerts
from spm_warehouse.kpi_alerts import Targets

pytestmark = pytest.mark.e2e

PAR30_TARGET = Decimal("0.05")  # seeds/kpi_targets.csv, both scopes


def _ok(demo):
    assert demo.returncode == 0, "spm_nightly failed:\n" + demo.log[-6000:]


def rows(url: str, query: str, params: tuple = ()) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


def expected_par30_breaches(series: list[dict], key: tuple[str, ...]) -> dict[tuple, int]:
    """(key..., period_end) -> periods_in_breach, from the monthly series, the way a person would count."""
    out: dict[tuple, int] = {}
    run: dict[tuple, int] = {}
    for r in sorted(series, key=lambda r: r["period_end"]):
        k = tuple(r[c] for c in key)
        if r["par30_ratio"] is not None and r["par30_ratio"] > PAR30_TARGET:
            run[k] = run.get(k, 0) + 1
            out[k + (r["period_end"],)] = run[k]
        else:
            run[k] = 0
    return out


def test_par30_alerts_are_the_breaches_of_the_kpi_series_counted_by_hand(demo_warehouse):
    _ok(demo_warehouse)
    url = demo_warehouse.warehouse_url
    branch = expected_par30_breaches(
        rows(url, "SELECT branch_id, period_end, par30_ratio FROM analytics.kpi_branch_month"), ("branch_id",))
    officer = expected_par30_breaches(
        rows(url, """SELECT branch_id, loan_officer_id, period_end, par30_ratio FROM analytics.kpi_loan_officer_month
                     WHERE loan_officer_id <> -1"""), ("branch_id", "loan_officer_id"))
    alerts = rows(url, """SELECT scope, branch_id, loan_officer_id, period_end, periods_in_breach, is_new, value,
                                 first_breach_period_end
                          FROM analytics.kpi_alerts WHERE indicator = 'par30_ratio' AND alert_kind = 'threshold'""")
    got_branch = {(a["branch_id"], a["period_end"]): a["periods_in_breach"] for a in alerts if a["scope"] == "branch"}
    got_officer = {(a["branch_id"], a["loan_officer_id"], a["period_end"]): a["periods_in_breach"]
                   for a in alerts if a["scope"] == "loan_officer"}
    assert got_branch and got_branch == branch
    assert got_officer == officer
    assert all(a["is_new"] == (a["periods_in_breach"] == 1) for a in alerts)
    assert all(a["value"] > PAR30_TARGET for a in alerts)


def test_the_demo_has_its_seeded_par30_breach_new_at_the_latest_period(demo_warehouse):
    """tools/demo/fineract.py seed_par_breach: the branch with the highest office id, never-repaid loans."""
    _ok(demo_warehouse)
    url = demo_warehouse.warehouse_url
    stressed = rows(url, """SELECT max(id) AS id FROM raw_mis.m_office o
                            WHERE parent_id IS NOT NULL
                              AND NOT EXISTS (SELECT 1 FROM raw_mis.m_office c WHERE c.parent_id = o.id)""")[0]["id"]
    latest = rows(url, """SELECT scope, loan_officer_id, value, threshold, periods_in_breach, is_new, branch_name, region_name
                          FROM analytics.kpi_alerts
                          WHERE is_latest_period AND branch_id = %s AND indicator = 'par30_ratio'
                            AND alert_kind = 'threshold'""", (stressed,))
    kpi = rows(url, """SELECT round(par30_ratio, 6) AS par30 FROM analytics.kpi_branch_month
                       WHERE is_latest_period AND branch_id = %s""", (stressed,))[0]
    branch_rows = [a for a in latest if a["scope"] == "branch"]
    assert len(branch_rows) == 1, latest
    alert = branch_rows[0]
    assert alert["value"] == kpi["par30"] > alert["threshold"] == PAR30_TARGET
    assert alert["is_new"] and alert["periods_in_breach"] == 1
    assert alert["branch_name"] and alert["region_name"]


def test_at_risk_loans_are_fct_loans_in_arrears_and_add_up_to_the_contracts_par30(demo_warehouse):
    _ok(demo_warehouse)
    url = demo_warehouse.warehouse_url
    at_risk = rows(url, "SELECT * FROM analytics.kpi_at_risk_loans")
    in_arrears = {r["loan_id"] for r in rows(
        url, "SELECT loan_id FROM analytics.fct_loan WHERE days_in_arrears > 0 AND outstanding_principal > 0")}
    assert at_risk and {r["loan_id"] for r in at_risk} == in_arrears
    for r in at_risk:
        days = r["days_in_arrears"]
        assert r["par_bucket"] == ("90+" if days > 90 else "31-90" if days > 30 else "1-30")
        assert r["branch_name"] and r["product_name"] and r["loan_officer_name"] and r["par_bucket_label"]
        assert r["loan_account_no"].startswith("P")
        assert r["client_account_no"] is None or r["client_account_no"].startswith("P")
    par30 = {r["branch_id"]: r["par30_principal"] for r in rows(
        url, "SELECT branch_id, par30_principal FROM analytics.kpi_branch_month WHERE is_latest_period")}
    summed: dict[int, Decimal] = {}
    for r in at_risk:
        if r["days_in_arrears"] > 30:
            summed[r["branch_id"]] = summed.get(r["branch_id"], Decimal(0)) + r["outstanding_principal"]
    assert summed == {b: p for b, p in par30.items() if p}


def test_real_account_numbers_of_at_risk_loans_are_only_in_the_restricted_schema(demo_warehouse):
    _ok(demo_warehouse)
    url = demo_warehouse.warehouse_url
    restricted = rows(url, """SELECT r.*, m.account_no AS raw_loan_no, c.account_no AS raw_client_no,
                                     a.loan_account_no AS published_loan_no, a.client_account_no AS published_client_no
                              FROM analytics_restricted.at_risk_loans r
                              JOIN raw_mis.m_loan m ON m.id = r.loan_id
                              JOIN raw_mis.m_client c ON c.id = r.client_id
                              JOIN analytics.kpi_at_risk_loans a ON a.loan_id = r.loan_id""")
    published = rows(url, "SELECT count(*) AS n FROM analytics.kpi_at_risk_loans")[0]["n"]
    assert len(restricted) == published > 0
    for r in restricted:
        assert r["loan_account_no"] == r["raw_loan_no"] and r["client_account_no"] == r["raw_client_no"]
        assert r["loan_account_no_pseudonym"] == r["published_loan_no"] != r["raw_loan_no"]
        assert r["client_account_no_pseudonym"] == r["published_client_no"] != r["raw_client_no"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET ROLE bi_reader")
        assert conn.execute("SELECT count(*) FROM analytics.kpi_at_risk_loans").fetchone()[0] == published
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT loan_account_no FROM analytics_restricted.at_risk_loans")


def test_every_mis_exit_is_in_the_exit_reasons_mart(demo_warehouse):
    _ok(demo_warehouse)
    url = demo_warehouse.warehouse_url
    kpi = {(r["branch_id"], r["period_end"]): r["exited_clients"] for r in rows(
        url, "SELECT branch_id, period_end, exited_clients FROM analytics.kpi_branch_month WHERE exited_clients > 0")}
    reasons = rows(url, "SELECT * FROM analytics.kpi_exit_reasons_branch_month")
    mis: dict[tuple, int] = {}
    for r in reasons:
        mis[(r["branch_id"], r["period_end"])] = mis.get((r["branch_id"], r["period_end"]), 0) + r["mis_exits"]
        assert r["exit_reason_label"]
    assert kpi and {k: v for k, v in mis.items() if v} == kpi
    not_recorded = [r for r in reasons if r["exit_reason"] == "not_recorded"]
    assert not_recorded and all(r["exit_interviews"] == 0 and r["exited_clients"] == r["mis_exits"] for r in not_recorded)
    # the exit interviews are all still there, beside the exits without one
    interviews = rows(url, """SELECT count(DISTINCT (client_id, date_trunc('month', interview_date))) AS n
                              FROM analytics.fct_client_indicator WHERE indicator_code = 'exit_reason'""")[0]["n"]
    assert sum(r["exit_interviews"] for r in reasons) == interviews


def test_client_outcomes_hide_the_means_of_small_samples_and_name_units(demo_warehouse):
    _ok(demo_warehouse)
    outcomes = rows(demo_warehouse.warehouse_url, "SELECT * FROM analytics.kpi_client_outcomes")
    small = [r for r in outcomes if r["clients"] < 10]
    large = [r for r in outcomes if r["clients"] >= 10]
    assert small and all(r["is_small_sample"] for r in small)
    assert all(r["mean_change"] is None and r["mean_baseline_value"] is None and r["share_improved"] is None
               for r in small)
    assert all(r["change_sum"] is not None for r in small)  # n and sums stay for roll-ups
    for r in large:
        assert not r["is_small_sample"]
        scale = 100 if r["change_unit"] == "pp" else 1
        assert abs(r["mean_change"] - r["change_sum"] / r["clients"] * scale) < Decimal("0.00001")
    units = {r["indicator_code"]: r["change_unit"] for r in outcomes}
    assert units == {"poverty_likelihood": "pp", "school_enrolment_rate": "pp", "monthly_hh_income": "currency"}
    assert {r["poverty_line"] for r in outcomes if r["indicator_code"] == "poverty_likelihood"} == {"national"}
    assert {r["poverty_line"] for r in outcomes if r["indicator_code"] != "poverty_likelihood"} == {None}
    assert all(r["gender_label"] and r["area_label"] and r["poverty_band_at_entry_label"] for r in outcomes)


def test_the_nights_new_alerts_go_once_to_the_webhook(demo_warehouse):
    """The DAG's kpi_alerts task ran (no target configured in the fixture: logged only); sent by hand
    here to a local webhook, inside a transaction that is rolled back (the shared build stays as it was)."""
    _ok(demo_warehouse)
    assert "KPI alerts: " in demo_warehouse.log
    url = demo_warehouse.warehouse_url
    with psycopg.connect(url) as conn, webhook_server() as hook:
        run_id, as_of = conn.execute("SELECT run_id, as_of_date FROM analytics.publication_info").fetchone()
        new = conn.execute("""SELECT count(*) FROM analytics.kpi_alerts WHERE is_latest_period AND is_new""").fetchone()[0]
        first = kpi_alerts.notify_new_alerts(conn, run_id, as_of, Targets(hook.url, []))
        again = kpi_alerts.notify_new_alerts(conn, run_id, as_of, Targets(hook.url, []))
        conn.rollback()
    assert new >= 1 and first["sent"] == new and again["sent"] == 0
    assert len(hook.received) == 1
    text = hook.received[0]["json"]["text"]
    assert text.splitlines()[0] == f"[spm-warehouse] {new} new KPI alert{'s' if new != 1 else ''} (as of {as_of})"
    assert sum(1 for line in text.splitlines() if line.startswith("- ")) == new
    assert "vs threshold 5.0% (above)" in text
