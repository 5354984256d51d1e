"""Incremental balance snapshots: backdated changes, reruns, full refresh and backfill.

Night 2 of the hand-made world (fixtures/star_world.py) brings a
repayment backdated into March, a reversal and its correction in April, a
write-off and new activity. The nightly run must recompute exactly the
affected months of the affected loans, give what a full rebuild gives, give
the same tables when rerun, and a backfill must use only what was known on
its date without disturbing the state of the nightly runs.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone

import psycopg
import pytest
from databases import create_database, drop_database, unique_name, with_database
from star_world import (
    MARTS,
    NIGHT1,
    NIGHT2,
    client,
    clone_world,
    dbt,
    fingerprint,
    query,
    ts,
    txn,
    upsert_raw,
)

from spm_warehouse import delta_indexes
from spm_warehouse.build import run_dbt
from spm_warehouse.settings import parse_conn_uri
from spm_warehouse.sources.fineract_tables import TABLES

pytestmark = pytest.mark.usefixtures("star_world")

D = date.fromisoformat
SNAPSHOT_COLUMNS = ("loan_id, period_month, period_end, in_life, first_disbursed_on, written_off_on, "
                    "principal_disbursed_to_date, principal_repaid_to_date, outstanding_principal, days_in_arrears, "
                    "first_unpaid_due_date, schedule_basis_hash, next_due_date")
# The facts kept in history.<fact>__versions, views in the build schema (dbt_project/macros/history.sql).
VERSIONED_FACTS = ("fct_loan_transaction", "fct_portfolio_month", "fct_client_indicator")
# The incremental intermediate models, compared with a full rebuild like the marts.
INCREMENTAL_INTERMEDIATE = ("int_loan__balance_month", "int_loan__lifecycle", "int_client__history",
                            "int_kpi__client_attrs", "int_kpi__loan_month", "int_kpi__branch_loan_month",
                            "int_kpi__loan_officer_loan_month", "int_kpi__product_loan_month",
                            "int_kpi__segment_loan_month")


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


def test_a_full_build_in_chunks_of_loans_equals_the_nightly_state(star_world, clone):
    """A full build of the balance snapshots runs one statement per chunk of loans (so that its
    temporary files stay bounded: macros/incremental/core_chunked_full_build.sql); in chunks of two
    loans it writes exactly the rows the nights wrote, and so what one statement writes
    (test_incremental_equals_full_refresh)."""
    url, tmp = clone
    before = snapshots(star_world.url)
    loans = query(url, "SELECT count(*) AS n FROM intermediate.int_loan__known_loans")[0]["n"]
    assert loans >= 5  # enough for three chunks
    result = run_dbt(["run", "--full-refresh", "--select", "int_loan__balance_month"], parse_conn_uri("wh", url),
                     dbt_vars={"as_of_date": NIGHT2.isoformat(), "core_full_build_chunk_loans": 2},
                     target_path=tmp / "chunked", log_path=tmp / "chunked" / "logs")
    assert result.success, result.log_tail[-3000:]
    assert snapshots(url) == before
    log = (tmp / "chunked" / "logs" / "dbt.log").read_text()
    chunks = {(int(i), int(n)) for i, n in re.findall(r"/\* chunk (\d+) of (\d+) \*/", log)}
    total = -(-loans // 2)
    assert chunks == {(i, total) for i in range(2, total + 1)}, chunks  # chunk 1 is the model's own statement
    # a nightly run inserts no chunk
    dbt(url, NIGHT2, tmp, ["run", "--select", "int_loan__balance_month"], select=False)
    assert snapshots(url) == before
    assert "/* chunk" not in (tmp / "target" / "logs" / "dbt.log").read_text()


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
    """Night 3 brings one repayment of loan 1.

    fct_loan_transaction writes the new transaction only: no column moves with the as-of date, and loan 1's
    other transactions are identical tonight, so they keep night 2's version;
    fct_portfolio_month rewrites loan 1 and the rows from June (night 2's month) on, whose balances at
    period_end move.
    """
    url, tmp = clone
    night3 = D("2024-07-02")
    keys = {"fct_loan_transaction": "transaction_id, loan_id", "fct_portfolio_month": "loan_id, period_month"}

    def written_on() -> dict[str, dict]:
        """Per fact: key -> the as-of date of the night that wrote the row."""
        return {table: {tuple(r.values())[:2]: r["_as_of_date"]
                        for r in query(url, f"SELECT {key_sql}, _as_of_date FROM analytics_build.{table}")}
                for table, key_sql in keys.items()}

    before = written_on()
    with psycopg.connect(url) as conn:
        upsert_raw(conn, {"m_loan_transaction": [txn(9001, 1, 2, "2024-07-01", 50)]},
                   datetime(2024, 7, 3, 2, 0, tzinfo=timezone.utc))
    dbt(url, night3, tmp, ["run"])
    june = D("2024-06-01")
    rewritten = {"fct_loan_transaction": lambda key: key[0] == 9001,
                 "fct_portfolio_month": lambda key: key[0] == 1 or key[1] >= june}
    after = written_on()
    for table in keys:
        got = after[table]
        expected = {key: night3 if rewritten[table](key) else before[table][key] for key in got}
        assert got == expected, table
        assert night3 in got.values() and len(set(got.values())) > 1, table
    loan1 = query(url, "SELECT count(*) AS n FROM analytics_build.fct_loan_transaction WHERE loan_id = 1")[0]["n"]
    assert loan1 > 1  # loan 1 has older transactions, and they were not written again
    june_rows = query(url, "SELECT count(*) AS n FROM analytics_build.fct_loan_transaction "
                           "WHERE transaction_date >= %s AND loan_id <> 1", (june,))[0]["n"]
    assert june_rows > 0  # the month of night 2 holds other loans' transactions, and none was written again
    assert query(url, "SELECT count(*) AS n FROM analytics_build.fct_loan_transaction WHERE transaction_id = 9001"
                 )[0]["n"] == 1
    # the KPI loan side: tonight's diff names loan 1 and the moving months only, and the base tables
    # recompute only the (slice, month) pairs it names; the months before June keep night 2's rows
    batch = query(url, """SELECT op, loan_id, period_month FROM intermediate.int_kpi__loan_month_changes
                          WHERE _change_at = (SELECT max(_change_at) FROM intermediate.int_kpi__loan_month_changes)""")
    assert batch and {r["op"] for r in batch} <= {"-", "+"}, batch
    assert all(r["loan_id"] == 1 or r["period_month"] >= june for r in batch), batch
    for base in ("branch", "loan_officer", "product", "segment"):
        stamps = query(url, f"""SELECT period_month >= %s AS moving, count(DISTINCT _consumed_through) AS n,
                                       max(_consumed_through) AS newest
                                FROM intermediate.int_kpi__{base}_loan_month GROUP BY 1 ORDER BY 1""", (june,))
        old_months, moving = stamps
        assert not old_months["moving"] and old_months["newest"] < moving["newest"], (base, stamps)
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


def _equal_to_full_refresh(server_url: str, nightly_db: str, as_of: date, tmp) -> None:
    """A copy of the nightly database rebuilt with --full-refresh holds the same rows, marts and
    incremental intermediate models alike."""
    nightly_url = with_database(server_url, nightly_db)
    nightly_marts = fingerprint(nightly_url, "analytics_build")
    nightly_int = fingerprint(nightly_url, "intermediate", INCREMENTAL_INTERMEDIATE)
    name = unique_name("star_full")
    url = create_database(server_url, name, template=nightly_db)
    try:
        dbt(url, as_of, tmp / name, ["run", "--full-refresh"])
        full_marts = fingerprint(url, "analytics_build")
        full_int = fingerprint(url, "intermediate", INCREMENTAL_INTERMEDIATE)
    finally:
        drop_database(server_url, name)
    assert full_int == nightly_int, {k: (sorted(set(nightly_int[k]) - set(full_int[k])),
                                         sorted(set(full_int[k]) - set(nightly_int[k])))
                                     for k in full_int if full_int[k] != nightly_int[k]}
    assert full_marts == nightly_marts, [k for k in MARTS if full_marts[k] != nightly_marts[k]]


def test_nights_rolled_forward_equal_full_refresh(star_world, tmp_path):
    """Three more nights, each compared with a --full-refresh copy: the month turns (loans rolled forward
    from the stored June rows), an installment falls due (its schedule prefix moves without a change of
    the loan), a repayment backdated into June, a branch transfer, and a night with no change at all."""
    name, url = clone_world(star_world, "star_nights")
    try:
        # the nights run with the raw delta indexes the build stage creates (index plans, same rows)
        with psycopg.connect(url) as conn:
            created = delta_indexes.ensure_delta_indexes(conn)
            conn.commit()
            assert delta_indexes.ensure_delta_indexes(conn) == []  # once only
        assert {"m_loan_transaction(loan_id)", "m_loan_transaction(_extracted_at)", "m_loan(client_id)",
                "m_loan_repayment_schedule(created_on_utc)"} <= set(created), created
        night3, night4, night5 = D("2024-07-02"), D("2024-07-20"), D("2024-08-05")
        with psycopg.connect(url) as conn:
            upsert_raw(conn, {"m_loan_transaction": [txn(9001, 1, 2, "2024-07-01", 50)]},
                       datetime(2024, 7, 3, 2, 0, tzinfo=timezone.utc))
        dbt(url, night3, tmp_path, ["run"])
        rolled = query(url, """SELECT loan_id, period_month, period_end, days_in_arrears, next_due_date
                               FROM intermediate.int_loan__balance_month
                               WHERE loan_id IN (4, 5) AND _as_of_date = %s ORDER BY 1, 2""", (night3,))
        # loans 4 and 5 did not change: their June rows end on June 30 and a July row appears, read
        # from the stored June row (loan 5's next installment, due 07-15, has not passed yet)
        assert [(r["loan_id"], r["period_month"], r["period_end"]) for r in rolled] == [
            (4, D("2024-06-01"), D("2024-06-30")), (4, D("2024-07-01"), night3),
            (5, D("2024-06-01"), D("2024-06-30")), (5, D("2024-07-01"), night3)]
        assert [r["next_due_date"] for r in rolled] == [None, None, None, D("2024-07-15")]
        # client 1's survey of 07-02 is now known (its assessments' fingerprint changed): only its history
        # is rewritten; client 4's stays as night 2 wrote it
        hist = query(url, "SELECT client_id, max(_as_of_date) AS w FROM intermediate.int_client__history GROUP BY 1")
        written = {r["client_id"]: r["w"] for r in hist}
        assert (written[1], written[4]) == (night3, NIGHT2), written
        _equal_to_full_refresh(star_world.server_url, name, night3, tmp_path)

        with psycopg.connect(url) as conn:
            upsert_raw(conn, {
                # a repayment of loan 4 backdated into June, entered on 07-19
                "m_loan_transaction": [txn(9002, 4, 2, "2024-06-05", 60, created=ts(D("2024-07-19")))],
                # client 3 (loan 3, branch B) transferred to branch A on 07-10
                "m_client": [client(3, 3, 101, 41, 172, 300, "2024-02-01", "2024-02-20", joining="2024-07-10",
                                    modified=ts(D("2024-07-10")))],
            }, datetime(2024, 7, 20, 2, 0, tzinfo=timezone.utc))
        dbt(url, night4, tmp_path, ["run"])
        l5 = query(url, """SELECT days_in_arrears, next_due_date, first_unpaid_due_date
                           FROM intermediate.int_loan__balance_month WHERE loan_id = 5 AND period_month = '2024-07-01'""")
        # installment 2 (due 07-15) is unpaid: 5 days in arrears, no installment left
        assert [(r["days_in_arrears"], r["next_due_date"], r["first_unpaid_due_date"]) for r in l5] == [
            (5, None, D("2024-07-15"))]
        branch = query(url, "SELECT branch_id FROM analytics_build.fct_loan WHERE loan_id = 3")
        assert [r["branch_id"] for r in branch] == [3]
        _equal_to_full_refresh(star_world.server_url, name, night4, tmp_path)

        dbt(url, night5, tmp_path, ["run"])  # nothing changed: every live loan is rolled into August
        written = query(url, """SELECT count(*) AS n FROM intermediate.int_loan__balance_month
                                WHERE _as_of_date = %s AND period_month = '2024-08-01'""", (night5,))
        assert written[0]["n"] == 3  # loans 1, 4 and 5
        _equal_to_full_refresh(star_world.server_url, name, night5, tmp_path)
    finally:
        drop_database(star_world.server_url, name)


def test_tables_of_the_previous_version_rebuild_themselves(star_world, clone):
    """An installed warehouse upgraded to this version: int_loan__balance_month without next_due_date,
    int_loan__lifecycle, int_client__history and int_surveys__ppi_scored as the plain tables they were, and
    the three history-sized facts as tables of the build schema, before they were kept in versions
    (fct_loan_transaction with the period_end it used to store, fct_client_indicator without its state
    columns). The next night rebuilds them in full, equal to today's, the facts as views of new versions
    tables."""
    url, tmp = clone
    with psycopg.connect(url) as conn:
        for fact in VERSIONED_FACTS:
            conn.execute(f"CREATE TABLE analytics_build.{fact}_old AS SELECT * FROM analytics_build.{fact}")
            conn.execute(f"DROP TABLE history.{fact}__versions CASCADE")  # and the view
            conn.execute(f"ALTER TABLE analytics_build.{fact}_old RENAME TO {fact}")
        conn.execute("ALTER TABLE intermediate.int_loan__balance_month DROP COLUMN next_due_date")
        conn.execute("""ALTER TABLE intermediate.int_loan__lifecycle DROP COLUMN next_event_on,
                        DROP COLUMN _as_of_date, DROP COLUMN _cutoff_ts, DROP COLUMN _watermark, DROP COLUMN _backfill""")
        conn.execute("""ALTER TABLE intermediate.int_client__history DROP COLUMN next_event_on, DROP COLUMN ppi_basis_hash,
                        DROP COLUMN _as_of_date, DROP COLUMN _cutoff_ts, DROP COLUMN _watermark, DROP COLUMN _backfill""")
        conn.execute("""ALTER TABLE analytics_build.fct_loan_transaction DROP COLUMN period_month,
                        ADD COLUMN period_end date""")
        conn.execute("ALTER TABLE intermediate.int_surveys__ppi_scored DROP COLUMN _loaded_until, "
                     "DROP COLUMN _inputs_fingerprint")
        conn.execute("ALTER TABLE analytics_build.fct_client_indicator DROP COLUMN _as_of_date, DROP COLUMN _cutoff_ts, "
                     "DROP COLUMN _inputs_changed_at")
        conn.commit()
    dbt(url, NIGHT2, tmp, ["run"])
    columns = {r["column_name"] for r in query(
        url, """SELECT column_name FROM information_schema.columns
                WHERE table_schema = 'analytics_build' AND table_name = 'fct_loan_transaction'""")}
    assert "period_month" in columns and "period_end" not in columns, columns
    kinds = {r["relname"]: r["relkind"] for r in query(
        url, """SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'analytics_build' AND c.relname = ANY(%s)""", (list(VERSIONED_FACTS),))}
    assert kinds == {fact: "v" for fact in VERSIONED_FACTS}, kinds
    scored = ("int_surveys__ppi_scored",)
    assert fingerprint(url, "intermediate", scored, by_name=True) == \
        fingerprint(star_world.url, "intermediate", scored, by_name=True)
    assert query(url, "SELECT count(*) AS n FROM intermediate.int_surveys__ppi_scored WHERE _loaded_until IS NULL"
                 )[0]["n"] == 0
    assert fingerprint(url, "intermediate", INCREMENTAL_INTERMEDIATE) == \
        fingerprint(star_world.url, "intermediate", INCREMENTAL_INTERMEDIATE)
    # the same rows; the upgraded fct_loan_transaction has period_month last
    assert fingerprint(url, "analytics_build", by_name=True) == fingerprint(star_world.url, "analytics_build", by_name=True)
