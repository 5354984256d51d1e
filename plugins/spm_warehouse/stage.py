"""`python -m spm_warehouse.stage <stage> --run-id R --as-of D`: one stage of the nightly run, in this process.

Why: an Airflow task runs one stage in a process of its own; this does the same without
Airflow, so that an operator can rerun or debug one stage from a shell, and the fault
suite (tests/faults) can kill exactly one stage's process. The stage's result (what the
task would push to XCom) is printed as the last line, in JSON; `--input` hands a
previous stage's result on (build -> gate -> publish), as XCom does.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from spm_warehouse import night_lock, pipeline
from spm_warehouse.console import run_command
from spm_warehouse.sources.fineract import SourceSchemaError, SourceUnavailable
from spm_warehouse.sources.fineract_datatables import DatatableError
from spm_warehouse.sources.kobo import KoboError

STAGES = ("prepare", "extract_mis", "extract_surveys", "build", "gate", "publish", "kpi_alerts", "report")


def run_stage(args: argparse.Namespace) -> int:
    as_of = date.fromisoformat(args.as_of)
    given = json.loads(Path(args.input).read_text()) if args.input else None
    if args.stage == "prepare":
        result = pipeline.prepare_warehouse(args.run_id, as_of)
    elif args.stage == "extract_mis":
        result = pipeline.extract_mis(args.run_id, as_of, full_refresh=args.full_refresh)
    elif args.stage == "extract_surveys":
        result = pipeline.extract_surveys(args.run_id, as_of, full_refresh=args.full_refresh)
    elif args.stage == "build":
        result = pipeline.build(args.run_id, as_of, full_refresh=args.full_refresh)
    elif args.stage == "gate":
        result = pipeline.gate(args.run_id, as_of, given or {})
    elif args.stage == "publish":
        result = pipeline.publish(args.run_id, as_of, given)
    elif args.stage == "kpi_alerts":
        result = pipeline.send_kpi_alerts(args.run_id, as_of)
    else:
        result = pipeline.report(args.run_id, as_of)
    print(json.dumps(result, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spm_warehouse.stage", description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=STAGES)
    p.add_argument("--run-id", required=True)
    p.add_argument("--as-of", required=True, help="YYYY-MM-DD")
    p.add_argument("--input", help="a JSON file: the previous stage's result (gate: dbt's, publish: the gate's)")
    p.add_argument("--full-refresh", action="store_true")
    p.set_defaults(func=run_stage)
    return run_command(p.parse_args(argv), (pipeline.StageFailed, night_lock.NightBusy, SourceSchemaError,
                                            SourceUnavailable, DatatableError, KoboError, LookupError,
                                            ValueError))


if __name__ == "__main__":
    sys.exit(main())
