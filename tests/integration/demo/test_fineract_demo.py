"""The demo Fineract generator: Fineract's schema, every status, consistent balances, reproducible."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
import pytest
from databases import create_database, drop_database

from tools.demo import fineract as demo
from tools.demo import fineract_schema as schema

AS_OF = dt.date(2024, 6, 30)
CLIENTS = 800
SEED = 11

# derived columns of m_loan against the non-reversed transactions; 0 rows = consistent
DERIVED_MISMATCHES = """
WITH t AS (
    SELECT loan_id,
           sum(amount) FILTER (WHERE transaction_type_enum = 1) AS disbursed,
           sum(coalesce(principal_portion_derived, 0)) FILTER (WHERE transaction_type_enum IN (2, 5)) AS p_repaid,
           sum(coalesce(interest_portion_derived, 0)) FILTER (WHERE transaction_type_enum IN (2, 5)) AS i_repaid,
           sum(coalesce(principal_portion_derived, 0)) FILTER (WHERE transaction_type_enum = 6) AS p_wo,
           sum(coalesce(interest_portion_derived, 0)) FILTER (WHERE transaction_type_enum = 6) AS i_wo
    FROM m_loan_transaction WHERE NOT is_reversed GROUP BY loan_id
), s AS (
    SELECT loan_id, sum(interest_amount) AS interest, sum(principal_amount) AS principal,
           sum(coalesce(principal_completed_derived, 0)) AS p_done,
           sum(coalesce(interest_completed_derived, 0)) AS i_done
    FROM m_loan_repayment_schedule GROUP BY loan_id
)
SELECT l.id FROM m_loan l LEFT JOIN t ON t.loan_id = l.id LEFT JOIN s ON s.loan_id = l.id
WHERE l.principal_disbursed_derived <> coalesce(t.disbursed, 0)
   OR l.principal_repaid_derived <> coalesce(t.p_repaid, 0)
   OR l.interest_repaid_derived <> coalesce(t.i_repaid, 0)
   OR l.principal_writtenoff_derived <> coalesce(t.p_wo, 0)
   OR l.principal_outstanding_derived <> l.principal_disbursed_derived - l.principal_repaid_derived
                                         - l.principal_writtenoff_derived
   OR l.interest_outstanding_derived <> l.interest_charged_derived - l.interest_repaid_derived - coalesce(t.i_wo, 0)
   OR l.total_outstanding_derived <> l.principal_outstanding_derived + l.interest_outstanding_derived
   OR s.principal <> l.principal_amount
   OR s.p_done <> l.principal_repaid_derived
   OR s.i_done <> l.interest_repaid_derived
   OR (l.disbursedon_date IS NOT NULL AND s.interest <> l.interest_charged_derived)
   OR (l.loan_status_id = 600) <> (l.principal_disbursed_derived > 0 AND l.total_outstanding_derived = 0
                                   AND l.principal_writtenoff_derived = 0)
"""

# event dates and audit stamps that cannot be in the future (due dates and expected dates can)
AFTER_AS_OF = """
SELECT 'm_client', count(*) FROM m_client WHERE greatest(submittedon_date, activation_date, closedon_date,
    rejectedon_date, withdrawn_on_date, reactivated_on_date, office_joining_date) > %(d)s
    OR created_on_utc >= %(next)s OR last_modified_on_utc >= %(next)s
UNION ALL SELECT 'm_loan', count(*) FROM m_loan WHERE greatest(submittedon_date, approvedon_date, disbursedon_date,
    closedon_date, rejectedon_date, withdrawnon_date, writtenoffon_date) > %(d)s
    OR created_on_utc >= %(next)s OR last_modified_on_utc >= %(next)s
UNION ALL SELECT 'm_loan_transaction', count(*) FROM m_loan_transaction WHERE greatest(transaction_date,
    submitted_on_date, reversed_on_date) > %(d)s OR created_on_utc >= %(next)s OR last_modified_on_utc >= %(next)s
UNION ALL SELECT 'm_loan_repayment_schedule', count(*) FROM m_loan_repayment_schedule
    WHERE obligations_met_on_date > %(d)s OR last_modified_on_utc >= %(next)s
UNION ALL SELECT 'm_savings_account', count(*) FROM m_savings_account
    WHERE greatest(activatedon_date, closedon_date) > %(d)s OR last_modified_on_utc >= %(next)s
"""


@pytest.fixture(scope="module")
def demo_url(pg_server_url):
    name = f"spm_test_demo_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_server_url, name)
    with psycopg.connect(url) as conn:
        counts = demo.build_demo_mis(conn, clients=CLIENTS, seed=SEED, as_of=AS_OF)
    assert counts["m_client"] == CLIENTS
    yield url
    drop_database(pg_server_url, name)


def _scalar(url: str, sql: str, params=None):
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchone()[0]


def _all(url: str, sql: str, params=None) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def test_tables_have_fineract_names_and_keys(demo_url):
    rows = _all(demo_url, "SELECT table_name, column_name FROM information_schema.columns "
                          "WHERE table_schema = 'public'")
    found: dict[str, set[str]] = {}
    for table, column in rows:
        found.setdefault(table, set()).add(column)
    for table in ("m_office", "m_staff", "m_code", "m_code_value", "m_client", "m_product_loan", "m_loan",
                  "m_loan_repayment_schedule", "m_loan_transaction", "m_loan_officer_assignment_history",
                  "m_group", "m_group_client", "m_savings_product", "m_savings_account"):
        assert table in found, table
        assert set(schema.column_names(table)) == found[table]
    pkeys = _all(demo_url, "SELECT tc.table_name FROM information_schema.table_constraints tc "
                           "WHERE tc.table_schema = 'public' AND tc.constraint_type = 'PRIMARY KEY'")
    assert {r[0] for r in pkeys} == set(schema.COLUMNS)


def test_derived_fields_equal_sums_of_non_reversed_transactions(demo_url):
    assert _all(demo_url, DERIVED_MISMATCHES) == []


def test_every_status_and_event_is_present(demo_url):
    client_status = {r[0] for r in _all(demo_url, "SELECT DISTINCT status_enum FROM m_client")}
    assert client_status == {100, 300, 600, 700, 800}
    loan_status = {r[0] for r in _all(demo_url, "SELECT DISTINCT loan_status_id FROM m_loan")}
    assert {100, 200, 300, 400, 500, 600, 601} <= loan_status
    tx = {(r[0], r[1]) for r in _all(demo_url, "SELECT DISTINCT transaction_type_enum, is_reversed "
                                               "FROM m_loan_transaction")}
    assert {(1, False), (2, False), (2, True), (5, False), (6, False)} <= tx
    checks = {
        "reversed repayments carry reversed_on_date and are followed by a correcting repayment": """
            SELECT count(*) FROM m_loan_transaction r WHERE r.is_reversed AND r.reversed_on_date IS NOT NULL
              AND EXISTS (SELECT 1 FROM m_loan_transaction c WHERE c.loan_id = r.loan_id AND NOT c.is_reversed
                          AND c.transaction_type_enum = 2 AND c.transaction_date = r.transaction_date
                          AND c.id > r.id)""",
        "written-off loans have writtenoffon_date": """
            SELECT count(*) FROM m_loan WHERE loan_status_id = 601 AND writtenoffon_date IS NOT NULL
              AND principal_writtenoff_derived > 0 AND total_outstanding_derived = 0""",
        "loans without a loan officer": "SELECT count(*) FROM m_loan WHERE loan_officer_id IS NULL",
        "several loan cycles": "SELECT count(*) FROM m_loan WHERE loan_counter >= 3",
        "weekly products": "SELECT count(*) FROM m_loan WHERE repayment_period_frequency_enum = 1",
        "monthly products": "SELECT count(*) FROM m_loan WHERE repayment_period_frequency_enum = 2",
        "reactivated clients": "SELECT count(*) FROM m_client WHERE reactivated_on_date IS NOT NULL "
                               "AND status_enum = 300 AND activation_date >= reactivated_on_date",
        "transferred clients": "SELECT count(*) FROM m_client WHERE office_joining_date > activation_date",
        "back-dated entries": "SELECT count(*) FROM m_loan_transaction WHERE submitted_on_date > transaction_date",
        "clients without gender": "SELECT count(*) FROM m_client WHERE gender_cv_id IS NULL",
        "officer reassignments": "SELECT count(*) FROM m_loan_officer_assignment_history WHERE end_date IS NOT NULL",
        "group members": "SELECT count(*) FROM m_group_client",
        "savings accounts": "SELECT count(*) FROM m_savings_account",
        "late repayments": """SELECT count(*) FROM m_loan_repayment_schedule
                              WHERE completed_derived AND obligations_met_on_date > duedate""",
        "active loans in arrears": """SELECT count(DISTINCT s.loan_id) FROM m_loan_repayment_schedule s
                                      JOIN m_loan l ON l.id = s.loan_id
                                      WHERE l.loan_status_id = 300 AND NOT s.completed_derived
                                        AND s.duedate < %(as_of)s""",
    }
    for what, sql in checks.items():
        assert _scalar(demo_url, sql, {"as_of": AS_OF}) > 0, what


def test_client_dates_are_ordered_and_women_are_about_two_thirds(demo_url):
    assert _scalar(demo_url, """SELECT count(*) FROM m_client WHERE activation_date < submittedon_date
                                OR closedon_date < activation_date OR rejectedon_date < submittedon_date
                                OR withdrawn_on_date < submittedon_date""") == 0
    female = demo.CODE_VALUE_IDS["Gender"]["Female"]
    share = _scalar(demo_url, "SELECT avg((gender_cv_id = %s)::int) FROM m_client WHERE gender_cv_id IS NOT NULL",
                    (female,))
    assert 0.62 <= float(share) <= 0.74
    names = _all(demo_url, """SELECT cv.code_value FROM m_code_value cv JOIN m_code c ON c.id = cv.code_id
                              WHERE c.code_name = 'Gender' ORDER BY cv.order_position""")
    assert [r[0] for r in names] == ["Female", "Male"]


def test_office_hierarchy_follows_fineract(demo_url):
    offices = {r[0]: r[1:] for r in _all(demo_url, "SELECT id, parent_id, hierarchy FROM m_office")}
    assert offices[1] == (None, ".")
    for oid, (parent, hierarchy) in offices.items():
        if parent is None:
            continue
        parent_h = offices[parent][1]
        assert hierarchy == parent_h + f"{oid}.", (oid, hierarchy)  # '.' -> '.2.' -> '.2.5.'
    assert {len(h.strip(".").split(".")) for _p, h in offices.values() if h != "."} == {1, 2}  # regions, branches
    # clients are in branches (leaves), never in the head office or a region
    assert _scalar(demo_url, "SELECT count(*) FROM m_client c WHERE EXISTS "
                             "(SELECT 1 FROM m_office o WHERE o.parent_id = c.office_id)") == 0


def test_nothing_is_dated_after_as_of(demo_url):
    rows = _all(demo_url, AFTER_AS_OF, {"d": AS_OF, "next": AS_OF + dt.timedelta(days=1)})
    assert [r for r in rows if r[1]] == []


def test_personal_data_columns_are_filled_in_the_source(demo_url):
    # the extraction must leave these behind: the source really has them
    n = _scalar(demo_url, "SELECT count(*) FROM m_client WHERE firstname IS NOT NULL AND display_name IS NOT NULL "
                          "AND mobile_no IS NOT NULL AND external_id IS NOT NULL")
    assert n == CLIENTS
    assert _scalar(demo_url, "SELECT count(*) FROM m_client WHERE account_no = lpad(id::text, 9, '0')") == CLIENTS


def _fingerprint(url: str) -> dict[str, str]:
    out = {}
    with psycopg.connect(url) as conn:
        for table in schema.COLUMNS:
            out[table] = conn.execute(
                f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t").fetchone()[0]
    return out


def test_same_seed_same_database_other_seed_other_data(pg_server_url):
    urls = []
    names = []
    try:
        for seed in (5, 5, 6):
            name = f"spm_test_demo_det_{uuid.uuid4().hex[:8]}"
            names.append(name)
            urls.append(create_database(pg_server_url, name))
            with psycopg.connect(urls[-1]) as conn:
                demo.build_demo_mis(conn, clients=120, seed=seed, as_of=AS_OF)
        first, again, other = (_fingerprint(u) for u in urls)
        assert first == again
        assert first["m_loan_transaction"] != other["m_loan_transaction"]
    finally:
        for name in names:
            drop_database(pg_server_url, name)


def test_rebuild_replaces_existing_tables(fresh_database):
    url = fresh_database("demo_rebuild")
    with psycopg.connect(url) as conn:
        demo.build_demo_mis(conn, clients=60, seed=1, as_of=AS_OF)
        counts = demo.build_demo_mis(conn, clients=40, seed=1, as_of=AS_OF)
    assert counts["m_client"] == 40
    assert _scalar(url, "SELECT count(*) FROM m_client") == 40


def test_simulated_days_keep_balances_consistent_and_stamp_the_day(fresh_database):
    url = fresh_database("demo_sim")
    with psycopg.connect(url) as conn:
        demo.build_demo_mis(conn, clients=400, seed=3, as_of=AS_OF)
        start = AS_OF + dt.timedelta(days=1)
        stats = demo.simulate_days(conn, start=start, days=3, seed=9)
    for key in ("new_clients", "repayments", "backdated_repayments", "reversals", "closed_clients",
                "client_edits", "new_loans", "disbursed_loans"):
        assert stats[key] > 0, key
    assert _all(url, DERIVED_MISMATCHES) == []
    end = start + dt.timedelta(days=3)
    rows = _all(url, AFTER_AS_OF, {"d": end - dt.timedelta(days=1), "next": end})
    assert [r for r in rows if r[1]] == []
    # changed rows carry the simulated day's time stamps; back-dated ones keep their value date
    assert _scalar(url, "SELECT count(*) FROM m_loan_transaction WHERE last_modified_on_utc >= %s "
                        "AND transaction_date < submitted_on_date", (start,)) > 0
    assert _scalar(url, "SELECT count(*) FROM m_loan_transaction WHERE is_reversed AND reversed_on_date >= %s",
                   (start,)) > 0
    assert _scalar(url, "SELECT count(*) FROM m_client WHERE last_modified_on_utc >= %s", (start,)) > 0
    # untouched rows keep their old stamps: most of the history is older than the simulation
    assert _scalar(url, "SELECT count(*) FROM m_loan_transaction WHERE last_modified_on_utc < %s", (start,)) > \
        10 * _scalar(url, "SELECT count(*) FROM m_loan_transaction WHERE last_modified_on_utc >= %s", (start,))


@pytest.mark.mariadb
def test_copy_to_mariadb_uses_fineract_mysql_types(demo_url, mariadb_database):
    conn, dbname = mariadb_database
    with psycopg.connect(demo_url) as pg:
        counts = demo.copy_to_mysql(pg, conn)
    with conn.cursor() as cur:
        cur.execute("SELECT table_name, column_name, column_type FROM information_schema.columns "
                    "WHERE table_schema = %s", (dbname,))
        types = {(t, c): ty for t, c, ty in cur.fetchall()}
        assert types[("m_loan_transaction", "is_reversed")] == "tinyint(1)"
        assert types[("m_loan", "last_modified_on_utc")] == "datetime(6)"
        assert types[("m_loan", "principal_amount")] == "decimal(19,6)"
        cur.execute("SELECT count(*), sum(amount) FROM m_loan_transaction WHERE is_reversed = 1")
        n_rev, _ = cur.fetchone()
    with psycopg.connect(demo_url) as pg:
        assert counts["m_loan_transaction"] == pg.execute("SELECT count(*) FROM m_loan_transaction").fetchone()[0]
        assert n_rev == pg.execute("SELECT count(*) FROM m_loan_transaction WHERE is_reversed").fetchone()[0]
