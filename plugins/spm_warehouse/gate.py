"""The quality gate: every check against tonight's build, one verdict.

Why one verdict with every check: when a night is blocked, the person on call
must see all that is wrong at once (and by how much), not fix one problem per
night. The gate therefore runs every check even after one failed, records
each result in meta.check_results and the verdict in meta.gate_runs, and
leaves publishing to publish.py, which refuses a run whose verdict did not
pass.

Checks, in order (modules under spm_warehouse/checks/, thresholds in
gate_thresholds.yml): dbt test/model results, quarantine shares (after
copying dbt's quarantine models into meta.quarantine), freshness of the MIS
and surveys, volume against the published build, reconciliation with the
source, Great Expectations suites, no personal data in the build.

A check that crashes (a bug, a lost connection) is itself a blocking failure
named after the check: the gate never publishes on a check it could not run.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable

import psycopg
import yaml

from spm_warehouse import settings
from spm_warehouse.checks import FAIL, PASS, WARN, CheckContext, CheckResult
from spm_warehouse.checks import dbt_results, freshness, gx_suites, pii, quarantine, reconciliation, volume
from spm_warehouse.settings import ConnInfo

__all__ = ["CheckResult", "GateVerdict", "run_gate", "load_thresholds", "ensure_gate_tables", "read_verdict"]

log = logging.getLogger(__name__)

THRESHOLDS_PATH = Path(__file__).with_name("gate_thresholds.yml")

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

GATE_DDL: tuple[str, ...] = (
    "CREATE SCHEMA IF NOT EXISTS meta",
    """CREATE TABLE IF NOT EXISTS meta.gate_runs (
        run_id         text PRIMARY KEY,
        as_of_date     date NOT NULL,
        started_at     timestamptz NOT NULL,
        finished_at    timestamptz NOT NULL,
        passed         boolean NOT NULL,
        checks_passed  integer NOT NULL,
        checks_warned  integer NOT NULL,
        checks_failed  integer NOT NULL,
        summary        text NOT NULL,
        metrics        jsonb NOT NULL DEFAULT '{}',
        watermarks     jsonb NOT NULL DEFAULT '{}',
        quarantine_rows bigint
    )""",
    """COMMENT ON TABLE meta.gate_runs IS
        'One row per gate run (the latest verdict of an Airflow run): passed or not, counts, the summary the DAG '
        'failed with, and the measures publish copies into meta.publications (metrics, watermarks).'""",
    """CREATE TABLE IF NOT EXISTS meta.check_results (
        run_id      text NOT NULL,
        check_name  text NOT NULL,
        kind        text NOT NULL,
        status      text NOT NULL CHECK (status IN ('pass', 'warn', 'fail')),
        blocking    boolean NOT NULL,
        numbers     jsonb NOT NULL DEFAULT '{}',
        message     text NOT NULL DEFAULT '',
        checked_at  timestamptz NOT NULL DEFAULT now(),
        position    integer NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, check_name)
    )""",
    """COMMENT ON TABLE meta.check_results IS
        'Every quality-gate check of every run: status, whether it blocks, the numbers measured and the thresholds applied.'""",
)


def ensure_gate_tables(conn: psycopg.Connection) -> None:
    """Create meta.gate_runs and meta.check_results if missing (idempotent, no commit)."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('spm_warehouse.meta'))")
        for stmt in GATE_DDL:
            cur.execute(stmt)


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


def _fmt_numbers(numbers: dict, limit: int = 600) -> str:
    text = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in numbers.items())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class GateVerdict:
    """The gate's decision on one run."""

    passed: bool
    checks: list[CheckResult]
    run_id: str = ""
    as_of: date | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.blocks]

    def warned(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == WARN or (c.status == FAIL and not c.blocking)]

    def counts(self) -> dict[str, int]:
        return {
            "passed": sum(c.status == PASS for c in self.checks),
            "warned": len(self.warned()),
            "failed": len(self.failed()),
        }

    def headline(self) -> str:
        n = self.counts()
        state = "PASSED" if self.passed else "BLOCKED"
        return (f"quality gate {state} for run {self.run_id} (as of {self.as_of}): "
                f"{n['failed']} blocking failures, {n['warned']} warnings, {n['passed']} passed")

    def summary(self) -> str:
        """Text naming each failed check and its numbers (the DAG's failure message)."""
        lines = [self.headline()]
        if self.failed():
            lines.append("Failed (blocking):")
            for c in self.failed():
                lines.append(f"  - {c.name}: {c.message}")
                lines.append(f"      numbers: {_fmt_numbers(c.numbers)}")
        if self.warned():
            lines.append("Warnings:")
            for c in self.warned():
                lines.append(f"  - {c.name}: {c.message}")
        if not self.passed:
            lines.append("analytics was left unchanged. Details: meta.check_results "
                         f"(run_id = '{self.run_id}') and the run report.")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        """JSON-able form (XCom)."""
        return {
            "passed": self.passed,
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "counts": self.counts(),
            "failed": [c.name for c in self.failed()],
            "warned": [c.name for c in self.warned()],
            "checks": [c.as_dict() for c in self.checks],
        }


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
    Results are committed when this returns (the connection may be in
    autocommit mode or not; an open transaction of the caller is committed).
    """
    thresholds = load_thresholds(thresholds_path)
    started = datetime.now(timezone.utc)
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
    verdict = GateVerdict(passed=not any(c.blocks for c in checks), checks=checks, run_id=run_id, as_of=as_of,
                          started_at=started, finished_at=datetime.now(timezone.utc), facts=ctx.facts)
    record_verdict(wh_conn, verdict)
    if wh_conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
        wh_conn.commit()
    return verdict


def record_verdict(conn: psycopg.Connection, verdict: GateVerdict) -> None:
    """Replace this run's rows in meta.check_results and meta.gate_runs (reruns stay idempotent)."""
    n = verdict.counts()
    with conn.transaction():
        conn.execute("DELETE FROM meta.check_results WHERE run_id = %s", (verdict.run_id,))
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO meta.check_results (run_id, check_name, kind, status, blocking, numbers, message,
                                                  checked_at, position)
                   VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s)""",
                [(verdict.run_id, c.name, c.kind, c.status, c.blocking, json.dumps(c.numbers, default=str),
                  c.message, verdict.finished_at, i) for i, c in enumerate(_unique_names(verdict.checks))],
            )
        conn.execute(
            """INSERT INTO meta.gate_runs (run_id, as_of_date, started_at, finished_at, passed, checks_passed,
                                           checks_warned, checks_failed, summary, metrics, watermarks, quarantine_rows)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s)
               ON CONFLICT (run_id) DO UPDATE SET
                 as_of_date = EXCLUDED.as_of_date, started_at = EXCLUDED.started_at,
                 finished_at = EXCLUDED.finished_at, passed = EXCLUDED.passed,
                 checks_passed = EXCLUDED.checks_passed, checks_warned = EXCLUDED.checks_warned,
                 checks_failed = EXCLUDED.checks_failed, summary = EXCLUDED.summary,
                 metrics = EXCLUDED.metrics, watermarks = EXCLUDED.watermarks,
                 quarantine_rows = EXCLUDED.quarantine_rows""",
            (verdict.run_id, verdict.as_of, verdict.started_at, verdict.finished_at, verdict.passed,
             n["passed"], n["warned"], n["failed"], verdict.summary(),
             json.dumps(verdict.facts.get("metrics") or {}, default=str),
             json.dumps(verdict.facts.get("watermarks") or {}, default=str),
             verdict.facts.get("quarantine_rows")),
        )


def _unique_names(checks: list[CheckResult]) -> list[CheckResult]:
    """Check names are the key of meta.check_results; a repeated name gets a #2 suffix."""
    seen: dict[str, int] = {}
    out = []
    for c in checks:
        seen[c.name] = seen.get(c.name, 0) + 1
        if seen[c.name] > 1:
            c = CheckResult(name=f"{c.name}#{seen[c.name]}", kind=c.kind, status=c.status, blocking=c.blocking,
                            numbers=c.numbers, message=c.message)
        out.append(c)
    return out


def read_verdict(conn: psycopg.Connection, run_id: str) -> GateVerdict | None:
    """The recorded verdict of a run (None if the gate never judged it)."""
    if conn.execute("SELECT to_regclass('meta.gate_runs') IS NULL").fetchone()[0]:
        return None
    row = conn.execute(
        """SELECT passed, as_of_date, started_at, finished_at, metrics, watermarks, quarantine_rows
           FROM meta.gate_runs WHERE run_id = %s""", (run_id,)).fetchone()
    if row is None:
        return None
    checks = [CheckResult(name=r[0], kind=r[1], status=r[2], blocking=r[3], numbers=r[4] or {}, message=r[5])
              for r in conn.execute(
                  """SELECT check_name, kind, status, blocking, numbers, message FROM meta.check_results
                     WHERE run_id = %s ORDER BY position, check_name""", (run_id,)).fetchall()]
    return GateVerdict(passed=row[0], checks=checks, run_id=run_id, as_of=row[1], started_at=row[2],
                       finished_at=row[3],
                       facts={"metrics": row[4] or {}, "watermarks": row[5] or {}, "quarantine_rows": row[6]})
