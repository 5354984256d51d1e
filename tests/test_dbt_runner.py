"""How the runner hands per-run values to dbt (plugins/spm_warehouse/dbt_runner.py).

The as-of date changes every night. Passed in --vars it would force dbt to
re-parse the whole project on every run; the runner passes it in the
environment instead, and the project reads it only while executing.
"""

from __future__ import annotations

import pytest

from spm_warehouse.dbt_runner import run_dbt
from spm_warehouse.settings import parse_conn_uri



def test_the_second_night_reuses_the_first_nights_parse(star_world):
    """star_world ran dbt for two as-of dates in one target folder."""
    log = (star_world.tmp / "target" / "logs" / "dbt.log").read_text()
    runs = log.split("Running with dbt=")[1:]
    assert len(runs) >= 2, "star_world ran dbt twice"
    assert "Unable to do partial parsing" not in runs[1], runs[1][:3000]


def compiled_as_of(world, tmp_path, args: list[str], dbt_vars: dict | None) -> str:
    result = run_dbt(["compile", "--quiet", "--inline", "select {{ core_as_of_date() }} as d", *args],
                     parse_conn_uri("warehouse", world.url), dbt_vars=dbt_vars,
                     target_path=tmp_path / "target", log_path=tmp_path / "logs")
    assert result.success, result.log_tail
    return result.log_tail


def test_the_runner_passes_the_as_of_date_to_the_models(star_world, tmp_path):
    out = compiled_as_of(star_world, tmp_path, [], {"as_of_date": "2023-03-31"})
    assert "date '2023-03-31'" in out, out


def test_a_malformed_as_of_date_is_a_clear_error(star_world, tmp_path):
    result = run_dbt(["compile", "--inline", "select {{ core_as_of_date() }}"],
                     parse_conn_uri("warehouse", star_world.url), dbt_vars={"as_of_date": "31/03/2023"},
                     target_path=tmp_path / "target", log_path=tmp_path / "logs")
    assert not result.success
    assert "as_of_date must be YYYY-MM-DD, got '31/03/2023'" in result.log_tail, result.log_tail


def test_an_as_of_date_typed_in_vars_by_hand_still_works(star_world, tmp_path):
    """Last in this file: other vars mean a full re-parse, which the cases above need not pay."""
    out = compiled_as_of(star_world, tmp_path, ["--vars", '{"as_of_date": "2023-03-31"}'], None)
    assert "date '2023-03-31'" in out, out


def test_only_the_as_of_macros_read_the_as_of_var():
    """A model reading var('as_of_date') would get the project default, not the night's date, under the runner."""
    import re

    from spm_warehouse.dbt_runner import DBT_PROJECT_DIR

    pattern = re.compile(r"""var\(\s*['"]as_of_date['"]""")
    offenders = [str(p.relative_to(DBT_PROJECT_DIR)) for p in DBT_PROJECT_DIR.rglob("*.sql")
                 if p.name != "core_as_of.sql" and "target" not in p.parts and pattern.search(p.read_text())]
    assert offenders == [], f"use core_as_of_date() / core_as_of_string() instead of var('as_of_date') in {offenders}"
