"""`make faults`: writes docs/reliability.md from the scenarios' outcomes (see faults_suite.py)."""

from __future__ import annotations

import datetime as dt
import platform
from pathlib import Path

import pytest
from project import ROOT

OUTCOMES: dict[str, dict] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    meta = getattr(item.function, "scenario", None)
    if meta is None:
        return
    entry = OUTCOMES.setdefault(item.nodeid, {**meta, "result": "not run", "seconds": 0.0, "figures": ""})
    entry["seconds"] += report.duration
    if report.when == "call":
        entry["result"] = "pass" if report.passed else ("FAIL" if report.failed else "skipped")
        entry["figures"] = getattr(item, "figures", "")
    elif report.failed:
        entry["result"] = "FAIL (setup)" if report.when == "setup" else entry["result"]


def pytest_sessionfinish(session, exitstatus):
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
        "faults are injected at fault points (plugins/spm_warehouse/faults.py) or from outside.",
        "",
        "| scenario | what was injected | what was asserted | result | seconds | figures |",
        "|---|---|---|---|---:|---|",
    ]
    for entry in OUTCOMES.values():
        lines.append(f"| {entry['name']} | {entry['injected']} | {entry['asserted']} | {entry['result']} | "
                     f"{entry['seconds']:.0f} | {entry['figures']} |")
    lines.append("")
    Path(ROOT / "docs" / "reliability.md").write_text("\n".join(lines))
