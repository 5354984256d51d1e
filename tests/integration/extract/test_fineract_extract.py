"""MIS extraction against real databases: incremental, idempotent, drift-tolerant, delete-aware, exact."""

from __future__ import annotations

import datetime as dt
import decimal
import logging

import psycopg
import pytest

from spm_warehouse.settings import ConnInfo, parse_conn_uri
from spm_warehouse.sources import fineract as mis
from spm_warehouse.sources import fineract_tables as tables
from spm_warehouse.sources.fineract import SourceSchemaError
from tools.demo import fineract as demo

AS_OF = dt.date(2024, 6, 30)
NEXT_DAY = AS_OF + dt.timedelta(days=1)
CLIENTS = 300


def source_info(url: str) -> ConnInfo:
    return parse_conn_uri("mis_fineract", url)


@pytest.fixture
def demo_source(fresh_database) -> str:
    url = fresh_database("mis_src")
    with psycopg.connect(url) as conn:
        demo.build_demo_mis(conn, clients=CLIENTS, seed=21, as_of=AS_OF)
    return url


@pytest.fixture
def warehouse(fresh_database) -> str:
    return fresh_database("mis_wh")


def extract(src_url_or_info, wh_url: str, run_id: str, **kwargs) -> dict[str, dict]:
    info = src_url_or_info if isinstance(src_url_or_info, ConnInfo) else source_info(src_url_or_info)
    with psycopg.connect(wh_url) as wh:
        manifest = mis.extract_mis(info, wh, run_id=run_id, as_of=AS_OF, **kwargs)
    return {m["table_name"]: m for m in manifest}


def q(url: str, sql: str, params=None) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def one(url: str, sql: str, params=None):
    return q(url, sql, params)[0][0]


def test_first_load_copies_every_table_and_no_personal_data(demo_source, warehouse):
    manifest = extract(demo_source, warehouse, "run_1")
    assert {t for t in manifest if not t.startswith("datatable:")} == {t.name for t in tables.TABLES}
    # the mapped datatable (seeds/datatable_indicator_map.csv) is not in the default demo: reported absent
    assert manifest["datatable:client_spm"]["mode"] == "absent"
    for spec in tables.TABLES:
        if not one(demo_source, "SELECT to_regclass(%s) IS NOT NULL", (spec.name,)):
            # optional tables the default demo MIS lacks (the survey module: tools/demo/fineract_spm.py)
            assert not spec.required and manifest[spec.name]["mode"] == "absent", spec.name
            assert one(warehouse, f"SELECT count(*) FROM raw_mis.{spec.name}") == 0, spec.name
            continue
        n_src = one(demo_source, f"SELECT count(*) FROM {spec.name}")
        assert one(warehouse, f"SELECT count(*) FROM raw_mis.{spec.name}") == n_src, spec.name
        assert manifest[spec.name]["rows_read"] == n_src
        assert manifest[spec.name]["rows_merged"] == n_src
    raw_client_cols = {r[0] for r in q(warehouse, "SELECT column_name FROM information_schema.columns "
                                                  "WHERE table_schema = 'raw_mis' AND table_name = 'm_client'")}
    for column in tables.PII_COLUMNS["m_client"]:
        assert column not in raw_client_cols
    assert {"_extracted_at", "_run_id", "_deleted"} <= raw_client_cols
    assert one(warehouse, "SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND "
                          "connamespace = 'raw_mis'::regnamespace AND "
                          "conrelid <> 'raw_mis.datatable_values'::regclass") == len(tables.TABLES)
    assert one(warehouse, "SELECT count(DISTINCT _run_id) FROM raw_mis.m_loan") == 1
    assert one(warehouse, "SELECT min(_run_id) FROM raw_mis.m_loan") == "run_1"
    # one manifest row per table, with the promised fields
    rows = q(warehouse, "SELECT table_name, watermark_from, watermark_to, rows_read, rows_merged, seconds, "
                        "started_at FROM meta.load_manifest WHERE run_id = 'run_1' "
                        "AND table_name NOT LIKE 'datatable:%%'")
    assert len(rows) == len(tables.TABLES)
    by_table = {r[0]: r for r in rows}
    assert by_table["m_loan"][1] is None and by_table["m_loan"][2] is not None
    assert by_table["m_loan"][2] == one(demo_source, "SELECT max(last_modified_on_utc) FROM m_loan")
    assert one(warehouse, "SELECT watermark FROM meta.watermarks WHERE table_name = 'm_loan_transaction'") == \
        one(demo_source, "SELECT max(last_modified_on_utc) FROM m_loan_transaction")


def test_rerun_is_a_no_op(demo_source, warehouse):
    extract(demo_source, warehouse, "run_1")
    before = q(warehouse, "SELECT id, _extracted_at, _run_id FROM raw_mis.m_loan_transaction ORDER BY id")
    manifest = extract(demo_source, warehouse, "run_2")
    assert {t: m["rows_merged"] for t, m in manifest.items() if m["rows_merged"]} == {}
    assert sum(m["rows_deleted"] for m in manifest.values()) == 0
    after = q(warehouse, "SELECT id, _extracted_at, _run_id FROM raw_mis.m_loan_transaction ORDER BY id")
    assert after == before
    # the lookback window re-read the last hour, and still nothing changed
    assert manifest["m_loan_transaction"]["rows_read"] > 0
    assert manifest["m_loan_transaction"]["mode"] == "incremental"
    assert one(warehouse, "SELECT count(*) FROM raw_mis.m_client WHERE _run_id = 'run_2'") == 0


def test_only_changed_rows_are_picked_up_including_backdated_ones(demo_source, warehouse):
    extract(demo_source, warehouse, "run_1")
    with psycopg.connect(demo_source) as conn:
        stats = demo.simulate_days(conn, start=NEXT_DAY, days=2, seed=4)
    assert stats["backdated_repayments"] > 0
    manifest = extract(demo_source, warehouse, "run_2")
    for table in ("m_client", "m_loan", "m_loan_transaction", "m_loan_repayment_schedule"):
        changed = {r[0] for r in q(demo_source, f"SELECT id FROM {table} WHERE last_modified_on_utc >= %s",
                                   (NEXT_DAY,))}
        merged = {r[0] for r in q(warehouse, f"SELECT id FROM raw_mis.{table} WHERE _run_id = 'run_2'")}
        assert changed, table
        assert merged == changed, table
        assert manifest[table]["rows_merged"] == len(changed)
        # read less than the whole table: incremental
        assert manifest[table]["rows_read"] < one(demo_source, f"SELECT count(*) FROM {table}") / 2
    # a repayment entered on the simulated days with an earlier value date is in raw
    backdated = q(demo_source, "SELECT id, transaction_date, amount FROM m_loan_transaction "
                               "WHERE submitted_on_date >= %s AND transaction_date < submitted_on_date", (NEXT_DAY,))
    assert backdated
    raw = dict((r[0], r[1:]) for r in q(warehouse, "SELECT id, transaction_date, amount "
                                                   "FROM raw_mis.m_loan_transaction"))
    for tid, tdate, amount in backdated:
        assert raw[tid] == (tdate, amount)
    # the whole raw table equals the source, column by column
    assert _table_digest(demo_source, "public.m_loan") == _table_digest(warehouse, "raw_mis.m_loan")
    assert _table_digest(demo_source, "public.m_loan_transaction") == \
        _table_digest(warehouse, "raw_mis.m_loan_transaction")


def test_backdated_change_below_the_watermark_is_picked_up(demo_source, warehouse):
    """A change to an old row (old dates, new last_modified) must arrive, whatever its business dates."""
    extract(demo_source, warehouse, "run_1")
    with psycopg.connect(demo_source) as conn:
        tid, = conn.execute("SELECT min(id) FROM m_loan_transaction WHERE transaction_type_enum = 2 "
                            "AND NOT is_reversed").fetchone()
        conn.execute("UPDATE m_loan_transaction SET submitted_on_date = submitted_on_date + 1, "
                     "last_modified_on_utc = %s WHERE id = %s", (dt.datetime(2024, 7, 1, 8, tzinfo=dt.timezone.utc),
                                                                 tid))
    manifest = extract(demo_source, warehouse, "run_2")
    assert manifest["m_loan_transaction"]["rows_merged"] == 1
    assert one(warehouse, "SELECT _run_id FROM raw_mis.m_loan_transaction WHERE id = %s", (tid,)) == "run_2"


def test_change_inside_the_lookback_window_is_not_lost(demo_source, warehouse):
    """A long transaction commits a row stamped *before* the stored watermark: the lookback catches it."""
    extract(demo_source, warehouse, "run_1")
    wm = one(warehouse, "SELECT watermark FROM meta.watermarks WHERE table_name = 'm_client'")
    with psycopg.connect(demo_source) as conn:
        cid = conn.execute("SELECT min(id) FROM m_client WHERE status_enum = 300").fetchone()[0]
        conn.execute("UPDATE m_client SET staff_id = NULL, last_modified_on_utc = %s WHERE id = %s",
                     (wm - dt.timedelta(minutes=20), cid))
    manifest = extract(demo_source, warehouse, "run_2")
    assert manifest["m_client"]["rows_merged"] == 1
    assert one(warehouse, "SELECT staff_id FROM raw_mis.m_client WHERE id = %s", (cid,)) is None
    assert one(warehouse, "SELECT watermark FROM meta.watermarks WHERE table_name = 'm_client'") == wm


def test_emptied_raw_table_is_reloaded_whole_despite_its_watermark(demo_source, warehouse):
    extract(demo_source, warehouse, "run_1")
    with psycopg.connect(warehouse) as wh:
        wh.execute("TRUNCATE raw_mis.m_loan")
    manifest = extract(demo_source, warehouse, "run_2")
    assert manifest["m_loan"]["mode"] == "initial"
    assert one(warehouse, "SELECT count(*) FROM raw_mis.m_loan") == one(demo_source, "SELECT count(*) FROM m_loan")


def test_full_refresh_rereads_everything_and_changes_nothing(demo_source, warehouse):
    extract(demo_source, warehouse, "run_1")
    manifest = extract(demo_source, warehouse, "run_2", full_refresh=True)
    n = one(demo_source, "SELECT count(*) FROM m_loan_repayment_schedule")
    assert manifest["m_loan_repayment_schedule"]["rows_read"] == n
    assert manifest["m_loan_repayment_schedule"]["mode"] == "full"
    assert sum(m["rows_merged"] for m in manifest.values()) == 0


def test_new_source_column_is_logged_as_drift_and_ignored(demo_source, warehouse, caplog):
    extract(demo_source, warehouse, "run_1")
    with psycopg.connect(demo_source) as conn:
        conn.execute("ALTER TABLE m_loan ADD COLUMN is_fraud boolean NOT NULL DEFAULT false")
        conn.execute("UPDATE m_loan SET is_fraud = true, last_modified_on_utc = now() WHERE id = 1")
    with caplog.at_level(logging.WARNING, logger="spm_warehouse"):
        manifest = extract(demo_source, warehouse, "run_2")
    assert manifest["m_loan"]["rows_read"] >= 1
    assert any("m_loan.is_fraud" in r.getMessage() and "drift" in r.getMessage() for r in caplog.records)
    drift = q(warehouse, "SELECT table_name, column_name, change, run_id FROM meta.schema_drift")
    assert drift == [("m_loan", "is_fraud", "added", "run_2")]
    raw_cols = {r[0] for r in q(warehouse, "SELECT column_name FROM information_schema.columns "
                                           "WHERE table_schema = 'raw_mis' AND table_name = 'm_loan'")}
    assert "is_fraud" not in raw_cols
    # recorded once, not at every run
    extract(demo_source, warehouse, "run_3")
    assert one(warehouse, "SELECT count(*) FROM meta.schema_drift") == 1


def test_missing_required_column_fails_naming_table_and_column(demo_source, warehouse):
    with psycopg.connect(demo_source) as conn:
        conn.execute("ALTER TABLE m_loan RENAME COLUMN principal_repaid_derived TO principal_repaid")
    with pytest.raises(SourceSchemaError) as err:
        extract(demo_source, warehouse, "run_1")
    assert "m_loan.principal_repaid_derived" in str(err.value)
    # nothing half-loaded
    assert one(warehouse, "SELECT to_regclass('raw_mis.m_loan')") is None


def test_missing_required_table_fails_but_optional_table_is_skipped(demo_source, warehouse):
    with psycopg.connect(demo_source) as conn:
        conn.execute("DROP TABLE m_savings_account")
    manifest = extract(demo_source, warehouse, "run_1")
    assert manifest["m_savings_account"]["mode"] == "absent" and manifest["m_loan"]["mode"] == "initial"
    assert manifest["m_savings_account"]["rows_read"] == 0
    # the raw table exists, empty, so that dbt builds the same marts as with an empty source table
    assert one(warehouse, "SELECT count(*) FROM raw_mis.m_savings_account") == 0
    assert q(warehouse, "SELECT mode FROM meta.load_manifest WHERE table_name = 'm_savings_account'") == [("absent",)]
    with psycopg.connect(demo_source) as conn:
        conn.execute("DROP TABLE m_loan_transaction")
    with pytest.raises(SourceSchemaError, match="m_loan_transaction"):
        extract(demo_source, warehouse, "run_2")


def test_hard_delete_is_detected_and_marked(demo_source, warehouse):
    extract(demo_source, warehouse, "run_1")
    with psycopg.connect(demo_source) as conn:
        sched_id, = conn.execute("SELECT max(id) FROM m_loan_repayment_schedule").fetchone()
        tx_id, = conn.execute("SELECT max(id) FROM m_loan_transaction").fetchone()
        cv_id, = conn.execute("SELECT max(id) FROM m_code_value").fetchone()
        conn.execute("DELETE FROM m_loan_repayment_schedule WHERE id = %s", (sched_id,))
        conn.execute("DELETE FROM m_loan_transaction WHERE id = %s", (tx_id,))
        conn.execute("DELETE FROM m_code_value WHERE id = %s", (cv_id,))
    # an incremental run cannot see deletes in cursor tables, but sees them in tables read whole
    manifest = extract(demo_source, warehouse, "run_2")
    assert manifest["m_code_value"]["rows_deleted"] == 1
    assert one(warehouse, "SELECT _deleted FROM raw_mis.m_code_value WHERE id = %s", (cv_id,)) is True
    assert one(warehouse, "SELECT _deleted FROM raw_mis.m_loan_transaction WHERE id = %s", (tx_id,)) is False
    with psycopg.connect(warehouse) as wh:
        marked = mis.reconcile_keys(source_info(demo_source), wh, run_id="reconcile_1")
    assert marked["m_loan_repayment_schedule"] == 1
    assert marked["m_loan_transaction"] == 1
    assert marked["m_loan"] == 0
    assert q(warehouse, "SELECT id FROM raw_mis.m_loan_repayment_schedule WHERE _deleted") == [(sched_id,)]
    assert q(warehouse, "SELECT id FROM raw_mis.m_loan_transaction WHERE _deleted") == [(tx_id,)]
    recon = dict(q(warehouse, "SELECT table_name, marked_deleted FROM meta.reconciliations "
                              "WHERE run_id = 'reconcile_1'"))
    assert recon["m_loan_transaction"] == 1
    # reconciling again marks nothing new; a row that comes back is un-deleted by the next load
    with psycopg.connect(warehouse) as wh:
        again = mis.reconcile_keys(source_info(demo_source), wh, tables=["m_loan_transaction"])
    assert again == {"m_loan_transaction": 0}
    with psycopg.connect(demo_source) as conn:
        conn.execute("INSERT INTO m_code_value (id, code_id, code_value, order_position, is_active) "
                     "VALUES (%s, 18, 'Back again', 9, true)", (cv_id,))
    extract(demo_source, warehouse, "run_3")
    assert q(warehouse, "SELECT code_value, _deleted FROM raw_mis.m_code_value WHERE id = %s", (cv_id,)) == \
        [("Back again", False)]


def test_reconcile_runs_with_the_extraction_when_asked_or_due(demo_source, warehouse):
    extract(demo_source, warehouse, "run_1", reconcile_every_days=0)  # only on demand
    with psycopg.connect(demo_source) as conn:
        conn.execute("DELETE FROM m_loan_repayment_schedule WHERE id = (SELECT max(id) FROM "
                     "m_loan_repayment_schedule)")
    extract(demo_source, warehouse, "run_2", reconcile_every_days=7)  # never reconciled: due
    assert one(warehouse, "SELECT count(*) FROM raw_mis.m_loan_repayment_schedule WHERE _deleted") == 1
    with psycopg.connect(demo_source) as conn:
        conn.execute("DELETE FROM m_loan_repayment_schedule WHERE id = (SELECT max(id) FROM "
                     "m_loan_repayment_schedule)")
    extract(demo_source, warehouse, "run_3", reconcile_every_days=7)  # reconciled today: not due
    assert one(warehouse, "SELECT count(*) FROM raw_mis.m_loan_repayment_schedule WHERE _deleted") == 1
    extract(demo_source, warehouse, "run_4", reconcile=True)
    assert one(warehouse, "SELECT count(*) FROM raw_mis.m_loan_repayment_schedule WHERE _deleted") == 2


def test_type_fidelity_from_postgresql(demo_source, warehouse):
    amount = decimal.Decimal("1234567.890123")
    stamp = dt.datetime(2024, 6, 30, 23, 59, 58, 123456, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    with psycopg.connect(demo_source) as conn:
        conn.execute("UPDATE m_loan_transaction SET amount = %s, last_modified_on_utc = %s, is_reversed = true, "
                     "reversed_on_date = '2024-02-29' WHERE id = 2", (amount, stamp))
    extract(demo_source, warehouse, "run_1")
    row = q(warehouse, "SELECT amount, last_modified_on_utc, is_reversed, reversed_on_date "
                       "FROM raw_mis.m_loan_transaction WHERE id = 2")[0]
    assert row == (amount, stamp, True, dt.date(2024, 2, 29))
    types = dict(q(warehouse, "SELECT column_name, format_type(atttypid, atttypmod) FROM "
                              "(SELECT attname AS column_name, atttypid, atttypmod FROM pg_attribute "
                              "WHERE attrelid = 'raw_mis.m_loan_transaction'::regclass AND attnum > 0) a"))
    assert types["amount"] == "numeric(19,6)"
    assert types["last_modified_on_utc"] == "timestamp with time zone"
    assert types["transaction_date"] == "date"
    assert types["is_reversed"] == "boolean"
    assert types["id"] == "bigint"
    # int in Fineract (gender_cv_id) widened to the contract's bigint
    client_types = dict(q(warehouse, "SELECT column_name, data_type FROM information_schema.columns "
                                     "WHERE table_schema = 'raw_mis' AND table_name = 'm_client'"))
    assert client_types["gender_cv_id"] == "bigint"
    assert client_types["status_enum"] == "integer"


def test_source_session_is_read_only_repeatable_read_with_timeout(demo_source):
    session = mis.open_source(source_info(demo_source))
    try:
        conn = session.conn
        assert conn.execute("SHOW transaction_isolation").fetchone()[0] == "repeatable read"
        assert conn.execute("SHOW transaction_read_only").fetchone()[0] == "on"
        assert conn.execute("SHOW statement_timeout").fetchone()[0] != "0"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("UPDATE m_client SET staff_id = NULL WHERE id = 1")
    finally:
        session.close()


def _table_digest(url: str, table: str, columns: list[str] | None = None) -> tuple:
    spec = tables.TABLES_BY_NAME[table.split(".")[-1]]
    cols = ", ".join(columns or spec.column_names)
    return tuple(q(url, f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')), count(*) "
                        f"FROM (SELECT {cols} FROM {table}) x")[0])


# ------------------------------------------------------------------------------------------ MariaDB


@pytest.fixture
def mariadb_source(demo_source, mariadb_database):
    """The same demo data in a MariaDB database (Fineract's MySQL schema)."""
    conn, dbname = mariadb_database
    with psycopg.connect(demo_source) as pg:
        demo.copy_to_mysql(pg, conn)
    return ConnInfo("mis_fineract", "mariadb", "127.0.0.1", 3306, "root", "", dbname, {}), conn


@pytest.mark.mariadb
def test_postgresql_and_mariadb_sources_give_identical_raw_tables(demo_source, mariadb_source, fresh_database):
    info, _ = mariadb_source
    wh_pg = fresh_database("wh_from_pg")
    wh_my = fresh_database("wh_from_mariadb")
    extract(demo_source, wh_pg, "run_pg")
    manifest = extract(info, wh_my, "run_my")
    assert manifest["m_loan"]["source"] == "mis_fineract:mysql"
    for spec in tables.TABLES:
        cols = spec.column_names + ["_deleted"]
        assert _table_digest(wh_pg, f"raw_mis.{spec.name}", cols) == \
            _table_digest(wh_my, f"raw_mis.{spec.name}", cols), spec.name


@pytest.mark.mariadb
def test_mariadb_incremental_rerun_and_type_fidelity(mariadb_source, warehouse):
    info, conn = mariadb_source
    extract(info, warehouse, "run_1")
    with conn.cursor() as cur:
        cur.execute("UPDATE m_loan_transaction SET amount = 98765.432101, is_reversed = 1, "
                    "last_modified_on_utc = '2024-07-01 08:30:15.250000' WHERE id = 3")
    conn.commit()
    manifest = extract(info, warehouse, "run_2")
    assert manifest["m_loan_transaction"]["rows_merged"] == 1
    assert {t for t, m in manifest.items() if m["rows_merged"]} == {"m_loan_transaction"}
    row = q(warehouse, "SELECT amount, is_reversed, last_modified_on_utc, _run_id FROM raw_mis.m_loan_transaction "
                       "WHERE id = 3")[0]
    assert row == (decimal.Decimal("98765.432101"), True,
                   dt.datetime(2024, 7, 1, 8, 30, 15, 250000, tzinfo=dt.timezone.utc), "run_2")
    # booleans from tinyint(1) are real booleans, both values
    assert set(r[0] for r in q(warehouse, "SELECT DISTINCT is_reversed FROM raw_mis.m_loan_transaction")) == \
        {True, False}
    again = extract(info, warehouse, "run_3")
    assert sum(m["rows_merged"] for m in again.values()) == 0


@pytest.mark.mariadb
def test_mariadb_missing_column_error_and_session_safety(mariadb_source, warehouse):
    info, conn = mariadb_source
    session = mis.open_source(info)
    try:
        with session.conn.cursor() as cur:
            cur.execute("SELECT @@session.tx_isolation, @@session.max_statement_time")
            isolation, timeout = cur.fetchone()
        assert isolation == "REPEATABLE-READ"
        assert float(timeout) > 0
    finally:
        session.close()
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE m_client DROP COLUMN office_joining_date")
    conn.commit()
    with pytest.raises(SourceSchemaError, match=r"m_client\.office_joining_date"):
        extract(info, warehouse, "run_1")
