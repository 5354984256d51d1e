"""dbt unit tests run in `make test`, not in the nightly production build.

Unit tests check a model's SQL on hand-made rows; the code does not change between nights, so
running them in every production build only costs time (build.nightly_build_args). This file
proves the production selection leaves every one of them out while keeping models and data
tests, and that each unit test of the project is run by a make-test file:
kpi_alerts by test_kpi_alerts.py, the survey marts' by test_surveys_dbt.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from surveys_support import project_copy, run_dbt

from spm_warehouse.build import nightly_build_args

# every unit test of the project, and the make-test file that runs it
RUN_IN_MAKE_TEST = {
    "kpi_alerts_threshold_worsening_and_targets": "tests/integration/dbt/test_kpi_alerts.py",
    "kpi_exit_reasons_every_mis_exit_appears": "tests/integration/dbt/test_surveys_dbt.py",
    "kpi_client_outcomes_small_samples_units_and_labels": "tests/integration/dbt/test_surveys_dbt.py",
}


def listed(project, url: str, args: list[str]) -> list[dict]:
    """`dbt ls <args> --output json`: the nodes a command with that selection would run."""
    run = run_dbt(project, url, ["ls", *args, "--output", "json", "--quiet"])
    assert run.returncode == 0, run.output[-3000:]
    return [json.loads(line) for line in run.output.splitlines() if line.startswith("{")]


def selection(args: list[str]) -> list[str]:
    """The selection flags of a build command (what `dbt ls` accepts of it)."""
    return [a for a in args[1:] if a != "--full-refresh"]


def test_the_production_build_selects_no_unit_test_but_every_model_and_data_test(pg_server_url, tmp_path):
    project = project_copy(tmp_path)
    everything = listed(project, pg_server_url, ["--resource-type", "all"])
    unit = {n["name"] for n in everything if n["resource_type"] == "unit_test"}
    assert unit == set(RUN_IN_MAKE_TEST), "a unit test without a make-test file that runs it"
    nightly_args, full_args = nightly_build_args(False), nightly_build_args(True)
    assert nightly_args[0] == full_args[0] == "build" and "--full-refresh" in full_args
    assert selection(nightly_args) == selection(full_args)  # the same nodes, nightly or full
    nightly = listed(project, pg_server_url, selection(nightly_args))
    kinds = {n["resource_type"] for n in nightly}
    assert "unit_test" not in kinds
    for kind in ("model", "test", "seed"):
        assert sum(1 for n in nightly if n["resource_type"] == kind) == \
            sum(1 for n in everything if n["resource_type"] == kind) > 0, kind


def test_each_unit_test_is_asserted_by_its_make_test_file():
    root = Path(__file__).resolve().parents[3]
    for name, path in RUN_IN_MAKE_TEST.items():
        assert name in (root / path).read_text(), f"{path} does not run the unit test {name}"
