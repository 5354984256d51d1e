"""SPM data kept in the MIS: the survey module's tables and mapped datatables, extracted from PostgreSQL and MariaDB.

The source is the demo MIS with tools/demo/fineract_spm.py's additions (a PPI survey in Fineract's survey
module, answers for some clients, a client_spm datatable with a contact name that must never be read).
"""

from __future__ import annotations

import datetime as dt
import hashlib

import psycopg
import pytest
from databases import conn_uri_for

from spm_warehouse import pipeline
from spm_warehouse.settings import ConnInfo, parse_conn_uri
from spm_warehouse.sources import fineract as mis
from spm_warehouse.sources import fineract_datatables as datatables
from spm_warehouse.sources import fineract_tables as tables
from tools.demo import fineract as demo
from tools.demo import fineract_spm

AS_OF = dt.date(2024, 6, 30)
CLIENTS = 60
SURVEY_TABLES = ("m_surveys", "m_survey_components", "m_survey_questions", "m_survey_responses",
                 "m_survey_lookup_tables", "m_survey_scorecards")
MAPPED = ("household_size", "monthly_income", "area", "business_type")  # seeds/datatable_indicator_map.csv


@pytest.fixture
def spm_source(fresh_database) -> tuple[str, dict[str, int]]:
    url = fresh_database("spm_src")
    with psycopg.connect(url) as conn:
        demo.build_demo_mis(conn, clients=CLIENTS, seed=5, as_of=AS_OF)
        counts = fineract_spm.add_mis_surveys(conn, seed=5, as_of=AS_OF)
    return url, counts


@pytest.fixture
def warehouse(fresh_database) -> str:
    return fresh_database("spm_wh")


def extract_all(info: ConnInfo, wh_url: str, run_id: str) -> tuple[dict[str, dict], list[dict]]:
    """extract_mis, which extracts the mapped datatables in its own source snapshot too."""
    with psycopg.connect(wh_url) as wh:
        manifest = mis.extract_mis(info, wh, run_id=run_id, as_of=AS_OF)
    dt_manifest = [m for m in manifest if m["table_name"].startswith("datatable:")]
    return {m["table_name"]: m for m in manifest}, dt_manifest


def q(url: str, sql: str, params=None) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def digest(url: str, table: str, cols: list[str]) -> str:
    rows = q(url, f"SELECT {', '.join(cols)} FROM {table} ORDER BY 1, 2, 3")
    return hashlib.md5(repr(rows).encode()).hexdigest()


def check_loaded(src_counts: dict[str, int], wh_url: str, manifest: dict[str, dict], dt_manifest: list[dict]) -> None:
    for name in SURVEY_TABLES:
        assert manifest[name]["mode"] == "initial", name
        assert manifest[name]["rows_read"] == src_counts[name] > 0, name
        assert q(wh_url, f"SELECT count(*) FROM raw_mis.{name}")[0][0] == src_counts[name], name
    raw_cols = {r[0] for r in q(wh_url, "SELECT column_name FROM information_schema.columns "
                                        "WHERE table_schema = 'raw_mis' AND table_name = 'm_survey_scorecards'")}
    assert "user_id" not in raw_cols and "created_on" in raw_cols
    # datatables: exactly the mapped columns of every client_spm row, nothing else (no contact_person)
    assert [(m["table_name"], m["mode"], m["rows_read"]) for m in dt_manifest] == [
        ("datatable:client_spm", "snapshot", src_counts["client_spm"])]
    got = dict(q(wh_url, "SELECT column_name, count(*) FROM raw_mis.datatable_values GROUP BY 1"))
    assert got == {c: src_counts["client_spm"] for c in MAPPED}
    assert q(wh_url, "SELECT count(*) FROM raw_mis.datatable_values WHERE value_text LIKE 'Demo contact%%'") == [(0,)]
    manifest_rows = q(wh_url, "SELECT mode FROM meta.load_manifest WHERE table_name = 'datatable:client_spm'")
    assert manifest_rows == [("snapshot",)]


def test_postgresql_survey_module_and_datatables_are_extracted(spm_source, warehouse):
    url, counts = spm_source
    manifest, dt_manifest = extract_all(parse_conn_uri("mis_fineract", url), warehouse, "run_pg")
    check_loaded(counts, warehouse, manifest, dt_manifest)
    # values as the source holds them (numbers in plain notation)
    src = q(url, "SELECT client_id, household_size, monthly_income, area, business_type FROM client_spm ORDER BY 1")
    client_id, size, income, area, business = src[0]
    got = dict(q(warehouse, "SELECT column_name, value_text FROM raw_mis.datatable_values "
                            "WHERE datatable = 'client_spm' AND entity_id = %s", (client_id,)))
    assert got == {"household_size": str(size), "monthly_income": str(int(income)), "area": area,
                   "business_type": business}
    # a rerun on an unchanged source writes nothing
    _, dt_manifest = extract_all(parse_conn_uri("mis_fineract", url), warehouse, "run_pg_again")
    assert (dt_manifest[0]["rows_read"], dt_manifest[0]["rows_merged"], dt_manifest[0]["rows_deleted"]) == (
        counts["client_spm"], 0, 0)
    # a second night merges the datatable's changes: an edited value, a deleted row (its four values)
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE client_spm SET household_size = 42 WHERE client_id = %s", (client_id,))
        conn.execute("DELETE FROM client_spm WHERE client_id = %s", (src[1][0],))
    _, dt_manifest = extract_all(parse_conn_uri("mis_fineract", url), warehouse, "run_pg_2")
    assert (dt_manifest[0]["rows_read"], dt_manifest[0]["rows_merged"], dt_manifest[0]["rows_deleted"]) == (
        counts["client_spm"] - 1, 1, len(MAPPED))
    assert q(warehouse, "SELECT _run_id FROM raw_mis.datatable_values WHERE entity_id = %s "
                        "AND column_name = 'household_size'", (client_id,)) == [("run_pg_2",)]
    assert q(warehouse, "SELECT value_text FROM raw_mis.datatable_values WHERE entity_id = %s "
                        "AND column_name = 'household_size'", (client_id,)) == [("42",)]
    assert q(warehouse, "SELECT count(*) FROM raw_mis.datatable_values WHERE entity_id = %s", (src[1][0],)) == [(0,)]


def test_a_mapped_column_missing_in_the_source_is_a_one_line_error_naming_it(spm_source, warehouse):
    url, _ = spm_source
    with psycopg.connect(url) as conn:
        conn.execute("ALTER TABLE client_spm DROP COLUMN business_type")
    with pytest.raises(datatables.DatatableError) as err:
        extract_all(parse_conn_uri("mis_fineract", url), warehouse, "run_missing")
    message = str(err.value)
    assert "client_spm.business_type is missing" in message and "\n" not in message
    # nothing of the datatable was written
    assert q(warehouse, "SELECT count(*) FROM raw_mis.datatable_values") == [(0,)]


def test_an_absent_datatable_is_skipped_with_an_absent_manifest_row(fresh_database, warehouse):
    url = fresh_database("plain_src")
    with psycopg.connect(url) as conn:
        demo.build_demo_mis(conn, clients=10, seed=5, as_of=AS_OF)  # no survey module, no datatable
    manifest, dt_manifest = extract_all(parse_conn_uri("mis_fineract", url), warehouse, "run_plain")
    assert [(m["table_name"], m["mode"]) for m in dt_manifest] == [("datatable:client_spm", "absent")]
    assert all(manifest[name]["mode"] == "absent" for name in SURVEY_TABLES)
    assert q(warehouse, "SELECT count(*) FROM raw_mis.m_survey_scorecards") == [(0,)]


@pytest.mark.mariadb
def test_mariadb_gives_the_same_raw_tables_as_postgresql(spm_source, mariadb_database, fresh_database):
    url, counts = spm_source
    conn, dbname = mariadb_database
    with psycopg.connect(url) as pg:
        demo.copy_to_mysql(pg, conn)
        copied = fineract_spm.copy_spm_to_mysql(pg, conn)
    assert copied == counts
    info = ConnInfo("mis_fineract", "mariadb", "127.0.0.1", 3306, "root", "", dbname, {})
    wh_pg, wh_my = fresh_database("spm_wh_pg"), fresh_database("spm_wh_my")
    extract_all(parse_conn_uri("mis_fineract", url), wh_pg, "run_pg")
    manifest, dt_manifest = extract_all(info, wh_my, "run_my")
    assert manifest["m_survey_scorecards"]["source"] == "mis_fineract:mysql"
    check_loaded(counts, wh_my, manifest, dt_manifest)
    for name in SURVEY_TABLES:
        cols = tables.TABLES_BY_NAME[name].column_names
        assert digest(wh_pg, f"raw_mis.{name}", cols) == digest(wh_my, f"raw_mis.{name}", cols), name
    cols = ["datatable", "entity", "entity_id", "row_id", "column_name", "value_text"]
    assert digest(wh_pg, "raw_mis.datatable_values", cols) == digest(wh_my, "raw_mis.datatable_values", cols)
    # the missing-column error from MariaDB too
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE client_spm DROP COLUMN area")
    conn.commit()
    with pytest.raises(datatables.DatatableError, match=r"column client_spm\.area is missing"):
        extract_all(info, wh_my, "run_my_missing")


def test_the_extract_stage_lands_the_datatables_once(spm_source, warehouse, monkeypatch):
    """pipeline.extract_mis (the DAG's extract task) extracts the mapped datatables after the MIS tables."""
    url, counts = spm_source
    monkeypatch.setenv("AIRFLOW_CONN_MIS_FINERACT", conn_uri_for(url))
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", conn_uri_for(warehouse))
    result = pipeline.extract_mis("stage_run", AS_OF)
    assert result["tables"] == len(tables.TABLES) + 1
    assert q(warehouse, "SELECT mode, rows_read FROM meta.load_manifest WHERE run_id = 'stage_run' "
                        "AND table_name = 'datatable:client_spm'") == [("snapshot", counts["client_spm"])]
    assert q(warehouse, "SELECT count(*) FROM raw_mis.datatable_values") == [(counts["client_spm"] * len(MAPPED),)]


def test_a_datatable_registered_for_another_entity_is_a_one_line_error(spm_source, warehouse):
    url, _ = spm_source
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE x_registered_table SET application_table_name = 'm_loan' "
                     "WHERE registered_table_name = 'client_spm'")
    with pytest.raises(datatables.DatatableError) as err:
        extract_all(parse_conn_uri("mis_fineract", url), warehouse, "run_wrong_entity")
    assert "datatable client_spm is registered for m_loan, mapped as a client datatable (m_client)" in str(err.value)
    assert "\n" not in str(err.value)
