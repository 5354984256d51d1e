"""The same business data gives the same published marts, whatever Fineract it comes from (issue 14).

One seed, three databases: the current schema (PostgreSQL), a database upgraded to 1.8/1.9
whose older rows hold NULL audit columns (PostgreSQL), and Fineract 1.6 without audit
columns on MariaDB, its legacy DATETIMEs in a non-UTC zone. Each is extracted into its own
warehouse and built by dbt; every mart must be row-for-row identical.
"""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from databases import create_database, drop_database, unique_name
from star_world import MARTS, dbt, fingerprint

from spm_warehouse.settings import ConnInfo, parse_conn_uri
from spm_warehouse.sources import fineract as mis
from spm_warehouse.sources import kobo
from tools.demo import fineract as demo
from tools.demo import shapes

AS_OF = dt.date(2024, 6, 30)
CLIENTS = 120
LEGACY_ZONE = "Africa/Nairobi"


def build_marts(pg_server_url: str, info: ConnInfo, tmp, label: str) -> tuple[str, str, dict]:
    name = unique_name(f"shape_wh_{label}")
    url = create_database(pg_server_url, name)
    with psycopg.connect(url) as wh:
        kobo.ensure_raw_kobo_schema(wh)  # no surveys here: the marts compared come from the MIS
        wh.commit()
        manifest = mis.extract_mis(info, wh, run_id=f"run_{label}", as_of=AS_OF)
    dbt(url, AS_OF, tmp / label, args=["seed"])
    dbt(url, AS_OF, tmp / label, args=["run"])
    return name, url, {m["table_name"]: m["mode"] for m in manifest}


@pytest.mark.mariadb
def test_current_upgraded_and_fineract16_sources_publish_identical_marts(pg_server_url, mariadb_database,
                                                                        tmp_path, monkeypatch):
    monkeypatch.setenv("SPM_MIS_LEGACY_TIMEZONE", LEGACY_ZONE)
    made: list[str] = []
    try:
        current = unique_name("shape_current")
        current_url = create_database(pg_server_url, current)
        made.append(current)
        with psycopg.connect(current_url) as conn:
            demo.build_demo_mis(conn, clients=CLIENTS, seed=5, as_of=AS_OF)
        upgraded = unique_name("shape_upgraded")
        upgraded_url = create_database(pg_server_url, upgraded, template=current)
        made.append(upgraded)
        with psycopg.connect(upgraded_url) as conn:
            assert shapes.apply_shape_postgres(conn, "upgraded", AS_OF)
        my_conn, my_db = mariadb_database
        with psycopg.connect(current_url) as pg:
            demo.copy_to_mysql(pg, my_conn)
        assert shapes.apply_shape_mysql(my_conn, "fineract16", AS_OF, LEGACY_ZONE)

        sources = {
            "current": parse_conn_uri("mis_fineract", current_url),
            "upgraded": parse_conn_uri("mis_fineract", upgraded_url),
            "fineract16": ConnInfo("mis_fineract", "mariadb", "127.0.0.1", 3306, "root", "", my_db, {}),
        }
        prints, modes = {}, {}
        for label, info in sources.items():
            name, url, modes[label] = build_marts(pg_server_url, info, tmp_path, label)
            made.append(name)
            prints[label] = fingerprint(url, "analytics_build", MARTS)
    finally:
        for name in made:
            drop_database(pg_server_url, name)

    assert modes["fineract16"]["m_loan"] == "initial"
    assert len(prints["current"]["fct_loan"]) > 100 and len(prints["current"]["kpi_branch_month"]) > 10
    for label in ("upgraded", "fineract16"):
        for table in MARTS:
            assert prints[label][table] == prints["current"][table], f"{label}: {table} differs from current"
