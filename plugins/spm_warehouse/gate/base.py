"""What every check of the quality gate shares: its context, its result, small catalog helpers.

Every check module exposes `run(ctx: CheckContext) -> list[CheckResult]`.
A check never raises for bad data: it returns a result whose status says
what is wrong and whose `numbers` let a reader judge by how much. The gate
(spm_warehouse.gate) runs them in order, records every result in
meta.check_results and decides.

Why the types live here and not in runner.py: the check modules need them and
the runner imports the check modules; a module of their own keeps the imports
one-way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import psycopg

from spm_warehouse.settings import ConnInfo

PASS, WARN, FAIL = "pass", "warn", "fail"


@dataclass
class CheckResult:
    """One check's outcome.

    status: 'pass' | 'warn' | 'fail'. A 'fail' with blocking=True stops the
    publication; a problem in a non-blocking check is reported as 'warn'.
    numbers: what was measured and the threshold it was held against, so the
    summary and the run report can say "by how much".
    """

    name: str
    kind: str
    status: str
    blocking: bool
    numbers: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    @property
    def blocks(self) -> bool:
        return self.status == FAIL and self.blocking

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "blocking": self.blocking,
            "numbers": self.numbers,
            "message": self.message,
        }


def judged(name: str, kind: str, ok: bool, blocking: bool, numbers: dict, message: str) -> CheckResult:
    """A result whose problem is a 'fail' when the check blocks, else a 'warn'."""
    if ok:
        status = PASS
    else:
        status = FAIL if blocking else WARN
    return CheckResult(name=name, kind=kind, status=status, blocking=blocking, numbers=numbers, message=message)


@dataclass
class CheckContext:
    """Everything a check may look at. Checks read; only the quarantine check writes (meta.quarantine)."""

    wh: psycopg.Connection
    mis: ConnInfo | None
    run_id: str
    as_of: date
    dbt_result: dict
    thresholds: dict
    build_schema: str
    analytics_schema: str
    # The GX project (default: <repo>/expectations) and where this run's reports go.
    gx_project_dir: Path | None = None
    reports_dir: Path | None = None
    # Filled by checks for later checks and for meta.gate_runs (e.g. volume metrics of the build).
    facts: dict[str, Any] = field(default_factory=dict)


def relation_exists(conn: psycopg.Connection, qualified: str) -> bool:
    """True when schema.name is a table or view the connection can see."""
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (qualified,)).fetchone()[0]


def column_names(conn: psycopg.Connection, schema: str, table: str) -> set[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
        (schema, table),
    ).fetchall()
    return {r[0] for r in rows}
