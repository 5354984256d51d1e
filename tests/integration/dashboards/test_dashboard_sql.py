"""Dashboards as code on a real PostgreSQL: the datasets' SQL and metrics, branch roles against meta.branch_access.

The database holds the analytics contract schema with a few rows
(fixtures/dashboards_fake_warehouse.py); the asset checks that need no
database are in tests/unit/dashboards/test_dashboards.py.
"""

from __future__ import annotations

import uuid

import dashboards_fake_warehouse as fake  # tests/fixtures is on sys.path (pyproject.toml)
import psycopg
import pytest
import yaml
from dashboards_assets import DATASETS
from databases import create_database, drop_database
from psycopg import sql

from dashboards import access, bundle, import_values


@pytest.fixture(scope="module")
def contract_db(pg_server_url):
    name = f"spm_test_dashboards_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_server_url, name)
    with psycopg.connect(url) as conn:
        fake.create_fake_analytics(conn)
    yield url
    drop_database(pg_server_url, name)


def bundled_datasets() -> dict[str, dict]:
    """The datasets as the import bundle hands them to Superset (settings filled into metric expressions)."""
    values = {"WAREHOUSE_USERINFO": "bi_reader", "WAREHOUSE_HOST": "h", "WAREHOUSE_PORT": "1", "WAREHOUSE_DB": "d"}
    return {rel: yaml.safe_load(text) for rel, text in bundle.bundle_contents(values, currency="UGX").items()
            if rel.startswith("datasets/")}


def test_datasets_run_on_postgresql(contract_db):
    """Every dataset column, calculated column and metric is valid SQL on the analytics contract schema."""
    assert len(bundled_datasets()) == len(DATASETS)
    with psycopg.connect(contract_db) as conn:
        for name, ds in bundled_datasets().items():
            source = (sql.SQL("({}) AS virtual").format(sql.SQL(ds["sql"])) if ds.get("sql")
                      else sql.Identifier(ds["schema"], ds["table_name"]))
            exprs = [sql.SQL(c["expression"]) if c.get("expression") else sql.Identifier(c["column_name"])
                     for c in ds["columns"]]
            exprs += [sql.SQL(m["expression"]) for m in ds["metrics"]]
            if ds["metrics"]:  # aggregate metrics next to grouped columns, as Superset does
                query = sql.SQL("SELECT {} FROM {} GROUP BY {}").format(
                    sql.SQL(", ").join(exprs), source,
                    sql.SQL(", ").join(sql.SQL(str(i + 1)) for i in range(len(ds["columns"]))))
            else:
                query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(exprs), source)
            try:
                conn.execute(query).fetchall()
            except psycopg.Error as exc:
                pytest.fail(f"{name}: {exc}")
            conn.rollback()
            if ds["main_dttm_col"]:
                assert ds["main_dttm_col"] in {c["column_name"] for c in ds["columns"] if c["is_dttm"]}, name


def test_metrics_compute_the_contract_kpis(contract_db):
    """The ratio metrics re-aggregate correctly: PAR30 ratio and women share of the whole institution."""
    ds = next(d for d in DATASETS.values() if d["table_name"] == "kpi_branch_month")
    metric = {m["metric_name"]: m["expression"] for m in ds["metrics"]}
    with psycopg.connect(contract_db) as conn:
        got = conn.execute(sql.SQL("SELECT {}, {} FROM analytics.kpi_branch_month WHERE period_end = '2024-06-30'")
                           .format(sql.SQL(metric["par30_ratio"]), sql.SQL(metric["women_share"]))).fetchone()
        want = conn.execute("SELECT sum(par30_principal) / sum(gross_loan_portfolio), "
                            "sum(women_borrowers)::numeric / sum(active_borrowers) "
                            "FROM analytics.kpi_branch_month WHERE period_end = '2024-06-30'").fetchone()
    assert [round(float(v), 10) for v in got] == [round(float(v), 10) for v in want]


def test_retention_metric_reproduces_the_contract_rate(contract_db):
    """Summed over one branch and period, the retention metric gives back the published retention_rate."""
    ds = next(d for d in DATASETS.values() if d["table_name"] == "kpi_branch_month")
    metric = next(m["expression"] for m in ds["metrics"] if m["metric_name"] == "retention_rate")
    with psycopg.connect(contract_db) as conn:
        rows = conn.execute(sql.SQL("SELECT branch_id, period_end, {}, max(retention_rate) "
                                    "FROM analytics.kpi_branch_month GROUP BY 1, 2").format(sql.SQL(metric))).fetchall()
    assert rows and all(round(float(a), 10) == round(float(b), 10) for _, _, a, b in rows)



# ---------------------------------------------------------------- branch access


def test_branch_roles_are_checked_against_meta_branch_access(contract_db):
    roles = access.parse_branch_roles({"branch_roles": [
        {"name": "Gulu", "branch_ids": [2], "warehouse_role": "bm_gulu"},
        {"name": "North", "branch_ids": [2, 3], "warehouse_role": "bm_north"},
        {"name": "Ghost", "branch_ids": [9], "warehouse_role": "bm_ghost"},
        {"name": "Superset only", "branch_ids": [1]},
    ]})
    with psycopg.connect(contract_db) as conn:
        conn.execute("DROP SCHEMA IF EXISTS meta CASCADE")
        assert access.warehouse_branch_access(conn) is None
        conn.execute("CREATE SCHEMA meta")
        conn.execute("CREATE TABLE meta.branch_access (role_name text, branch_id bigint)")
        conn.execute("INSERT INTO meta.branch_access VALUES ('bm_gulu', 2), ('bm_north', 2)")
        mapping = access.warehouse_branch_access(conn)
        conn.rollback()
    problems = access.check_against_warehouse(roles, mapping)
    assert len(problems) == 2
    assert "'North'" in problems[0] and "[2, 3]" in problems[0] and "[2]" in problems[0]
    assert "'Ghost'" in problems[1] and "no row" in problems[1]
    assert access.check_against_warehouse(roles[:1], mapping) == []


def test_yearly_retention_metric_gives_the_branch_rate_and_rolls_branches_up(contract_db):
    """One branch and month: the published retention_rate_12m; all branches: their summed parts."""
    ds = next(d for d in DATASETS.values() if d["table_name"] == "kpi_branch_month")
    metric = next(m["expression"] for m in ds["metrics"] if m["metric_name"] == "retention_rate_12m")
    with psycopg.connect(contract_db) as conn:
        rows = conn.execute(sql.SQL("SELECT branch_id, period_end, {}, max(retention_rate_12m) "
                                    "FROM analytics.kpi_branch_month GROUP BY 1, 2").format(sql.SQL(metric))).fetchall()
        rolled = conn.execute(sql.SQL("SELECT {} FROM analytics.kpi_branch_month WHERE period_end = '2024-06-30'")
                              .format(sql.SQL(metric))).fetchone()[0]
        parts = conn.execute(
            """SELECT sum(k.active_clients)::numeric / sum(y.active_clients + n.new_12)
               FROM analytics.kpi_branch_month k
               JOIN analytics.kpi_branch_month y ON y.branch_id = k.branch_id AND y.period_end = date '2023-06-30'
               JOIN (SELECT branch_id, sum(new_clients) AS new_12 FROM analytics.kpi_branch_month
                     WHERE period_end > date '2023-06-30' GROUP BY 1) n ON n.branch_id = k.branch_id
               WHERE k.period_end = date '2024-06-30'""").fetchone()[0]
    with_rate = [r for r in rows if r[3] is not None]
    assert with_rate and all(round(float(a), 10) == round(float(b), 10) for _, _, a, b in with_rate)
    assert all(a is None for _, _, a, b in rows if b is None)  # fewer than twelve earlier months: no rate
    assert round(float(rolled), 10) == round(float(parts), 10)


def test_import_values_read_the_currency_and_branch_colours_from_analytics(contract_db, monkeypatch):
    monkeypatch.delenv("SPM_REPORTING_CURRENCY", raising=False)
    with psycopg.connect(contract_db) as conn:
        values = import_values.read_import_values(conn)
        assert values.currency == fake.REPORTING_CURRENCY
        names = [r[0] for r in conn.execute("SELECT branch_name FROM analytics.dim_branch "
                                            "ORDER BY branch_id < 0, NOT is_leaf, branch_id")]
        assert names[:3] == ["Gulu", "Mbarara", "Lira"] and names[-1] == "Unknown"
        assert [values.label_colors[n] for n in names] == list(import_values.PALETTE[:len(names)])
        conn.execute("UPDATE analytics.dim_product SET currency_code = 'KES' WHERE product_id = 2")
        several = import_values.read_import_values(conn)
        assert several.currency is None and "several currencies" in several.notes[0]
        monkeypatch.setenv("SPM_REPORTING_CURRENCY", "USD")
        assert import_values.read_import_values(conn).currency == "USD"
        conn.rollback()


def test_regions_expand_to_their_leaf_branches(contract_db):
    with psycopg.connect(contract_db) as conn:
        regions = access.region_branches(conn)
    want = {}
    for office_id, _name, _parent, region_id, _region, leaf in fake.OFFICES:
        if leaf:
            want.setdefault(region_id, set()).add(office_id)
    assert regions == want and regions[10] == {2, 4}


def test_outcome_means_of_small_cells_are_empty_and_n_stays(contract_db, monkeypatch):
    """A mean over fewer clients than SPM_MIN_CELL_N is not shown; the n next to it is."""
    monkeypatch.setenv("SPM_MIN_CELL_N", "6")
    ds = bundled_datasets()["datasets/SPM_warehouse/kpi_client_outcomes.yaml"]
    metric = {m["metric_name"]: m["expression"] for m in ds["metrics"]}
    query = sql.SQL("SELECT branch_id, {}, {} FROM analytics.kpi_client_outcomes "
                    "WHERE gender = 'female' AND area = 'rural' AND poverty_band_at_entry = 'unknown' AND product_id = 1 "
                    "GROUP BY 1 ORDER BY 1").format(sql.SQL(metric["clients_income"]), sql.SQL(metric["avg_income_change"]))
    with psycopg.connect(contract_db) as conn:
        rows = conn.execute(query).fetchall()
    # the fake has 4 + branch_id clients per cell (6, 7, 8): at a minimum of 6 every mean shows
    assert [(b, n) for b, n, _ in rows] == [(2, 6), (3, 7), (4, 8)]
    assert all(mean is not None for _, _, mean in rows)
    monkeypatch.setenv("SPM_MIN_CELL_N", "7")
    ds = bundled_datasets()["datasets/SPM_warehouse/kpi_client_outcomes.yaml"]
    metric = {m["metric_name"]: m["expression"] for m in ds["metrics"]}
    with psycopg.connect(contract_db) as conn:
        rows = conn.execute(sql.SQL("SELECT branch_id, {}, {} FROM analytics.kpi_client_outcomes "
                                    "WHERE gender = 'female' AND area = 'rural' AND poverty_band_at_entry = 'unknown' "
                                    "AND product_id = 1 GROUP BY 1 ORDER BY 1").format(
            sql.SQL(metric["clients_income"]), sql.SQL(metric["avg_income_change"]))).fetchall()
    assert [(b, n, mean is None) for b, n, mean in rows] == [(2, 6, True), (3, 7, False), (4, 8, False)]
