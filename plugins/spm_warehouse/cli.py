"""Command line behind the Makefile: `python -m spm_warehouse.cli <command>`.

The demo commands (`make demo`) live in tools/demo: the runtime does not need them.

Why: the README's commands must do all set-up on a fresh machine and give
clear messages instead of stack traces. Every command first calls
environment.configure(), so it works with nothing configured (embedded
PostgreSQL, demo MIS) and with operator-provided AIRFLOW_CONN_* variables.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from datetime import date, timedelta

from spm_warehouse import (
    airflow_stack,
    environment,
    failure_text,
    night_lock,
    pipeline,
    preflight,
    publication,
    settings,
)
from spm_warehouse.console import run_command
from spm_warehouse.db import connect
from spm_warehouse.embedded_postgres import EmbeddedPostgresError

log = logging.getLogger("spm_warehouse.cli")


class UserError(RuntimeError):
    """An error whose message is all the user needs (no traceback)."""


# --------------------------------------------------------------------------- airflow


def airflow_dags_test(dag_id: str, as_of: date, conf: dict | None = None) -> tuple[int, str]:
    """Run one DAG run in-process with `airflow dags test`, its log in a file.

    Returns (exit code, failure text): the text the failing stage recorded
    (failure_text.py: each failing check with its numbers, the run report and
    what to do next), never a traceback; "" when the run succeeded.
    """
    environment.migrate_airflow_db()
    cmd = [environment.venv_bin("airflow"), "dags", "test", dag_id, as_of.isoformat()]
    if conf:
        cmd += ["--conf", json.dumps(conf)]
    log_dir = settings.local_dir() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = f"{dag_id}_{as_of.isoformat()}_{int(time.time())}"
    log_file = log_dir / f"{stamp}.log"
    outcome = log_dir / f"{stamp}.failure.txt"
    outcome.unlink(missing_ok=True)
    print(f"  running: {' '.join(shlex.quote(c) for c in cmd[1:])}  (log: {log_file})", flush=True)
    env = dict(os.environ, **{failure_text.OUTCOME_FILE_VAR: str(outcome)})
    with open(log_file, "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if proc.returncode == 0:
        return 0, ""
    if outcome.is_file() and outcome.read_text(encoding="utf-8").strip():
        # one block per failed task try; a retried task that failed the same way twice is shown once
        blocks = [b.strip() for b in outcome.read_text(encoding="utf-8").split("\n\n") if b.strip()]
        text = "\n\n".join(dict.fromkeys(blocks))
    else:  # Airflow itself failed before any stage ran: the log's error lines, without a traceback
        lines = log_file.read_text(errors="replace").splitlines()
        errors = [line.strip() for line in lines if "ERROR" in line and not line.startswith((" ", "\t"))]
        text = "\n".join([f"the {dag_id} run for {as_of} failed before any stage reported why:"]
                         + [failure_text.redact(e) for e in errors[-10:]]
                         + [f"Full log: {log_file}"])
    return proc.returncode, text + f"\n(full log: {log_file})"


# --------------------------------------------------------------------------- summary


def _table_exists(conn, qualified: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (qualified,)).fetchone()[0]


def print_summary(as_of: date) -> None:
    """What was loaded, which checks passed, what was published, where to look."""
    with connect("warehouse", autocommit=True) as conn:
        print("\nLoaded (last load per table, meta.load_manifest):")
        if _table_exists(conn, "meta.load_manifest"):
            rows = conn.execute(
                """SELECT DISTINCT ON (table_name) table_name, rows_read, rows_merged, seconds
                   FROM meta.load_manifest ORDER BY table_name, started_at DESC"""
            ).fetchall()
            for name, read, merged, secs in rows:
                print(f"  {name:<34} read {read:>9}  merged {merged:>9}  {float(secs or 0):6.1f}s")
        if _table_exists(conn, "raw_kobo.submissions"):
            n = conn.execute("SELECT count(*) FROM raw_kobo.submissions").fetchone()[0]
            print(f"  {'raw_kobo.submissions':<34} {n:>9} rows in total")
        print("\nChecks (last gate, meta.check_results):")
        if _table_exists(conn, "meta.check_results"):
            rows = conn.execute(
                """SELECT status, blocking, check_name, message FROM meta.check_results
                   WHERE run_id = (SELECT run_id FROM meta.check_results ORDER BY checked_at DESC LIMIT 1)
                   ORDER BY position, check_name"""
            ).fetchall()
            counts: dict[str, int] = {}
            for status, *_ in rows:
                counts[status] = counts.get(status, 0) + 1
            print("  " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none recorded"))
            for status, blocking, name, message in rows:
                if status != "pass":
                    label = "FAIL" if status == "fail" and blocking else "warn"
                    print(f"  {label} {name}: {failure_text.redact(message)[:300]}")
        print("\nPublished (meta.publications):")
        if _table_exists(conn, "meta.publications"):
            row = conn.execute(
                "SELECT build_id, as_of_date, published_at FROM meta.publications ORDER BY published_at DESC LIMIT 1"
            ).fetchone()
            if row:
                print(f"  build {row[0]} for as-of {row[1]} at {row[2]:%Y-%m-%d %H:%M:%S %Z}")
        schema = settings.analytics_schema()
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", (schema,)
        ).fetchall()
        for (name,) in tables:
            n = conn.execute(f'SELECT count(*) FROM "{schema}"."{name}"').fetchone()[0]
            print(f"  {schema}.{name:<32} {n:>9} rows")
    wh = settings.connection("warehouse")
    print("\nWhere to look next:")
    url = failure_text.redact(wh.libpq_url()).replace(":***@", "@")  # the password stays in secrets.env
    print(f"  tables:   psql '{url}' -c 'select * from {settings.analytics_schema()}.kpi_branch_month limit 5'"
          + (f"\n            password: AIRFLOW_CONN_WAREHOUSE's, on the embedded cluster SPM_PG_SUPERUSER_PASSWORD in "
             f"{settings.local_dir() / 'secrets.env'}" if wh.password else ""))
    print(f"  reports:  {settings.reports_dir()}/latest/index.html (run report, dbt docs, GX Data Docs)")
    print(f"  logs:     {settings.local_dir() / 'logs'}")
    print(f"  Airflow:  make airflow   (UI on http://{settings.get('SPM_AIRFLOW_HOST')}:{settings.get('SPM_AIRFLOW_PORT')})")
    print("  rerun:    make run RUN_DATE=YYYY-MM-DD     stop: make stop     rollback: make rollback")


# --------------------------------------------------------------------------- commands


def cmd_env(args: argparse.Namespace) -> int:
    applied = environment.configure()
    keys = sorted(set(applied) | {k for k in os.environ if k.startswith("AIRFLOW_CONN_")})
    for key in keys:
        print(f"export {key}={shlex.quote(os.environ[key])}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    environment.configure()
    if not args.date:
        raise UserError("RUN_DATE is required, e.g. make run RUN_DATE=2024-06-30")
    try:
        as_of = date.fromisoformat(args.date)
    except ValueError:
        raise UserError(f"RUN_DATE must be YYYY-MM-DD, got {args.date!r}") from None
    try:
        pipeline.preflight()  # a wrong setting: one line, before Airflow starts and before any extraction
    except preflight.ConfigError as exc:
        raise UserError(f"configuration: {exc}") from None
    conf = {"full_refresh": bool(args.full_refresh), "reconcile_keys": bool(args.reconcile_keys)}
    rc, failure = airflow_dags_test("spm_nightly", as_of, conf)
    print_summary(as_of)
    if rc:
        # last, where the eye lands: what failed, with its numbers, the run report, what to do next
        print("\nThe night FAILED:\n" + failure, file=sys.stderr)
        return 1
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    """Run the nightly DAG for each as-of date in [start, end], in order."""
    environment.configure()
    start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
    day, failures = start, 0
    while day <= end:
        print(f"== {day}", flush=True)
        rc, failure = airflow_dags_test("spm_nightly", day)
        if rc:
            failures += 1
            print(f"The night of {day} FAILED:\n{failure}", file=sys.stderr)
        day += timedelta(days=args.step_days)
    return 1 if failures else 0


def cmd_rollback(args: argparse.Namespace) -> int:
    environment.configure()
    result = pipeline.rollback()  # the same stage as the spm_rollback DAG
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_unlock(args: argparse.Namespace) -> int:
    """Give back the warehouse lease of a night that died (refused while one of its stages runs)."""
    environment.configure()
    with connect(autocommit=True) as conn:
        print(night_lock.unlock(conn))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    cluster = environment.embedded_cluster()
    if not cluster.exists():
        print("no embedded PostgreSQL here: nothing to stop")
        return 0
    print("stopped embedded PostgreSQL" if cluster.stop() else "embedded PostgreSQL was not running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    environment.configure()
    print_summary(date.today())
    return 0


def cmd_airflow(args: argparse.Namespace) -> int:
    """The deployed Airflow in the foreground: UI/API, scheduler, dag-processor, triggerer (+ Celery worker)."""
    environment.configure()
    try:
        stack = airflow_stack.stack_settings(args.executor)
        airflow_stack.check_metadata_database()
        if stack.executor == "celery":
            airflow_stack.check_broker(stack.broker_url)
    except airflow_stack.StackError as exc:
        raise UserError(str(exc)) from None
    environment.migrate_airflow_db()
    return airflow_stack.run_stack(stack)


def cmd_airflow_component(args: argparse.Namespace) -> int:
    """One Airflow component, as docker-compose's services and `make airflow` start it."""
    environment.configure()
    try:
        airflow_stack.exec_component(args.component)
    except airflow_stack.StackError as exc:
        raise UserError(str(exc)) from None
    return 0  # not reached: exec_component becomes the airflow command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spm-warehouse", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("env", help="print the shell exports the commands use").set_defaults(func=cmd_env)
    p = sub.add_parser("run", help="run the nightly DAG once for an as-of date")
    p.add_argument("--date")
    p.add_argument("--full-refresh", action="store_true")
    p.add_argument("--reconcile-keys", action="store_true")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("backfill", help="run the nightly DAG for a range of as-of dates")
    p.add_argument("--start", required=True)
    p.add_argument("--end", required=True)
    p.add_argument("--step-days", type=int, default=1)
    p.set_defaults(func=cmd_backfill)
    sub.add_parser("rollback", help="restore the previous publication").set_defaults(func=cmd_rollback)
    sub.add_parser("stop", help="stop the embedded PostgreSQL").set_defaults(func=cmd_stop)
    sub.add_parser("unlock", help="give back the warehouse lease of a night that died").set_defaults(func=cmd_unlock)
    sub.add_parser("status", help="what is published now").set_defaults(func=cmd_status)
    p = sub.add_parser("airflow", help="run the deployed Airflow in the foreground (Ctrl-C stops it)")
    p.add_argument("--executor", choices=("local", "celery"), help="default: SPM_AIRFLOW_EXECUTOR (local)")
    p.set_defaults(func=cmd_airflow)
    p = sub.add_parser("airflow-component", help="one Airflow component (what each docker-compose service runs)")
    p.add_argument("component", help="api-server, scheduler, dag-processor, triggerer or celery-worker")
    p.set_defaults(func=cmd_airflow_component)
    return dispatch(parser.parse_args(argv))


def dispatch(args: argparse.Namespace) -> int:
    """Run the chosen command: a user error is one line on stderr and exit 2, never a traceback."""
    return run_command(args, (UserError, EmbeddedPostgresError, LookupError, publication.PublishError,
                              publication.PublishBlocked, night_lock.NightBusy))


if __name__ == "__main__":
    sys.exit(main())
