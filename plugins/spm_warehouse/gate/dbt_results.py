"""dbt's own verdict on the build: tests that errored block, warnings are reported.

Input is the dict the build stage returns (build.DbtResult.summary()):
{"success": bool, "counts": {status: n}, "results": [{"unique_id", "resource_type",
"status", "failures", "message"}, ...]}. Only failures and warnings need to be
listed in "results"; a full run_results.json list works too.

dbt statuses: tests pass | warn | fail | error | skipped; models, seeds and
snapshots success | error | skipped. A test declared `severity: warn` that
finds rows comes back as 'warn'.
"""

from __future__ import annotations

from spm_warehouse.gate.base import PASS, WARN, CheckContext, CheckResult, judged

KIND = "dbt"
TEST_TYPES = {"test", "unit_test"}
FAILED = {"fail", "error", "runtime error"}
MAX_LISTED = 10


def _short(unique_id: str) -> str:
    """test.spm_warehouse.not_null_kpi_branch_month_branch_id.abc123 -> not_null_kpi_branch_month_branch_id"""
    parts = (unique_id or "?").split(".")
    if parts[0] == "test" and len(parts) >= 4:
        return parts[2]
    return parts[-1]


def _describe(r: dict) -> str:
    text = _short(r.get("unique_id", "?"))
    if r.get("failures"):
        text += f" ({r['failures']} rows)"
    elif r.get("message") and r.get("status") in ("error", "runtime error"):
        text += f" ({str(r['message']).strip().splitlines()[0][:160]})"
    return text


def run(ctx: CheckContext) -> list[CheckResult]:
    cfg = ctx.thresholds.get("dbt", {})
    blocking = bool(cfg.get("blocking", True))
    result = ctx.dbt_result or {}
    nodes = list(result.get("results") or [])
    counts = dict(result.get("counts") or {})
    tests = [r for r in nodes if r.get("resource_type") in TEST_TYPES]
    others = [r for r in nodes if r.get("resource_type") not in TEST_TYPES]

    failed_tests = [r for r in tests if r.get("status") in FAILED]
    warned_tests = [r for r in tests if r.get("status") == "warn"]
    errored_nodes = [r for r in others if r.get("status") in FAILED]
    listed_skips = [r for r in nodes if r.get("status") == "skipped"]
    # The build stage lists only failures and warnings; skips then show in counts only.
    skipped = max(len(listed_skips), int(counts.get("skipped", 0) or 0))

    out: list[CheckResult] = []
    failing = [_describe(r) for r in failed_tests[:MAX_LISTED]]
    out.append(judged(
        "dbt.tests", KIND, not failed_tests, blocking,
        {"tests_failed": len(failed_tests), "failing_tests": failing, "counts": counts},
        (f"{len(failed_tests)} dbt tests failed: " + ", ".join(failing)) if failed_tests
        else f"no dbt test failed ({counts.get('pass', 0)} nodes passed)",
    ))

    unexplained = not result.get("success", False) and not failed_tests and not errored_nodes and not skipped
    block_unexplained = bool(cfg.get("block_on_unexplained_failure", True))
    node_numbers = {
        "nodes_errored": len(errored_nodes),
        "nodes_skipped": skipped,
        "failing_nodes": [_describe(r) for r in (errored_nodes + listed_skips)[:MAX_LISTED]],
        "success": bool(result.get("success", False)),
        "returncode": result.get("returncode"),
    }
    if errored_nodes:
        message = f"{len(errored_nodes)} dbt models/seeds/snapshots failed: " + ", ".join(node_numbers["failing_nodes"])
    elif skipped:
        message = f"dbt skipped {skipped} nodes because an upstream node failed"
    elif unexplained:
        message = "dbt exited with an error but reported no failing node (compilation or connection error?)"
    else:
        message = "every dbt model, seed and snapshot built"
    ok = not errored_nodes and not skipped and not (unexplained and block_unexplained)
    out.append(judged("dbt.models", KIND, ok, blocking, node_numbers, message))

    out.append(CheckResult(
        name="dbt.test_warnings", kind=KIND, status=WARN if warned_tests else PASS, blocking=False,
        numbers={"tests_warned": len(warned_tests),
                 "warning_tests": [_describe(r) for r in warned_tests[:MAX_LISTED]]},
        message=(f"{len(warned_tests)} dbt tests warned: " + ", ".join(_describe(r) for r in warned_tests[:MAX_LISTED]))
        if warned_tests else "no dbt test warnings",
    ))
    return out
