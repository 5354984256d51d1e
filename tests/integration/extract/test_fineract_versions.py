"""Extraction from the Fineract databases MFIs run (issue 14, parts 2 and 3), on PostgreSQL and MariaDB.

- upgraded: 1.8/1.9 added created_on_utc / last_modified_on_utc without backfill, so older
  rows hold NULL there. They are loaded once, never lost or duplicated, compared by row hash
  afterwards, and picked up like any change when their audit column gets set.
- fineract16: no audit column on clients and loans. Every incremental table is compared by
  row hash by key range in the source; changes, inserts and deletes come out of it.
"""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from spm_warehouse.settings import ConnInfo, parse_conn_uri
from spm_warehouse.sources import fineract as mis
from spm_warehouse.sources.fineract import SourceSchemaError
from spm_warehouse.sources.fineract_tables import TABLES
from tools.demo import fineract as demo
from tools.demo import shapes

AS_OF = dt.date(2024, 6, 30)
CLIENTS = 150
LATER = "2024-07-01 09:15:00"
HASHED = ("m_client", "m_loan", "m_loan_transaction", "m_loan_repayment_schedule", "m_savings_account")


class Source:
    """A shaped demo source in one dialect, with the few statements the tests need."""

    def __init__(self, dialect: str, info: ConnInfo, pg_url: str | None = None, my_conn=None):
        self.dialect, self.info, self.pg_url, self.my_conn = dialect, info, pg_url, my_conn

    def execute(self, sql: str) -> int:
        if self.dialect == "mysql":
            with self.my_conn.cursor() as cur:
                n = cur.execute(sql.replace('"', "`"))
            self.my_conn.commit()
            return n
        with psycopg.connect(self.pg_url) as conn:
            return conn.execute(sql).rowcount

    def scalar(self, sql: str):
        if self.dialect == "mysql":
            with self.my_conn.cursor() as cur:
                cur.execute(sql.replace('"', "`"))
                return cur.fetchone()[0]
        with psycopg.connect(self.pg_url) as conn:
            return conn.execute(sql).fetchone()[0]


@pytest.fixture(scope="module")
def demo_template(pg_server_url):
    """One generated current demo MIS per module; each test shapes its own copy."""
    from databases import create_database, drop_database, unique_name

    name = unique_name("shape_tpl")
    url = create_database(pg_server_url, name)
    with psycopg.connect(url) as conn:
        demo.build_demo_mis(conn, clients=CLIENTS, seed=8, as_of=AS_OF)
    yield name, url
    drop_database(pg_server_url, name)


def _shaped(request, shape: str, dialect: str, pg_server_url, demo_template, legacy_zone: str = "UTC") -> Source:
    from databases import create_database, drop_database, unique_name

    name = unique_name(f"shape_{shape}")
    url = create_database(pg_server_url, name, template=demo_template[0])
    request.addfinalizer(lambda: drop_database(pg_server_url, name))
    if dialect == "postgresql":
        with psycopg.connect(url) as conn:
            shapes.apply_shape_postgres(conn, shape, AS_OF, legacy_zone)
        return Source("postgresql", parse_conn_uri("mis_fineract", url), pg_url=url)
    my_conn, my_db = request.getfixturevalue("mariadb_database")
    with psycopg.connect(url) as pg:
        demo.copy_to_mysql(pg, my_conn)
    shapes.apply_shape_mysql(my_conn, shape, AS_OF, legacy_zone)
    info = ConnInfo("mis_fineract", "mariadb", "127.0.0.1", 3306, "root", "", my_db, {})
    return Source("mysql", info, my_conn=my_conn)


DIALECTS = [pytest.param("postgresql", id="postgresql"),
            pytest.param("mysql", id="mariadb", marks=pytest.mark.mariadb)]


@pytest.fixture
def warehouse(fresh_database) -> str:
    return fresh_database("shape_wh")


def extract(source: Source, wh_url: str, run_id: str, **kwargs) -> dict[str, dict]:
    with psycopg.connect(wh_url) as wh:
        manifest = mis.extract_mis(source.info, wh, run_id=run_id, as_of=AS_OF, **kwargs)
    return {m["table_name"]: m for m in manifest}


def wh_scalar(url: str, sql: str, params=None):
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchone()[0]


def live_counts(source: Source, wh_url: str, table: str) -> tuple[int, int]:
    return (source.scalar(f'SELECT count(*) FROM "{table}"'),
            wh_scalar(wh_url, f"SELECT count(*) FROM raw_mis.{table} WHERE NOT _deleted"))


# ------------------------------------------------------------------------------------ upgraded


@pytest.mark.parametrize("dialect", DIALECTS)
def test_upgraded_database_null_audit_rows_are_loaded_once_and_followed_by_hash(
        request, dialect, pg_server_url, demo_template, warehouse):
    source = _shaped(request, "upgraded", dialect, pg_server_url, demo_template)
    nulls = source.scalar('SELECT count(*) FROM "m_loan_transaction" WHERE "last_modified_on_utc" IS NULL')
    total = source.scalar('SELECT count(*) FROM "m_loan_transaction"')
    assert 0 < nulls < total, "the upgraded shape has rows from before and after the upgrade"

    first = extract(source, warehouse, "run_1")
    for table in ("m_client", "m_loan", "m_loan_transaction", "m_loan_repayment_schedule"):
        src, raw = live_counts(source, warehouse, table)
        assert src == raw, table
    assert wh_scalar(warehouse, "SELECT count(*) FROM raw_mis.m_loan_transaction "
                                "WHERE last_modified_on_utc IS NULL") == nulls
    # watermarks ignore NULLs: the newest audit value in the source
    newest = source.scalar('SELECT max("last_modified_on_utc") FROM "m_loan_transaction"')
    assert first["m_loan_transaction"]["watermark_to"].replace(tzinfo=None) == \
        (newest if dialect == "mysql" else newest.astimezone(dt.timezone.utc).replace(tzinfo=None))

    again = extract(source, warehouse, "run_2")
    assert sum(m["rows_merged"] + m["rows_deleted"] for m in again.values()) == 0
    tx = again["m_loan_transaction"]
    since = first["m_loan_transaction"]["watermark_to"] - dt.timedelta(minutes=60)  # the default lookback
    since_sql = f"{since.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S.%f}" + ("" if dialect == "mysql" else "+00")
    in_lookback = source.scalar(f'SELECT count(*) FROM "m_loan_transaction" WHERE "last_modified_on_utc" > '
                                f"'{since_sql}'")
    assert tx["rows_read"] == in_lookback < 10, "a quiet night re-reads the lookback window, no NULL-audit row"
    assert tx["rows_hashed"] == nulls and tx["ranges_changed"] == 0
    assert wh_scalar(warehouse, "SELECT count(*) FROM raw_mis.m_loan_transaction") == total

    old_ids = [source.scalar(f'SELECT min("id") FROM "m_loan_transaction" WHERE "last_modified_on_utc" IS NULL '
                             f'AND "id" > {n}') for n in (0, 40, 80)]
    # 1. a data fix that leaves the audit column NULL (a script, a DBA): seen by the row hash
    source.execute(f'UPDATE "m_loan_transaction" SET "amount" = "amount" + 1 WHERE "id" = {old_ids[0]}')
    # 2. Fineract modifies an old row: its audit column becomes set, picked up like any change
    source.execute(f'UPDATE "m_loan_transaction" SET "is_reversed" = true, "last_modified_on_utc" = \'{LATER}\' '
                   f'WHERE "id" = {old_ids[1]}')
    # 3. an old row deleted
    source.execute(f'DELETE FROM "m_loan_transaction" WHERE "id" = {old_ids[2]}')
    third = extract(source, warehouse, "run_3")
    tx = third["m_loan_transaction"]
    assert tx["rows_merged"] == 2 and tx["rows_deleted"] == 1, tx
    assert {t for t, m in third.items() if m["rows_merged"] or m["rows_deleted"]} == {"m_loan_transaction"}
    rows = dict((r[0], r[1:]) for r in psycopg.connect(warehouse).execute(
        "SELECT id, _run_id, _deleted, last_modified_on_utc IS NULL, _row_hash IS NULL "
        "FROM raw_mis.m_loan_transaction WHERE id = ANY(%s)", (old_ids,)).fetchall())
    assert rows[old_ids[0]] == ("run_3", False, True, False)
    assert rows[old_ids[1]] == ("run_3", False, False, True), "now followed by its cursor, not by hash"
    assert rows[old_ids[2]][:2] == ("run_3", True)
    src, raw = live_counts(source, warehouse, "m_loan_transaction")
    assert src == raw
    fourth = extract(source, warehouse, "run_4")
    assert sum(m["rows_merged"] + m["rows_deleted"] for m in fourth.values()) == 0


# ------------------------------------------------------------------------------------ Fineract 1.6


@pytest.mark.parametrize("dialect", DIALECTS)
def test_fineract16_is_extracted_incrementally_by_row_hash(request, dialect, pg_server_url, demo_template, warehouse):
    source = _shaped(request, "fineract16", dialect, pg_server_url, demo_template)
    first = extract(source, warehouse, "run_1")
    assert {t: m["mode"] for t, m in first.items() if t in HASHED} == {t: "initial" for t in HASHED}
    with psycopg.connect(warehouse) as conn:
        version, modes = conn.execute("SELECT version, table_modes FROM meta.source_profiles "
                                      "WHERE run_id = 'run_1'").fetchone()
    assert version.startswith("Fineract 1.4-1.7")
    assert {t: modes[t] for t in HASHED} == {t: "hash" for t in HASHED}
    assert modes["m_office"] == "snapshot"
    for table in HASHED:
        assert live_counts(source, warehouse, table)[0] == live_counts(source, warehouse, table)[1], table
    # the contract's audit columns: NULL where 1.6 has none, from the local DATETIME where it has one
    assert wh_scalar(warehouse, "SELECT count(*) FROM raw_mis.m_client WHERE created_on_utc IS NOT NULL") == 0
    assert wh_scalar(warehouse, "SELECT count(*) FROM raw_mis.m_loan_transaction WHERE created_on_utc IS NULL") == 0

    quiet = extract(source, warehouse, "run_2")
    assert {t: quiet[t]["mode"] for t in HASHED} == {t: "hash" for t in HASHED}
    assert sum(m["rows_merged"] + m["rows_deleted"] for m in quiet.values()) == 0
    assert sum(quiet[t]["rows_read"] for t in HASHED) == 0, "an unchanged night reads no row"
    assert quiet["m_client"]["rows_hashed"] == CLIENTS

    client = source.scalar('SELECT max("id") FROM "m_client"')
    schedule_row = source.scalar('SELECT min("id") FROM "m_loan_repayment_schedule"')
    tx = source.scalar('SELECT max("id") FROM "m_loan_transaction"')
    source.execute(f'UPDATE "m_client" SET "staff_id" = NULL WHERE "id" = {client}')
    source.execute(f'DELETE FROM "m_loan_repayment_schedule" WHERE "id" = {schedule_row}')
    source.execute(f'INSERT INTO "m_loan_transaction" ("id", "loan_id", "office_id", "is_reversed", '
                   f'"transaction_type_enum", "transaction_date", "amount", "submitted_on_date", "created_by", "last_modified_by", '
                   f'"created_date") SELECT {tx + 1}, "loan_id", "office_id", false, 2, \'2024-07-01\', 10, '
                   f'\'2024-07-01\', "created_by", "last_modified_by", \'{LATER}\' FROM "m_loan_transaction" WHERE "id" = {tx}')
    night = extract(source, warehouse, "run_3")
    changed = {t: (m["rows_merged"], m["rows_deleted"]) for t, m in night.items() if m["rows_merged"] or m["rows_deleted"]}
    assert changed == {"m_client": (1, 0), "m_loan_repayment_schedule": (0, 1), "m_loan_transaction": (1, 0)}
    assert night["m_client"]["ranges_changed"] == 1
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("SELECT staff_id, _run_id FROM raw_mis.m_client WHERE id = %s", (client,)).fetchone() \
            == (None, "run_3")
        assert conn.execute("SELECT _deleted FROM raw_mis.m_loan_repayment_schedule WHERE id = %s",
                            (schedule_row,)).fetchone() == (True,)
        assert conn.execute("SELECT created_on_utc FROM raw_mis.m_loan_transaction WHERE id = %s",
                            (tx + 1,)).fetchone()[0] == dt.datetime(2024, 7, 1, 9, 15, tzinfo=dt.timezone.utc)
    # the reconciliation clock restarts for hash tables: they compared every key tonight
    assert sum(m["rows_merged"] + m["rows_deleted"] for m in extract(source, warehouse, "run_4").values()) == 0


@pytest.mark.parametrize("dialect", DIALECTS)
def test_legacy_datetimes_are_read_in_the_configured_zone(request, dialect, pg_server_url, demo_template, warehouse,
                                                          monkeypatch):
    source = _shaped(request, "fineract16", dialect, pg_server_url, demo_template, legacy_zone="Africa/Nairobi")
    monkeypatch.setenv("SPM_MIS_LEGACY_TIMEZONE", "Africa/Nairobi")
    extract(source, warehouse, "run_1")
    tx = source.scalar('SELECT max("id") FROM "m_loan_transaction"')
    local = source.scalar(f'SELECT "created_date" FROM "m_loan_transaction" WHERE "id" = {tx}')
    got = wh_scalar(warehouse, "SELECT created_on_utc FROM raw_mis.m_loan_transaction WHERE id = %s", (tx,))
    assert got == local.replace(tzinfo=dt.timezone(dt.timedelta(hours=3)))
    assert got.utcoffset() is not None


def test_a_misspelt_legacy_zone_is_a_one_line_error(request, pg_server_url, demo_template, warehouse, monkeypatch):
    source = _shaped(request, "fineract16", "postgresql", pg_server_url, demo_template)
    monkeypatch.setenv("SPM_MIS_LEGACY_TIMEZONE", "Africa/Nairobbi")
    with pytest.raises(ValueError, match=r"SPM_MIS_LEGACY_TIMEZONE='Africa/Nairobbi' is not a time zone name"):
        extract(source, warehouse, "run_1")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_unknown_version_is_refused_naming_the_tables(request, dialect, pg_server_url, demo_template, warehouse):
    source = _shaped(request, "fineract16", dialect, pg_server_url, demo_template)
    source.execute('ALTER TABLE "m_loan_transaction" DROP COLUMN "created_date"')
    with pytest.raises(SourceSchemaError) as err:
        extract(source, warehouse, "run_1")
    message = str(err.value)
    assert "unknown Fineract version" in message and "m_loan_transaction has no audit column" in message
    assert "\n" not in message


def test_the_run_report_names_the_version_and_how_each_table_was_read(request, pg_server_url, demo_template,
                                                                      warehouse, tmp_path):
    from spm_warehouse import report

    source = _shaped(request, "fineract16", "postgresql", pg_server_url, demo_template)
    extract(source, warehouse, "run_1")
    with psycopg.connect(warehouse) as conn:
        html = report.write_run_report(conn, "run_1", AS_OF, tmp_path).read_text()
    assert "Fineract 1.4-1.7 / Mifos X 18.x-21.x (no audit columns)" in html
    assert "by row hash (no audit column in this version): <code>m_client</code>" in html


def test_every_incremental_table_of_the_contract_has_a_shape_rule():
    """The shapes cover every table that has audit columns: a new one must be given its 1.6 form."""
    incremental = {t.name for t in TABLES if t.cursor}
    assert incremental == set(shapes.AUDITED_IN_1_8) | set(shapes.AUDITED_IN_1_9)
