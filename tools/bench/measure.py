"""What a benchmark run measures, read from where the pipeline already records it.

Why no timers of our own around the stages: the numbers in the report must
be the ones an operator sees for a real night. Stage seconds come from
Airflow's task instances (start/end written by `airflow dags test` into its
metadata database), rows from the stages' own records (meta.load_manifest,
the XCom return values, dbt's run_results.json). The raw COPY limit and the
profile of the slowest model are measured here because nothing else does.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import time
from datetime import date, datetime, timezone
from pathlib import Path

import psycopg
from psycopg import sql

from spm_warehouse.embedded_postgres import find_bindir

log = logging.getLogger(__name__)

# Airflow task_id prefix (the task group) -> stage name in the report, in DAG order.
STAGES = ["preflight", "prepare", "extract_mis", "extract_surveys", "build", "gate", "publish", "report"]
RAW_COPY_SCHEMA = "bench_rawcopy"
# Source tables with a change cursor (see /work/notes: incremental extraction).
CURSOR_COLUMN = "last_modified_on_utc"


def stage_of(task_id: str) -> str:
    return task_id.split(".", 1)[0]


# --------------------------------------------------------------------------- Airflow


def airflow_run(airflow_url: str, dag_id: str, as_of: date) -> dict:
    """The latest DAG run for that logical date: state, task instances, XCom return values."""
    logical = datetime(as_of.year, as_of.month, as_of.day, tzinfo=timezone.utc)
    with psycopg.connect(airflow_url, autocommit=True) as conn:
        run = conn.execute(
            """SELECT id, run_id, state, start_date, end_date FROM dag_run
               WHERE dag_id = %s AND logical_date = %s ORDER BY id DESC LIMIT 1""",
            (dag_id, logical),
        ).fetchone()
        if run is None:
            return {"run_id": None, "state": "missing", "tasks": [], "xcom": {}}
        dr_id, run_id, state, start, end = run
        tasks = [
            {
                "task_id": task_id,
                "stage": stage_of(task_id),
                "state": ti_state,
                "start": ti_start.timestamp() if ti_start else None,
                "end": ti_end.timestamp() if ti_end else None,
                "seconds": float(duration) if duration is not None else None,
                "try_number": try_number,
            }
            for task_id, ti_state, ti_start, ti_end, duration, try_number in conn.execute(
                """SELECT task_id, state, start_date, end_date, duration, try_number FROM task_instance
                   WHERE dag_id = %s AND run_id = %s ORDER BY start_date NULLS LAST, task_id""",
                (dag_id, run_id),
            )
        ]
        xcom = {
            task_id: value
            for task_id, value in conn.execute(
                "SELECT task_id, value FROM xcom WHERE dag_run_id = %s AND key = 'return_value'", (dr_id,)
            )
        }
    for task_id, value in list(xcom.items()):
        if isinstance(value, str):  # older serialisations store a JSON string
            try:
                xcom[task_id] = json.loads(value)
            except ValueError:
                pass
    return {"run_id": run_id, "state": state, "start": start.timestamp() if start else None,
            "end": end.timestamp() if end else None, "tasks": tasks, "xcom": xcom}


# --------------------------------------------------------------------------- warehouse records


def _columns(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    return [r[0] for r in conn.execute(
        """SELECT column_name FROM information_schema.columns
           WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position""",
        (schema, table),
    )]


def load_manifest(conn: psycopg.Connection, run_id: str) -> list[dict]:
    """meta.load_manifest rows of one run (whatever columns the extraction records)."""
    cols = _columns(conn, "meta", "load_manifest")
    if not cols or "run_id" not in cols:
        return []
    order = "started_at" if "started_at" in cols else cols[0]
    cur = conn.execute(
        sql.SQL("SELECT * FROM meta.load_manifest WHERE run_id = %s ORDER BY {}").format(sql.Identifier(order)),
        (run_id,),
    )
    names = [d.name for d in cur.description]
    out = []
    for row in cur:
        item = dict(zip(names, row))
        out.append({k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v)) for k, v in item.items()})
    return out


def is_mis_entry(item: dict) -> bool:
    """The manifest also holds the survey loader's files (raw_kobo.*, source file:/api:): not MIS tables."""
    source = str(item.get("source") or "")
    table = str(item.get("table_name") or "")
    return not source.startswith(("file:", "api:")) and not table.startswith("raw_kobo")


def mis_manifest(manifest: list[dict]) -> list[dict]:
    return [m for m in manifest if is_mis_entry(m)]


def manifest_table(item: dict) -> str:
    name = str(item.get("table_name") or item.get("source_table") or item.get("table") or "?")
    return name.split(".")[-1]


def reconciliations(conn: psycopg.Connection, run_id: str) -> list[dict]:
    """meta.reconciliations rows of one run: key comparisons run inside the extraction task."""
    if not _columns(conn, "meta", "reconciliations"):
        return []
    return [{"table": t, "source_keys": int(k or 0), "seconds": float(sec or 0)} for t, k, sec in conn.execute(
        "SELECT table_name, source_keys, seconds FROM meta.reconciliations WHERE run_id = %s ORDER BY 1", (run_id,))]


def count_checks(conn: psycopg.Connection, run_id: str) -> dict[str, int]:
    if not _columns(conn, "meta", "check_results"):
        return {}
    return {status: n for status, n in conn.execute(
        "SELECT status, count(*) FROM meta.check_results WHERE run_id = %s GROUP BY status", (run_id,))}


def published_rows(conn: psycopg.Connection, schema: str) -> tuple[int, int]:
    """(tables, rows) in the published schema."""
    tables = [r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))]
    rows = 0
    for name in tables:
        rows += conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(name))).fetchone()[0]
    return len(tables), rows


def survey_rows(conn: psycopg.Connection, run_id: str) -> int | None:
    cols = _columns(conn, "raw_kobo", "submissions")
    if not cols:
        return None
    run_col = "_run_id" if "_run_id" in cols else ("run_id" if "run_id" in cols else None)
    if run_col is None:
        return None
    return conn.execute(sql.SQL("SELECT count(*) FROM raw_kobo.submissions WHERE {} = %s").format(
        sql.Identifier(run_col)), (run_id,)).fetchone()[0]


# --------------------------------------------------------------------------- dbt


def dbt_nodes(run_results: Path) -> list[dict]:
    """Every node of a dbt invocation: id, kind, status, seconds, rows, compiled SQL."""
    if not run_results.exists():
        return []
    data = json.loads(run_results.read_text())
    nodes = []
    for r in data.get("results", []):
        uid = r.get("unique_id", "")
        nodes.append({
            "unique_id": uid,
            "kind": uid.split(".", 1)[0],
            "name": uid.split(".")[2] if uid.count(".") >= 2 else uid,
            "status": str(r.get("status")),
            "seconds": float(r.get("execution_time") or 0.0),
            "rows": (r.get("adapter_response") or {}).get("rows_affected"),
            "relation": r.get("relation_name"),
            "compiled_code": r.get("compiled_code"),
        })
    return nodes


def slowest(nodes: list[dict], n: int = 5, kinds: tuple[str, ...] = ("model", "test", "seed", "snapshot")) -> list[dict]:
    chosen = [x for x in nodes if x["kind"] in kinds]
    return [{k: v for k, v in x.items() if k != "compiled_code"}
            for x in sorted(chosen, key=lambda x: x["seconds"], reverse=True)[:n]]


def explain_slowest_model(wh_url: str, nodes: list[dict], build_schema: str, published_schema: str,
                          max_lines: int = 400) -> dict | None:
    """EXPLAIN (ANALYZE, BUFFERS) of the slowest model's compiled SELECT, run again after the night.

    The build schema no longer exists after publication (it was swapped into
    the published schema), so its name is replaced by the published one; the
    plan is that of the same query over the same data.
    """
    models = [x for x in nodes if x["kind"] == "model" and x.get("compiled_code")]
    if not models:
        return None
    top = max(models, key=lambda x: x["seconds"])
    query = top["compiled_code"].strip().rstrip(";")
    query = query.replace(f'"{build_schema}"', f'"{published_schema}"')
    query = re.sub(rf"\b{re.escape(build_schema)}\.", f"{published_schema}.", query)
    started = time.monotonic()
    try:
        with psycopg.connect(wh_url, autocommit=True) as conn:
            conn.execute("SET statement_timeout = '30min'")
            plan = [r[0] for r in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + query)]
    except psycopg.Error as exc:
        return {"model": top["unique_id"], "seconds_in_build": top["seconds"], "error": str(exc).strip()[:500]}
    if len(plan) > max_lines:
        plan = plan[:max_lines] + [f"... ({len(plan) - max_lines} more lines)"]
    return {"model": top["unique_id"], "seconds_in_build": top["seconds"],
            "explain_seconds": round(time.monotonic() - started, 1), "plan": plan}


# --------------------------------------------------------------------------- source changes


def day_changes(mis_url: str, day: date) -> dict[str, int]:
    """Rows of each source table whose change cursor falls on `day` (the simulated day's activity)."""
    out: dict[str, int] = {}
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    with psycopg.connect(mis_url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            """SELECT table_name FROM information_schema.columns
               WHERE table_schema = 'public' AND column_name = %s ORDER BY 1""", (CURSOR_COLUMN,))]
        for t in tables:
            out[t] = conn.execute(sql.SQL(
                "SELECT count(*) FROM public.{} WHERE {} >= %s AND {} < %s + interval '1 day'").format(
                sql.Identifier(t), sql.Identifier(CURSOR_COLUMN), sql.Identifier(CURSOR_COLUMN)),
                (start, start)).fetchone()[0]
    return out


# --------------------------------------------------------------------------- raw COPY limit


def _psql() -> str | None:
    try:

        candidate = find_bindir() / "psql"
        if candidate.is_file():
            return str(candidate)
    except Exception:  # noqa: BLE001 - no server binaries: look on PATH
        pass
    return shutil.which("psql")


def raw_copy_limit(mis_url: str, wh_url: str) -> dict:
    """COPY (SELECT ...) TO STDOUT piped into COPY ... FROM STDIN, per extracted table.

    Same tables, same columns (those raw_mis keeps, i.e. without the PII
    our extraction leaves behind), same rows, into an empty schema of the
    same warehouse without keys: the most a load can do on this machine.
    Two psql processes joined by a pipe when psql is available (C on both
    ends); else psycopg on both ends.
    """
    psql = _psql()
    tables: list[dict] = []
    with psycopg.connect(wh_url, autocommit=True) as wh, psycopg.connect(mis_url, autocommit=True) as mis:
        source_tables = {r[0] for r in mis.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
        raw_tables = [r[0] for r in wh.execute(
            """SELECT table_name FROM information_schema.tables
               WHERE table_schema = 'raw_mis' AND table_type = 'BASE TABLE' ORDER BY 1""")]
        wh.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(RAW_COPY_SCHEMA)))
        wh.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(RAW_COPY_SCHEMA)))
        for table in raw_tables:
            if table not in source_tables:
                continue
            source_cols = set(_columns(mis, "public", table))
            cols = [c for c in _columns(wh, "raw_mis", table) if not c.startswith("_") and c in source_cols]
            if not cols:
                continue
            col_list = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
            wh.execute(sql.SQL("CREATE TABLE {}.{} AS SELECT {} FROM raw_mis.{} WITH NO DATA").format(
                sql.Identifier(RAW_COPY_SCHEMA), sql.Identifier(table), col_list, sql.Identifier(table)))
            out_sql = sql.SQL("COPY (SELECT {} FROM public.{}) TO STDOUT").format(
                col_list, sql.Identifier(table)).as_string(mis)
            in_sql = sql.SQL("COPY {}.{} ({}) FROM STDIN").format(
                sql.Identifier(RAW_COPY_SCHEMA), sql.Identifier(table), col_list).as_string(wh)
            started = time.monotonic()
            rows = _pipe_psql(psql, mis_url, wh_url, out_sql, in_sql) if psql else _pipe_psycopg(mis, wh, out_sql, in_sql)
            seconds = time.monotonic() - started
            tables.append({"table": table, "rows": rows, "seconds": round(seconds, 3), "columns": len(cols)})
            # dropped at once: the disk then holds one extra copy of the largest table, not of all
            wh.execute(sql.SQL("DROP TABLE {}.{}").format(sql.Identifier(RAW_COPY_SCHEMA), sql.Identifier(table)))
        wh.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(RAW_COPY_SCHEMA)))
    rows = sum(t["rows"] for t in tables)
    seconds = sum(t["seconds"] for t in tables)
    return {"tool": "psql | psql" if psql else "psycopg COPY pipe", "tables": tables, "rows": rows,
            "seconds": round(seconds, 3), "rows_per_s": rows / seconds if seconds else None}


def _pipe_psql(psql: str, src_url: str, dst_url: str, out_sql: str, in_sql: str) -> int:
    src = subprocess.Popen([psql, src_url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", out_sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dst = subprocess.run([psql, dst_url, "-X", "-v", "ON_ERROR_STOP=1", "-c", in_sql],
                         stdin=src.stdout, capture_output=True, text=True)
    src.stdout.close()
    src_err = src.stderr.read().decode(errors="replace")
    src.wait()
    if src.returncode != 0 or dst.returncode != 0:
        raise RuntimeError(f"raw COPY failed: {src_err.strip()} {dst.stderr.strip()}")
    match = re.search(r"COPY (\d+)", dst.stdout)
    return int(match.group(1)) if match else 0


def _pipe_psycopg(src: psycopg.Connection, dst: psycopg.Connection, out_sql: str, in_sql: str) -> int:
    with src.cursor() as scur, dst.cursor() as dcur:
        with scur.copy(out_sql) as out, dcur.copy(in_sql) as inp:
            for chunk in out:
                inp.write(chunk)
        return dcur.rowcount


# --------------------------------------------------------------------------- the day's loans, hidden costs


def day_changed_loans(mis_url: str, day: date) -> int:
    """Distinct loans with a source row (the loan, a transaction, an installment) changed on `day`."""
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    with psycopg.connect(mis_url, autocommit=True) as conn:
        return int(conn.execute(
            """SELECT count(*) FROM (
                   SELECT id AS loan_id FROM m_loan
                   WHERE last_modified_on_utc >= %(s)s AND last_modified_on_utc < %(s)s + interval '1 day'
                   UNION SELECT loan_id FROM m_loan_transaction
                   WHERE last_modified_on_utc >= %(s)s AND last_modified_on_utc < %(s)s + interval '1 day'
                   UNION SELECT loan_id FROM m_loan_repayment_schedule
                   WHERE last_modified_on_utc >= %(s)s AND last_modified_on_utc < %(s)s + interval '1 day'
               ) changed""", {"s": start}).fetchone()[0])


_GATE_KIND = re.compile(r"gate checks of kind (\S+) took ([\d.]+)s")
_DBT_LOG_TS = re.compile(r"(\d\d):(\d\d):(\d\d\.\d+)")


def gate_seconds_by_kind(log_file: Path) -> dict[str, float]:
    """Seconds of each kind of gate check, from the gate's own log lines in the DAG run's output."""
    out: dict[str, float] = {}
    try:
        with open(log_file, errors="replace") as fh:
            for line in fh:
                match = _GATE_KIND.search(line)
                if match:
                    out[match.group(1)] = float(match.group(2))
    except OSError:
        return {}
    return out


def _log_seconds(line: str) -> float | None:
    match = _DBT_LOG_TS.search(line)
    if not match:
        return None
    return int(match.group(1)) * 3600 + int(match.group(2)) * 60 + float(match.group(3))


def dbt_parse_seconds(dbt_log: Path) -> float | None:
    """dbt's start-up and parse in the night's first dbt invocation (the build): from 'Running with
    dbt=' to 'Found <n> models' in its log file."""
    start = None
    try:
        with open(dbt_log, errors="replace") as fh:
            for line in fh:
                if start is None and "Running with dbt=" in line:
                    start = _log_seconds(line)
                elif start is not None and "Found " in line and " models" in line:
                    end = _log_seconds(line)
                    if end is None:
                        return None
                    return round((end - start) % 86400, 2)
    except OSError:
        return None
    return None
