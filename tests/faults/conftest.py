"""`make faults`: writes docs/reliability.md from the scenarios' outcomes (see faults_suite.py).

`make faults` runs two scenarios at once (pytest-xdist): each worker builds its own world
(databases of their own on the one server), and the scenario that restarts the server
(marker restarts_server) runs alone: server_in_use below. Under xdist the workers attach
each scenario's row to its report (user_properties) and the controller writes the file.

A scenario's `injected` and `asserted` may be dicts keyed by the test's parameter id (one row
per case, named `<scenario>: <id>`, each with its own text). Rows whose name did not run in
this session (a targeted run, e.g. `make faults PYTEST_ARGS="-k kobo"`) are kept from the
existing file.
"""

from __future__ import annotations

import datetime as dt
import platform
import time
from pathlib import Path

import pytest
from harness import server_in_use
from project import ROOT

OUTCOMES: dict[str, dict] = {}


@pytest.fixture(autouse=True)
def _server_use(request):
    t0 = time.monotonic()
    with server_in_use(exclusive=request.node.get_closest_marker("restarts_server") is not None):
        request.node.server_wait_s = time.monotonic() - t0  # not the scenario's own time (the report leaves it out)
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    meta = getattr(item.function, "scenario", None)
    if meta is None:
        return
    case = getattr(getattr(item, "callspec", None), "id", None)
    if case is not None and isinstance(meta["injected"], dict):
        meta = {"name": f"{meta['name']}: {case}",
                "injected": meta["injected"][case], "asserted": meta["asserted"][case]}
    elif case is not None:  # one text for every case: the case still gets a row of its own
        meta = {**meta, "name": f"{meta['name']}: {case}"}
    waited = getattr(item, "server_wait_s", 0.0) if report.when == "setup" else 0.0
    report.user_properties.append(("scenario", {**meta, "figures": getattr(item, "figures", ""), "waited": waited}))


def pytest_runtest_logreport(report):
    """Where the reports arrive: this process without xdist, the controller with it."""
    meta = dict(report.user_properties).get("scenario")
    if meta is None:
        return
    figures, waited = meta.pop("figures"), meta.pop("waited")
    entry = OUTCOMES.setdefault(report.nodeid, {**meta, "result": "not run", "seconds": 0.0, "figures": ""})
    entry["seconds"] += report.duration - waited
    if report.when == "call":
        entry["result"] = "pass" if report.passed else ("FAIL" if report.failed else "skipped")
        entry["figures"] = figures
    elif report.failed:
        entry["result"] = "FAIL (setup)" if report.when == "setup" else entry["result"]


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller writes the file
        return
    if not OUTCOMES or session.config.getoption("collectonly"):
        return
    lines = [
        "# Reliability: faults a night survives",
        "",
        "Written by `make faults` (tests/faults/faults_suite.py) on "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()} "
        f"({platform.machine()}, Python {platform.python_version()}). Each scenario runs on a small demo "
        "warehouse with real processes: every stage of a night is its own process "
        "(`python -m spm_warehouse.stage`, as Airflow's workers run them), against a real PostgreSQL; "
        "faults are injected at fault points (plugins/spm_warehouse/faults.py) or from outside. "
        "Two scenarios run at once (two pytest-xdist workers, each with its own world), so a scenario's seconds "
        "include the other's load; the first scenario of each worker also builds that worker's world (two nights), "
        "and the restart scenario runs alone (the time waited for it is not counted). "
        "The Kobo faults need no night: the extract_surveys stage runs in its own process against a fresh "
        "warehouse and the KoboToolbox replay server (tools/demo/kobo_replay.py, scripted faults), and the "
        "survey dbt models are built where the fault ends in dbt's quarantine.",
        "",
        "| scenario | what was injected | what was asserted | result | seconds | figures |",
        "|---|---|---|---|---:|---|",
    ]
    path = Path(ROOT / "docs" / "reliability.md")
    ran = {entry["name"] for entry in OUTCOMES.values()}
    kept = [row for row in _table_rows(path) if _row_name(row) not in ran]
    for entry in OUTCOMES.values():
        lines.append(f"| {entry['name']} | {entry['injected']} | {entry['asserted']} | {entry['result']} | "
                     f"{entry['seconds']:.0f} | {entry['figures']} |")
    lines += kept
    lines.append("")
    path.write_text("\n".join(lines))


def _table_rows(path: Path) -> list[str]:
    if not path.exists():
        return []
    rows = [x for x in path.read_text().splitlines() if x.startswith("| ")]
    return rows[1:]  # without the header (the |---| line does not start with "| ")


def _row_name(row: str) -> str:
    return row.split(" | ", 1)[0][2:]
