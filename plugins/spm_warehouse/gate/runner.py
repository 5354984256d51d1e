"""The quality gate: every check against tonight's build, one verdict.

Why one verdict with every check: when a night is blocked, the person on call
must see all that is wrong at once (and by how much), not fix one problem per
night. The gate therefore runs every check even after one failed, records
each result in meta.check_results and the verdict in meta.gate_runs, and
leaves publishing to spm_warehouse.publication, which refuses a run whose verdict did not
pass.

Checks, in order (one module per kind in this package, thresholds in
thresholds.yml): dbt test/model results, quarantine shares (after
copying dbt's quarantine models into meta.quarantine), freshness of the MIS
and surveys, volume against the published build, reconciliation with the
source, Great Expectations suites, no personal data in the build.

A check that crashes (a bug, a lost connection) is itself a blocking failure
named after the check: the gate never publishes on a check it could not run.
"""

from __future__ import annotations

import logging
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable

import psycopg
import yaml

from spm_warehouse import faults, settings
from spm_warehouse.gate import dbt_results, freshness, gx_suites, pii, quarantine, reconciliation, volume
from spm_warehouse.gate.base import FAIL, CheckContext, CheckResult
from spm_warehouse.gate.verdict import GateVerdict, ensure_gate_tables, record_verdict
from spm_warehouse.settings import ConnInfo

log = logging.getLogger(__name__)

THRESHOLDS_PATH = Path(__file__).with_name("thresholds.yml")

# (kind, module.run) in the order they run and are reported.
CHECKS: list[tuple[str, Callable[[CheckContext], list[CheckResult]]]] = [
    ("dbt", dbt_results.run),
    ("quarantine", quarantine.run),
    ("freshness", freshness.run),
    ("volume", volume.run),
    ("reconciliation", reconciliation.run),
    ("gx", gx_suites.run),
    ("pii", pii.run),
]


def load_thresholds(path: Path | None = None) -> dict:
    """The thresholds file as a dict; a clear error when it is missing or malformed."""
    path = Path(path or THRESHOLDS_PATH)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"gate thresholds file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"gate thresholds file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"gate thresholds file {path} must be a mapping of sections")
    return data


def _run_one(kind: str, fn: Callable[[CheckContext], list[CheckResult]], ctx: CheckContext) -> list[CheckResult]:
    """One check module in its own (sub)transaction: a crash rolls back only that check."""
    try:
        with ctx.wh.transaction():
            return fn(ctx)
    except Exception as exc:  # noqa: BLE001 - reported as a blocking failure, never swallowed
        log.exception("gate check %s crashed", kind)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return [CheckResult(name=f"{kind}.check_error", kind=kind, status=FAIL, blocking=True,
                            numbers={"error": type(exc).__name__},
                            message=f"the {kind} check could not run: {type(exc).__name__}: {first[:300]}")]


def run_gate(
    wh_conn: psycopg.Connection,
    mis: ConnInfo | None,
    run_id: str,
    as_of: date,
    dbt_result: dict,
    *,
    thresholds_path: Path | None = None,
    gx_project_dir: Path | None = None,
    reports_dir: Path | None = None,
    only: list[str] | None = None,
) -> GateVerdict:
    """Run every check against the build schema; record and return the verdict.

    `only` (kinds, e.g. ["dbt", "volume"]) restricts the checks - for tests
    and for re-judging one aspect by hand; the nightly DAG runs them all.
    Nothing is committed here: the caller owns the transaction (each check
    runs in a savepoint of it, so a crashing check rolls back only itself).
    """
    thresholds = load_thresholds(thresholds_path)
    started = datetime.now(timezone.utc)
    if only is None or "gx" in only:
        gx_suites.preload()  # the GX import overlaps the SQL checks that run before it
    with wh_conn.transaction():
        ensure_gate_tables(wh_conn)
    ctx = CheckContext(
        wh=wh_conn, mis=mis, run_id=run_id, as_of=as_of, dbt_result=dbt_result or {}, thresholds=thresholds,
        build_schema=settings.build_schema(), analytics_schema=settings.analytics_schema(),
        gx_project_dir=gx_project_dir, reports_dir=Path(reports_dir) if reports_dir else settings.reports_dir(),
    )
    checks: list[CheckResult] = []
    for kind, fn in CHECKS:
        if only is not None and kind not in only:
            continue
        t0 = time.monotonic()
        results = _run_one(kind, fn, ctx)
        seconds = round(time.monotonic() - t0, 2)
        ctx.facts.setdefault("seconds", {})[kind] = seconds
        for r in results:
            log.info("gate %-5s %s: %s", r.status.upper(), r.name, r.message)
        log.info("gate checks of kind %s took %.1fs", kind, seconds)
        checks.extend(results)
        faults.point("gate.checks")
    verdict = GateVerdict(passed=not any(c.blocks for c in checks), checks=checks, run_id=run_id, as_of=as_of,
                          started_at=started, finished_at=datetime.now(timezone.utc), facts=ctx.facts)
    record_verdict(wh_conn, verdict)
    return verdict


