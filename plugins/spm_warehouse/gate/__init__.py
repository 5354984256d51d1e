"""The quality gate: every check against tonight's build, one verdict.

`run_gate` (runner.py) runs one module per kind of check (dbt_results,
quarantine, freshness, volume, reconciliation, gx_suites, pii) with the
thresholds of thresholds.yml, and returns a `GateVerdict` (verdict.py) that it
also records in meta. Publication takes that verdict as a value.
"""

from spm_warehouse.gate.base import FAIL, PASS, WARN, CheckContext, CheckResult
from spm_warehouse.gate.runner import CHECKS, THRESHOLDS_PATH, load_thresholds, run_gate
from spm_warehouse.gate.verdict import GateVerdict, ensure_gate_tables, read_verdict, record_verdict

__all__ = ["CHECKS", "FAIL", "PASS", "THRESHOLDS_PATH", "WARN", "CheckContext", "CheckResult", "GateVerdict",
           "ensure_gate_tables", "load_thresholds", "read_verdict", "record_verdict", "run_gate"]
