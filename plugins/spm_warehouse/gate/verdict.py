"""The gate's verdict: one value with every check, recorded in meta and read back.

Why a value of its own: the gate produces it, publication takes it (and
refuses a verdict that did not pass), the report and the alert describe it.
`meta.gate_runs` and `meta.check_results` hold it between tasks, which may
run in different processes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import psycopg

from spm_warehouse.gate.base import FAIL, PASS, WARN, CheckResult

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
            # as meta.gate_runs keeps them (JSON, dates and decimals as text), so XCom can carry them
            "facts": json.loads(json.dumps({key: self.facts.get(key) for key in ("metrics", "watermarks",
                                                                                 "quarantine_rows")}, default=str)),
        }

    @classmethod
    def from_dict(cls, data: dict) -> GateVerdict:
        """The verdict back from its as_dict() form (how the gate task hands it to publish)."""
        checks = [CheckResult(name=c["name"], kind=c["kind"], status=c["status"], blocking=c["blocking"],
                              numbers=c.get("numbers") or {}, message=c.get("message") or "")
                  for c in data.get("checks") or []]
        as_of = data.get("as_of")
        return cls(passed=bool(data["passed"]) and not any(c.blocks for c in checks), checks=checks,
                   run_id=data.get("run_id") or "", as_of=date.fromisoformat(as_of) if as_of else None,
                   facts=dict(data.get("facts") or {}))


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
