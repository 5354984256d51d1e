"""A night tests the rows it wrote of the history-sized incremental models, and a bad row written
tonight still fails the build (macros/tests/nightly_test_scope.sql).

On the star world's second night (a few rows restamped as kept from night 1, as the rows of
unchanged loans are), the per-row tests of fct_portfolio_month read exactly the rows whose
_as_of_date/_cutoff_ts are tonight's; a row broken among them fails its test; a row broken among
night 1's rows is left to the night that wrote it (that night's scope catches it); tests across
rows (unique) and tests of other models still read every row.
"""

from __future__ import annotations

import json

import psycopg
import pytest
from star_world import NIGHT1, NIGHT2, clone_world

from spm_warehouse.build import run_dbt
from spm_warehouse.settings import parse_conn_uri

MART = "analytics_build.fct_portfolio_month"
RANGE_TEST = "accepted_range_fct_portfolio_month_days_in_arrears"
OPTED_IN = {"fct_loan_transaction", "fct_portfolio_month", "int_loan__balance_month", "int_kpi__loan_month",
            "fct_client_indicator"}
PER_ROW = {"not_null", "accepted_values", "accepted_range", "expression_is_true", "relationships"}


def dbt_test(url: str, as_of, tmp_path, select: str):
    target = tmp_path / "target"
    result = run_dbt(["test", "--select", select], parse_conn_uri("warehouse", url),
                     dbt_vars={"as_of_date": as_of.isoformat()}, target_path=target, log_path=target / "logs")
    assert result.results, result.log_tail[-3000:]
    return result


def status(result, prefix: str) -> tuple[str, int]:
    """(status, failures) of the one test whose name starts with prefix."""
    found = [(r["status"], r["failures"]) for r in result.results if r["unique_id"].split(".")[2].startswith(prefix)]
    assert len(found) == 1, (prefix, found)
    return found[0]


def compiled(tmp_path, name_prefix: str) -> str:
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    codes = [n.get("compiled_code") or "" for uid, n in manifest["nodes"].items()
             if uid.split(".")[2].startswith(name_prefix) and n["resource_type"] == "test"]
    assert len(codes) == 1, name_prefix
    return codes[0]


@pytest.fixture
def night2(star_world):
    name, url = clone_world(star_world, "test_scope")
    yield url
    with psycopg.connect(star_world.server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_night_tests_the_rows_it_wrote_and_a_bad_row_written_tonight_fails(night2, tmp_path):
    with psycopg.connect(night2, autocommit=True) as conn:
        # the world's second night rewrites every loan: restamp a few rows as kept from night 1
        # (what a night does to the rows of loans that did not change)
        conn.execute(f"""UPDATE {MART} SET _as_of_date = %s, _cutoff_ts = (%s::date + 1)::timestamp AT TIME ZONE 'UTC'
                         WHERE (loan_id, period_month) IN (SELECT loan_id, period_month FROM {MART}
                                                           ORDER BY period_month, loan_id LIMIT 5)""", (NIGHT1, NIGHT1))
        total, tonight = conn.execute(
            f"SELECT count(*), count(*) FILTER (WHERE _as_of_date = %s) FROM {MART}", (NIGHT2,)).fetchone()
        assert 0 < tonight < total

    clean = dbt_test(night2, NIGHT2, tmp_path, "fct_portfolio_month")
    assert {r["status"] for r in clean.results} == {"pass"}
    per_row = compiled(tmp_path, RANGE_TEST)
    assert f"_as_of_date = date '{NIGHT2}'" in per_row and "_cutoff_ts =" in per_row
    # the scope the per-row test reads is exactly tonight's rows
    scope_sql = per_row[per_row.index("(select * from"):per_row.index(") dbt_subquery") + 1]
    with psycopg.connect(night2, autocommit=True) as conn:
        assert conn.execute(f"SELECT count(*) FROM {scope_sql} s").fetchone()[0] == tonight

        # a row of night 1 broken: tonight's build does not read it again ...
        conn.execute(f"""UPDATE {MART} SET days_in_arrears = -1
                         WHERE (loan_id, period_month) = (SELECT loan_id, period_month FROM {MART}
                                                          WHERE _as_of_date = %s ORDER BY 1, 2 LIMIT 1)""", (NIGHT1,))
    assert status(dbt_test(night2, NIGHT2, tmp_path, "fct_portfolio_month"), RANGE_TEST) == ("pass", 0)
    # ... the night that wrote it does (its scope is its rows)
    assert status(dbt_test(night2, NIGHT1, tmp_path, "fct_portfolio_month"), RANGE_TEST) == ("fail", 1)

    # a bad row written tonight fails tonight's build
    with psycopg.connect(night2, autocommit=True) as conn:
        conn.execute(f"""UPDATE {MART} SET days_in_arrears = -1
                         WHERE (loan_id, period_month) = (SELECT loan_id, period_month FROM {MART}
                                                          WHERE _as_of_date = %s ORDER BY 1, 2 LIMIT 1)""", (NIGHT2,))
    assert status(dbt_test(night2, NIGHT2, tmp_path, "fct_portfolio_month"), RANGE_TEST) == ("fail", 1)


def test_only_per_row_tests_of_opted_in_models_are_scoped(night2, tmp_path):
    dbt_test(night2, NIGHT2, tmp_path, "fct_loan_transaction fct_portfolio_month fct_loan int_loan__lifecycle")
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    seen = set()
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test" or not node.get("compiled_code"):
            continue
        attached = (node.get("attached_node") or "").split(".")[-1]
        kind = (node.get("test_metadata") or {}).get("name")
        expected = attached in OPTED_IN and kind in PER_ROW
        assert ("_cutoff_ts =" in node["compiled_code"]) == expected, (node["name"], attached, kind)
        seen.add((attached in OPTED_IN, kind in PER_ROW))
    # scoped per-row tests of the opted-in models; every test of the other models reads every row
    assert {(True, True), (False, True), (False, False)} <= seen, seen


def test_uniqueness_of_the_scoped_models_is_held_by_unique_indexes(night2):
    """Their keys' uniqueness is not left to a scoped test: a unique index refuses a duplicate at every write.

    The versioned facts (views of history.<fact>__versions) hold it on their current rows: a partial
    unique index on the rows the view of the build shows.
    """
    current = " WHERE (_valid_to = '9223372036854775807'::bigint)"
    keys = {("history", "fct_loan_transaction__versions"): "(transaction_id)" + current,
            ("history", "fct_portfolio_month__versions"): "(loan_id, period_month)" + current,
            ("intermediate", "int_loan__balance_month"): "(loan_id, period_month)",
            ("intermediate", "int_kpi__loan_month"): "(loan_id, period_month, kind)",
            ("history", "fct_client_indicator__versions"): "(client_id, indicator_code, instance_id)" + current}
    assert {t.removesuffix("__versions") for _, t in keys} == OPTED_IN
    with psycopg.connect(night2, autocommit=True) as conn:
        for (schema, table), key in keys.items():
            defs = [r[0] for r in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s", (schema, table))]
            assert any("UNIQUE" in d and d.endswith(key) for d in defs), (table, defs)
