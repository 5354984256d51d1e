"""Incremental balance snapshots: backdated changes, reruns, full refresh and backfill.

Night 2 of the hand-made world (fixtures/star_world.py) brings a
repayment backdated into March, a reversal and its correction in April, a
write-off and new activity. The nightly run must recompute exactly the
affected months of the affected loans, give what a full rebuild gives, give
the same tables when rerun, and a backfill must use only what was known on
its date without disturbing the state of the nightly runs.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import psycopg
import pytest
from databases import drop_database
from star_world import (
    MARTS,
    NIGHT1,
    NIGHT2,
    clone_world,
    dbt,
    fingerprint,
    query,
    txn,
    upsert_raw,
)

from spm_warehouse.sources.fineract_tables import TABLES

pytestmark = pytest.mark.usefixtures("star_world")

D = date.fromisoformat
SNAPSHOT_COLUMNS = ("loan_id, period_month, period_end, in_life, first_disbursed_on, written_off_on, "
                    "principal_disbursed_to_date, principal_repaid_to_date, outstanding_principal, days_in_arrears, "
                    "first_unpaid_due_date, schedule_basis_hash")


def snapshots(url: str) -> list[tuple]:
    rows = query(url, f"SELECT {SNAPSHOT_COLUMNS} FROM intermediate.int_loan__balance_month ORDER BY loan_id, period_month")
    return [tuple(r.values()) for r in rows]


@pytest.fixture
def clone(star_world, tmp_path):
    name, url = clone_world(star_world, "star_clone")
    yield url, tmp_path
    drop_database(star_world.server_url, name)


def test_night_two_recomputed_only_the_affected_months(star_world):
    rows = star_world.q("""SELECT loan_id, period_month, _as_of_date FROM intermediate.int_loan__balance_month
                           ORDER BY loan_id, period_month""")
    written_by = {(r["loan_id"], r["period_month"].isoformat()): r["_as_of_date"] for r in rows}
    expected = {
        # L1: alive at night 1, so from night 1's month (April) on; Jan-Mar untouched
        (1, "2024-01-01"): NIGHT1, (1, "2024-02-01"): NIGHT1, (1, "2024-03-01"): NIGHT1,
        (1, "2024-04-01"): NIGHT2, (1, "2024-05-01"): NIGHT2, (1, "2024-06-01"): NIGHT2,
        # L2: repaid in April, nothing changed since: never recomputed
        (2, "2024-01-01"): NIGHT1, (2, "2024-02-01"): NIGHT1, (2, "2024-03-01"): NIGHT1, (2, "2024-04-01"): NIGHT1,
        # L3: April on (alive at night 1), its life ends with the June write-off
        (3, "2024-03-01"): NIGHT1, (3, "2024-04-01"): NIGHT2, (3, "2024-05-01"): NIGHT2, (3, "2024-06-01"): NIGHT2,
        # L4: the backdated repayment (03-25) reopens March; February stays
        (4, "2024-02-01"): NIGHT1, (4, "2024-03-01"): NIGHT2, (4, "2024-04-01"): NIGHT2, (4, "2024-05-01"): NIGHT2,
        (4, "2024-06-01"): NIGHT2,
        # L5: new
        (5, "2024-05-01"): NIGHT2, (5, "2024-06-01"): NIGHT2,
    }
    assert written_by == expected
    march = star_world.one("""SELECT outstanding_principal FROM intermediate.int_loan__balance_month
                              WHERE loan_id = 4 AND period_month = '2024-03-01'""")
    night1 = star_world.one("""SELECT outstanding_principal FROM night1.int_loan__balance_month
                               WHERE loan_id = 4 AND period_month = '2024-03-01'""")
    assert (night1["outstanding_principal"], march["outstanding_principal"]) == (750, 650)


def test_incremental_equals_full_refresh(star_world, clone):
    url, tmp = clone
    before_marts = fingerprint(star_world.url, "analytics_build")
    before_snapshots = snapshots(star_world.url)
    dbt(url, NIGHT2, tmp, ["build", "--full-refresh"])
    assert snapshots(url) == before_snapshots
    after = fingerprint(url, "analytics_build")
    assert after == before_marts, [name for name in MARTS if after[name] != before_marts[name]]
    # the observed client history survives --full-refresh (it cannot be re-read from the source)
    assert query(url, "SELECT count(*) AS n FROM analytics_build.dim_client WHERE client_id = 2")[0]["n"] == 4


def test_rerun_and_backfill(star_world, clone):
    url, tmp = clone
    before = fingerprint(star_world.url, "analytics_build")
    # a rerun of night 2 changes nothing
    dbt(url, NIGHT2, tmp, ["run"])
    assert fingerprint(url, "analytics_build") == before

    # a backfill of night 1 sees only what had been entered by its end...
    dbt(url, NIGHT1, tmp, ["run"])
    l4 = query(url, """SELECT period_end, branch_id, outstanding_principal, days_in_arrears
                       FROM analytics_build.fct_portfolio_month WHERE loan_id = 4 ORDER BY period_end""")
    # the March repayment entered on 05-20 and the April correction entered on 05-02 are not known;
    # the reversal is (reversed transactions never exist), and attribution is today's (Branch B)
    assert [(r["period_end"], r["branch_id"], r["outstanding_principal"], r["days_in_arrears"]) for r in l4] == [
        (D("2024-02-29"), 4, 1000, 0), (D("2024-03-31"), 4, 750, 0), (D("2024-04-30"), 4, 750, 20)]
    assert query(url, "SELECT max(period_end) AS m FROM analytics_build.kpi_branch_month")[0]["m"] == NIGHT1
    assert query(url, "SELECT count(*) AS n FROM analytics_build.fct_loan WHERE loan_id = 5")[0]["n"] == 0
    # ... and leaves the nightly state alone
    state = query(url, "SELECT max(_as_of_date) AS m FROM intermediate.int_loan__balance_month")[0]["m"]
    assert state == NIGHT2
    assert snapshots(url) == snapshots(star_world.url)

    # the next night is the same as if the backfill had never run
    dbt(url, NIGHT2, tmp, ["run"])
    assert fingerprint(url, "analytics_build") == before



def test_a_quiet_night_rewrites_only_the_changed_loan_and_the_moving_month(star_world, clone):
    """Night 3 brings one repayment of loan 1: the facts rewrite loan 1 and the rows from June (night 2's month) on."""
    url, tmp = clone
    night3 = D("2024-07-02")
    with psycopg.connect(url) as conn:
        upsert_raw(conn, {"m_loan_transaction": [txn(9001, 1, 2, "2024-07-01", 50)]},
                   datetime(2024, 7, 3, 2, 0, tzinfo=timezone.utc))
    dbt(url, night3, tmp, ["run"])
    june = D("2024-06-01")
    for table, date_column in (("fct_loan_transaction", "transaction_date"), ("fct_portfolio_month", "period_month")):
        rows = query(url, f"SELECT loan_id, {date_column} AS d, _as_of_date FROM analytics_build.{table}")
        got = {(r["loan_id"], r["d"]): r["_as_of_date"] for r in rows}
        expected = {key: night3 if (key[0] == 1 or key[1] >= june) else NIGHT2 for key in got}
        assert got == expected, table
        assert NIGHT2 in got.values() and night3 in got.values(), table
    assert query(url, "SELECT count(*) AS n FROM analytics_build.fct_loan_transaction WHERE transaction_id = 9001"
                 )[0]["n"] == 1
    nightly = fingerprint(url, "analytics_build")
    dbt(url, night3, tmp, ["run", "--full-refresh"])
    after = fingerprint(url, "analytics_build")
    assert after == nightly, [name for name in MARTS if after[name] != nightly[name]]


def test_a_source_without_the_optional_tables_still_builds_every_mart(star_world, clone):
    """A partial replica: the extraction leaves the optional raw tables empty, and the marts still build.

    Officers and groups then come from m_loan alone; the portfolio itself does not change.
    """
    url, tmp = clone
    optional = [t.name for t in TABLES if not t.required]
    assert len(optional) == 11, optional  # 5 of the core, 6 of the survey module
    with psycopg.connect(url) as conn:
        for table in optional:
            conn.execute(f"TRUNCATE raw_mis.{table}")
    dbt(url, NIGHT2, tmp, ["build", "--full-refresh"])  # asserts that every model and test passed
    totals = ("SELECT period_end, sum(outstanding_principal) AS outstanding, count(*) AS n "
              "FROM analytics_build.fct_portfolio_month GROUP BY period_end ORDER BY period_end")
    assert query(url, totals) == query(star_world.url, totals)
    assert query(url, "SELECT count(*) AS n FROM analytics_build.kpi_branch_month")[0]["n"] > 0
