"""How the runner hands per-run values to dbt (plugins/spm_warehouse/build.py).

The as-of date changes every night. Passed in --vars it would force dbt to
re-parse the whole project on every run; the runner passes it in the
environment instead, and the project reads it only while executing.
"""

from __future__ import annotations

import logging
import os
import re
import sys

from spm_warehouse import build as dbt_runner
from spm_warehouse.build import DBT_PROJECT_DIR, DbtResult, failure_summary, run_dbt
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


def test_the_pseudonym_key_is_read_while_executing_not_parsing(star_world, tmp_path, monkeypatch):
    """Another SPM_PSEUDONYM_KEY changes the pseudonym without a re-parse; a missing key stops dbt clearly."""
    def compiled(key: str) -> DbtResult:
        monkeypatch.setenv("SPM_PSEUDONYM_KEY", key)
        return run_dbt(["compile", "--inline", "select {{ account_pseudonym(\"'000000042'\") }} as p"],
                       parse_conn_uri("warehouse", star_world.url), dbt_vars={"as_of_date": "2024-06-30"},
                       target_path=tmp_path / "target", log_path=tmp_path / "logs")

    first, second = compiled("a" * 40), compiled("b" * 40)
    assert first.success and second.success, second.log_tail
    assert "a" * 40 in first.log_tail and "b" * 40 in second.log_tail  # the key of each run, read at execution
    log = (tmp_path / "logs" / "dbt.log").read_text()
    assert "Unable to do partial parsing" not in log.split("Running with dbt=")[-1]
    short = compiled("too-short")
    assert not short.success
    assert "SPM_DBT_PSEUDONYM_KEY is not set (or shorter than 32 characters)" in short.log_tail, short.log_tail


def test_an_as_of_date_typed_in_vars_by_hand_still_works(star_world, tmp_path):
    """Last in this file: other vars mean a full re-parse, which the cases above need not pay."""
    out = compiled_as_of(star_world, tmp_path, ["--vars", '{"as_of_date": "2023-03-31"}'], None)
    assert "date '2023-03-31'" in out, out


def test_only_the_as_of_macros_read_the_as_of_var():
    """A model reading var('as_of_date') would get the project default, not the night's date, under the runner."""


    pattern = re.compile(r"""var\(\s*['"]as_of_date['"]""")
    offenders = [str(p.relative_to(DBT_PROJECT_DIR)) for p in DBT_PROJECT_DIR.rglob("*.sql")
                 if p.name != "core_as_of.sql" and "target" not in p.parts and pattern.search(p.read_text())]
    assert offenders == [], f"use core_as_of_date() / core_as_of_string() instead of var('as_of_date') in {offenders}"


def test_dbt_output_reaches_the_log_while_dbt_runs(tmp_path):
    """The child writes one line, then waits until the log has shown it: captured output would deadlock here."""


    seen = tmp_path / "seen"
    child = ("import os, sys, time\n"
             "print('1 of 3 START sql table model analytics_build.dim_client', flush=True)\n"
             f"deadline = time.time() + 20\n"
             f"while not os.path.exists({str(seen)!r}) and time.time() < deadline: time.sleep(0.05)\n"
             f"print('streamed' if os.path.exists({str(seen)!r}) else 'buffered', flush=True)\n")

    class Marker(logging.Handler):
        def emit(self, record):
            if "START sql table model" in record.getMessage():
                seen.touch()

    handler = Marker()
    dbt_runner.log.addHandler(handler)
    old_level = dbt_runner.log.level
    dbt_runner.log.setLevel(logging.INFO)
    try:
        returncode, tail = dbt_runner._stream([sys.executable, "-c", child], dict(os.environ))
    finally:
        dbt_runner.log.removeHandler(handler)
        dbt_runner.log.setLevel(old_level)
    assert returncode == 0
    assert tail.splitlines()[-1] == "streamed", tail


def test_the_build_log_ends_with_what_failed_by_name(tmp_path):

    result = DbtResult(command=["dbt", "build"], returncode=1, target_path=tmp_path, results=[
        {"unique_id": "model.spm_warehouse.fct_loan", "status": "success", "failures": None, "message": "SELECT 9"},
        {"unique_id": "model.spm_warehouse.kpi_branch_month", "status": "error", "failures": None,
         "message": "Database Error in model kpi_branch_month\n  division by zero"},
        {"unique_id": "test.spm_warehouse.not_null_dim_client_client_id.3a1", "status": "fail", "failures": 4,
         "message": "Got 4 results"},
        {"unique_id": "test.spm_warehouse.accepted_values_x.9", "status": "warn", "failures": 2, "message": "Got 2"},
    ])
    lines = failure_summary(result)
    assert lines[0].startswith("dbt summary: {'success': 1, 'error': 1, 'fail': 1, 'warn': 1}")
    assert "  failed: model kpi_branch_month: Database Error in model kpi_branch_month" in lines
    assert "  failed: test not_null_dim_client_client_id.3a1: 4 failing rows" in lines
    assert "  warned: test accepted_values_x.9: 2 failing rows" in lines
    assert not any("fct_loan" in line for line in lines)
