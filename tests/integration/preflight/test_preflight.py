"""Bad configuration stops the night before extraction, with one line naming the setting.

Each wrong setting of the issue (an unknown scorecard, an empty poverty line, a
branch-access file naming an unknown branch, a malformed AIRFLOW_CONN_*) is
tried through the preflight stage as the DAG runs it, and through `make run`'s
command line, which must print one line and no traceback, and extract nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date

import psycopg
import pytest
from gate_tiny_warehouse import build_raw
from project import ROOT

from spm_warehouse import pipeline, preflight

AS_OF = date(2024, 6, 30)
GOOD_VARS = {"ppi_default_scorecard": "DEMO_SYNTH_2024", "ppi_poverty_line": "national"}


@pytest.fixture
def warehouse(fresh_database, monkeypatch, tmp_path):
    """A warehouse whose raw_mis.m_office has branches 1 and 2; good settings otherwise."""
    url = fresh_database("preflight")
    with psycopg.connect(url) as conn:
        build_raw(conn)
        conn.commit()
    uri = "postgres://" + url.split("://", 1)[1]
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", uri)
    monkeypatch.setenv("AIRFLOW_CONN_MIS_FINERACT", uri)
    monkeypatch.delenv("AIRFLOW_CONN_KOBOTOOLBOX", raising=False)
    monkeypatch.setenv("SPM_PSEUDONYM_KEY", "p" * 64)
    monkeypatch.setenv("SPM_LOCAL_DIR", str(tmp_path / "local"))
    monkeypatch.delenv("SPM_SUPERSET_BRANCH_ACCESS", raising=False)
    return url


def branch_file(tmp_path, ids) -> str:
    path = tmp_path / "branch_access.yaml"
    path.write_text("branch_roles:\n  - name: \"Branch manager: East\"\n    branch_ids: " + str(list(ids)) + "\n")
    return str(path)


def stage_error() -> str:
    """The preflight stage as the DAG runs it: the StageFailed text (one line)."""
    with pytest.raises(pipeline.StageFailed) as failed:
        pipeline.run_stage("preflight", "manual__2024-06-30", AS_OF, pipeline.preflight)
    text = str(failed.value)
    assert "\n" not in text, text
    assert text.startswith("configuration error, the night of 2024-06-30 stopped before extraction: ")
    return text


def test_good_configuration_passes(warehouse, tmp_path, monkeypatch):
    monkeypatch.setenv("SPM_SUPERSET_BRANCH_ACCESS", branch_file(tmp_path, [1, 2]))
    result = pipeline.preflight()
    assert result["ppi_default_scorecard"] == "DEMO_SYNTH_2024" and result["checked"] is True
    assert set(result["connections"]) >= {"warehouse", "mis_fineract"}


def test_unknown_scorecard_and_empty_poverty_line(warehouse, monkeypatch):
    monkeypatch.setattr(preflight, "dbt_vars", lambda: {**GOOD_VARS, "ppi_default_scorecard": "KE_2019"})
    text = stage_error()
    assert "ppi_default_scorecard = 'KE_2019'" in text and "DEMO_SYNTH_2024" in text
    monkeypatch.setattr(preflight, "dbt_vars", lambda: {**GOOD_VARS, "ppi_poverty_line": ""})
    text = stage_error()
    assert "ppi_poverty_line" in text and "is empty" in text and "national" in text
    monkeypatch.setattr(preflight, "dbt_vars", lambda: {**GOOD_VARS, "ppi_poverty_line": "$9.99/day"})
    assert "ppi_poverty_line = '$9.99/day'" in stage_error()


@pytest.mark.parametrize("value, expected", [
    ("ten", "SPM_MIN_CELL_N must be a whole number of clients (1 or more), got 'ten'"),
    ("0", "SPM_MIN_CELL_N must be 1 or more (1 shows every mean), got 0"),
])
def test_a_wrong_small_sample_size_is_one_line(warehouse, monkeypatch, value, expected):
    monkeypatch.setenv("SPM_MIN_CELL_N", value)
    assert stage_error().endswith(expected)
    monkeypatch.setenv("SPM_MIN_CELL_N", "25")
    assert pipeline.preflight()["min_cell_n"] == 25


def test_branch_access_naming_an_unknown_branch(warehouse, tmp_path, monkeypatch):
    monkeypatch.setenv("SPM_SUPERSET_BRANCH_ACCESS", branch_file(tmp_path, [2, 77]))
    text = stage_error()
    assert "SPM_SUPERSET_BRANCH_ACCESS" in text and "unknown branch(es) 77" in text and "m_office ids are 1, 2" in text
    # the warehouse's own mapping (meta.branch_access) is held to the same rule
    monkeypatch.setenv("SPM_SUPERSET_BRANCH_ACCESS", branch_file(tmp_path, [2]))
    with psycopg.connect(warehouse) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS meta; CREATE TABLE meta.branch_access (role_name text, branch_id bigint)")
        conn.execute("INSERT INTO meta.branch_access VALUES ('bm_east', 2), ('bm_west', 9)")
        conn.commit()
    text = stage_error()
    assert "meta.branch_access: role 'bm_west' names unknown branch(es) 9" in text


def test_branch_access_naming_an_unknown_region(warehouse, tmp_path, monkeypatch):
    """A regional manager's region_ids are m_office ids too: an unknown one is named."""
    path = tmp_path / "branch_access.yaml"
    path.write_text("branch_roles:\n  - name: \"Regional manager: North\"\n    region_ids: [1, 55]\n")
    monkeypatch.setenv("SPM_SUPERSET_BRANCH_ACCESS", str(path))
    text = stage_error()
    assert "SPM_SUPERSET_BRANCH_ACCESS" in text and "unknown branch(es) 55" in text


@pytest.mark.parametrize("value, expected", [
    ("postgres://reader:Pa55-word@replica:notaport/fineract", "AIRFLOW_CONN_MIS_FINERACT is malformed"),
    ("replica.example:5432/fineract", "AIRFLOW_CONN_MIS_FINERACT is not a connection URI"),
    ('{"conn_type": "postgres", "host": "replica"', "AIRFLOW_CONN_MIS_FINERACT is not valid JSON"),
    ("oracle://reader:Pa55-word@replica:1521/fineract", "AIRFLOW_CONN_MIS_FINERACT: unknown connection type 'oracle'"),
    ("postgres://reader:Pa55-word@replica:5432", "AIRFLOW_CONN_MIS_FINERACT names no database"),
])
def test_malformed_airflow_conn(warehouse, monkeypatch, value, expected):
    monkeypatch.setenv("AIRFLOW_CONN_MIS_FINERACT", value)
    text = stage_error()
    assert expected in text and "Pa55-word" not in text


def test_make_run_prints_one_line_and_extracts_nothing(warehouse, tmp_path):
    """`make run` (the CLI it calls) with a branch-access file naming an unknown branch: exit 2, one line on
    stderr naming the setting, no traceback, and no Airflow run (no new load in meta.load_manifest)."""
    with psycopg.connect(warehouse) as conn:
        loads = conn.execute("SELECT count(*) FROM meta.load_manifest").fetchone()[0]
    env = dict(os.environ)
    env.update({"PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}", "SPM_SUPERSET_BRANCH_ACCESS": branch_file(tmp_path, [5])})
    proc = subprocess.run([sys.executable, "-m", "spm_warehouse.cli", "run", "--date", "2024-06-30"], env=env,
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: configuration: SPM_SUPERSET_BRANCH_ACCESS") and "unknown branch(es) 5" in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr and "running: dags test" not in proc.stdout
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("SELECT count(*) FROM meta.load_manifest").fetchone()[0] == loads  # nothing extracted
