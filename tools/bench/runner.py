"""One benchmark run: generate, full night, raw COPY limit, one simulated day, nightly night.

Why the real DAG (`airflow dags test spm_nightly <date>`) and not the stage
functions in-process: the targets are about the night an operator gets,
and that night includes Airflow (parsing the DAG, creating the run, task
bookkeeping, XCom) and dbt as a child process. Measuring the stage functions
alone would flatter us by exactly the overhead a real install pays. The
per-stage seconds therefore come from Airflow's own task instances, and the
difference between the wall time of `dags test` and the sum of the tasks is
reported as "Airflow overhead".

Isolation: every scale gets its own databases (<prefix>_mis, _wh, _airflow)
on the server (the project's embedded PostgreSQL unless --server-url is
given) and its own local folder (Airflow home, dbt targets, survey drops,
logs), so a benchmark never touches `make demo`'s warehouse and scales never
mix. The warehouse is recreated empty for every run (the first load must be
a full load); the MIS is regenerated unless --keep finds a pristine copy.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from spm_warehouse import environment, paths, settings
from tools.bench import disk, measure
from tools.bench.memory import TreeMemory
from tools.demo import fineract as demo_mis
from tools.demo import surveys as demo_surveys

log = logging.getLogger(__name__)

DAG_ID = "spm_nightly"
MARKER_TABLE = "spm_bench_info"
GENERATOR_VERSION = 1


class BenchError(RuntimeError):
    """A problem the user must act on; the message says what."""


@dataclass
class BenchConfig:
    scale: int
    seed: int
    as_of: date
    server_url: str | None
    db_prefix: str
    work_dir: Path
    out: Path
    keep: bool = False
    drop_after: bool = False
    profile: str = "auto"  # auto | always | never
    timeout_s: float | None = None
    force: bool = False
    continue_after_failure: bool = False
    rerender: bool = False
    poll_s: float = 0.25
    day_loans: int | None = None  # the simulated day touches exactly this many loans (None: grows with clients)
    second_night: bool = True  # a second simulated day and night: the steady state (three publications' marts)


def with_database(server_url: str, dbname: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def airflow_conn_uri(url: str) -> str:
    """AIRFLOW_CONN_* form of a postgresql:// URL."""
    return "postgres://" + url.split("://", 1)[1]


def _db_exists(server_url: str, name: str) -> bool:
    with psycopg.connect(server_url, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def _drop_db(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _create_db(server_url: str, name: str, template: str | None = None) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if template:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
        else:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


class Bench:
    """Holds the names and URLs of one scale's run; methods are the steps, in order."""

    def __init__(self, cfg: BenchConfig, server_url: str, server_kind: str):
        self.cfg = cfg
        self.server_url = server_url
        self.server_kind = server_kind
        p = cfg.db_prefix
        self.db = {"mis": f"{p}_mis", "mis_gen": f"{p}_mis_gen", "wh": f"{p}_wh", "airflow": f"{p}_airflow"}
        self.url = {k: with_database(server_url, v) for k, v in self.db.items()}
        self.local = cfg.work_dir / "local"
        self.drop_dir = cfg.work_dir / "survey_drop"
        self.surveys_gen = cfg.work_dir / "surveys_gen"
        self.log_dir = cfg.work_dir / "logs"

    # ------------------------------------------------------------------ set-up

    def configure_environment(self) -> None:
        """Point every connection and folder at this scale's own databases and folders."""
        self.local.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not _db_exists(self.server_url, self.db["airflow"]):
            _create_db(self.server_url, self.db["airflow"])
        os.environ.update({
            "SPM_LOCAL_DIR": str(self.local),
            "SPM_REPORTS_DIR": str(self.local / "reports"),
            "SPM_SURVEY_DROP_DIR": str(self.drop_dir),
            "AIRFLOW_HOME": str(self.local / "airflow"),
            "AIRFLOW_CONN_WAREHOUSE": airflow_conn_uri(self.url["wh"]),
            "AIRFLOW_CONN_MIS_FINERACT": airflow_conn_uri(self.url["mis"]),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://" + self.url["airflow"].split("://", 1)[1],
        })
        environment.configure(start_embedded=False)
        started = time.monotonic()
        environment.migrate_airflow_db()
        log.info("Airflow metadata ready in %.1fs", time.monotonic() - started)

    # ------------------------------------------------------------------ generation (not timed)

    def _marker(self) -> dict:
        return {"clients": self.cfg.scale, "seed": self.cfg.seed, "as_of": self.cfg.as_of.isoformat(),
                "generator": GENERATOR_VERSION}

    def _pristine(self, dbname: str) -> bool:
        """The database holds exactly the generated data we want (no simulated days)."""
        if not _db_exists(self.server_url, dbname):
            return False
        with psycopg.connect(with_database(self.server_url, dbname), autocommit=True) as conn:
            if conn.execute("SELECT to_regclass(%s)", (f"public.{MARKER_TABLE}",)).fetchone()[0] is None:
                return False
            row = conn.execute(f"SELECT info FROM public.{MARKER_TABLE} LIMIT 1").fetchone()
        return bool(row) and row[0] == self._marker() and (self.surveys_gen / ".complete").exists()

    def _generate_into(self, dbname: str) -> dict:

        _create_db(self.server_url, dbname)
        url = with_database(self.server_url, dbname)
        with psycopg.connect(url) as conn:
            t0 = time.monotonic()
            counts = demo_mis.build_demo_mis(conn, clients=self.cfg.scale, seed=self.cfg.seed, as_of=self.cfg.as_of)
            conn.commit()
            mis_s = time.monotonic() - t0
            if self.surveys_gen.exists():
                shutil.rmtree(self.surveys_gen)
            self.surveys_gen.mkdir(parents=True)
            t1 = time.monotonic()
            surveys = demo_surveys.generate_surveys(conn, out_dir=self.surveys_gen, seed=self.cfg.seed,
                                                    as_of=self.cfg.as_of)
            conn.commit()
            surveys_s = time.monotonic() - t1
            conn.execute(f"CREATE TABLE public.{MARKER_TABLE} (info jsonb NOT NULL)")
            conn.execute(f"INSERT INTO public.{MARKER_TABLE} VALUES (%s)", (json.dumps(self._marker()),))
            conn.commit()
        (self.surveys_gen / ".complete").write_text(json.dumps(self._marker()))
        return {"reused": False, "mis_seconds": round(mis_s, 1), "surveys_seconds": round(surveys_s, 1),
                "mis_rows": counts if isinstance(counts, dict) else {},
                "surveys": _jsonable(surveys)}

    def generate(self) -> dict:
        """The demo MIS and survey exports at this scale; the MIS ends up in <prefix>_mis, untouched."""
        if self.cfg.keep and not self._pristine(self.db["mis_gen"]) and self._pristine(self.db["mis"]):
            # an earlier run stopped before simulating its day: its MIS is still as generated
            info = {"reused": True, "reused_in_place": True}
        elif self.cfg.keep:
            info = {"reused": True}
            if not self._pristine(self.db["mis_gen"]):
                info = self._generate_into(self.db["mis_gen"])
            t0 = time.monotonic()
            _create_db(self.server_url, self.db["mis"], template=self.db["mis_gen"])
            info["clone_seconds"] = round(time.monotonic() - t0, 1)
        else:
            info = self._generate_into(self.db["mis"])
        info["mis_rows"] = info.get("mis_rows") or self._source_counts()
        if self.drop_dir.exists():
            shutil.rmtree(self.drop_dir)
        self.drop_dir.mkdir(parents=True)
        for path in self.surveys_gen.iterdir():  # the export files only: the loader reads the top level
            if path.is_file() and not path.name.startswith("."):
                try:  # a hard link: at 1M clients the exports are GBs, and the loader only moves them
                    os.link(path, self.drop_dir / path.name)
                except OSError:
                    shutil.copy2(path, self.drop_dir / path.name)
        _create_db(self.server_url, self.db["wh"])
        return info

    def _source_counts(self) -> dict[str, int]:
        with psycopg.connect(self.url["mis"], autocommit=True) as conn:
            names = [r[0] for r in conn.execute(
                """SELECT table_name FROM information_schema.tables
                   WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> %s
                   ORDER BY 1""", (MARKER_TABLE,))]
            return {name: conn.execute(sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(name))).fetchone()[0]
                    for name in names}

    # ------------------------------------------------------------------ the nights (timed)

    def run_night(self, as_of: date, label: str) -> dict:
        """`airflow dags test spm_nightly <as_of>` with its process tree's memory watched."""
        cmd = [environment.venv_bin("airflow"), "dags", "test", DAG_ID, as_of.isoformat()]
        log_file = self.log_dir / f"{label}_{as_of.isoformat()}.log"
        print(f"  {label}: airflow dags test {DAG_ID} {as_of} (log: {log_file})", flush=True)
        started_unix = time.time()
        t0 = time.monotonic()
        sampler = disk.DiskSampler(self.server_url, [self.db["mis"], self.db["wh"], self.db["airflow"]]).start()
        with open(log_file, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            memory = TreeMemory(proc.pid, interval_s=self.cfg.poll_s).start()
            try:
                rc = proc.wait(timeout=self.cfg.timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
                print(f"  {label}: killed after {self.cfg.timeout_s:.0f}s (--timeout)", flush=True)
            finally:
                memory.stop()
                sampler.stop()
        wall = time.monotonic() - t0
        run = measure.airflow_run(self.url["airflow"], DAG_ID, as_of)
        night = {"label": label, "as_of": as_of.isoformat(), "returncode": rc, "wall_seconds": round(wall, 2),
                 "started": datetime.fromtimestamp(started_unix, timezone.utc).isoformat(timespec="seconds"),
                 "run_id": run["run_id"], "state": run["state"], "log": str(log_file)}
        night.update(self._stages(run, memory))
        night["first_task_startup_s"] = first_task_startup(log_file, run.get("tasks") or [])
        night["disk"] = sampler.summary()
        night["disk"]["layers"] = self.layer_bytes()
        night["hidden"] = {
            "airflow_startup_s": round((night["first_task_startup_s"] or 0.0)
                                       + max(0.0, wall - (night.get("task_seconds") or 0.0)), 1),
            "dbt_parse_s": measure.dbt_parse_seconds(paths.dbt_target_dir(run["run_id"]) / "logs" / "dbt.log")
            if run["run_id"] else None,
            "gate_s_by_kind": measure.gate_seconds_by_kind(log_file),
        }
        night["all_tasks_succeeded"] = bool(run.get("tasks")) and all(t["state"] == "success" for t in run["tasks"])
        night["memory"] = {
            "max_process_mb": round(memory.max_process_mb(), 1),
            "max_concurrent_mb": round(memory.max_concurrent_mb(), 1),
            "by_process": {k: round(v, 1) for k, v in sorted(memory.by_label().items(), key=lambda kv: -kv[1])},
            "samples": len(memory.samples),
        }
        if not night_ok(night):
            tail = log_file.read_text(errors="replace").splitlines()
            hits = [line for line in tail if "StageFailed" in line or "ERROR" in line or "Error" in line]
            night["failure"] = "\n".join((hits or tail)[-30:])
        print(f"  {label}: {run['state']} in {wall:.1f}s", flush=True)
        return night

    def _stages(self, run: dict, memory: TreeMemory) -> dict:
        """Per stage: state, seconds (Airflow task durations), rows and rows/s, sampled peak memory."""
        run_id = run["run_id"]
        manifest: list[dict] = []
        reconciled: list[dict] = []
        checks: dict[str, int] = {}
        published = (0, 0)
        surveys = None
        if run_id:
            with psycopg.connect(self.url["wh"], autocommit=True) as conn:
                manifest = measure.load_manifest(conn, run_id)
                reconciled = measure.reconciliations(conn, run_id)
                checks = measure.count_checks(conn, run_id)
                published = measure.published_rows(conn, settings.analytics_schema())
                surveys = measure.survey_rows(conn, run_id)
        nodes = measure.dbt_nodes(paths.dbt_target_dir(run_id) / "target" / "run_results.json") if run_id else []
        xcom = run.get("xcom") or {}

        def xcom_of(stage: str) -> dict:
            for task_id, value in xcom.items():
                if measure.stage_of(task_id) == stage and isinstance(value, dict):
                    return value
            return {}

        rows: dict[str, tuple[int | None, str]] = {
            "extract_mis": (sum(int(m.get("rows_read") or 0) for m in measure.mis_manifest(manifest))
                            if measure.mis_manifest(manifest) else xcom_of("extract_mis").get("rows_read"), "rows read"),
            "extract_surveys": (surveys if surveys is not None else _first_int(xcom_of("extract_surveys")),
                                "submissions"),
            "build": (sum(int(n["rows"]) for n in nodes if n["kind"] in ("model", "seed") and isinstance(n["rows"], int))
                      if nodes else None, "rows built"),
            "gate": (sum(checks.values()) if checks else None, "checks"),
            "publish": (published[1] if published[0] else None, "rows published"),
        }
        stages = []
        extra = []  # tasks the DAG has gained since this tool was written still get a row
        for t in sorted(run.get("tasks", []), key=lambda t: t["start"] or 0):
            if t["stage"] not in measure.STAGES and t["stage"] not in extra:
                extra.append(t["stage"])
        for stage in measure.STAGES + extra:
            tis = [t for t in run.get("tasks", []) if t["stage"] == stage]
            states = sorted({t["state"] or "none" for t in tis})
            seconds = sum(t["seconds"] or 0.0 for t in tis) if tis else None
            starts = [t["start"] for t in tis if t["start"]]
            ends = [t["end"] for t in tis if t["end"]]
            n, unit = rows.get(stage, (None, ""))
            stages.append({
                "stage": stage,
                "state": ",".join(states) if tis else "not run",
                "seconds": round(seconds, 2) if seconds is not None else None,
                "rows": n,
                "unit": unit,
                "rows_per_s": round(n / seconds, 1) if n and seconds and unit not in ("checks",) else None,
                "peak_mb": round(memory.max_concurrent_mb(min(starts), max(ends)), 1) if starts and ends else None,
            })
        task_total = sum(s["seconds"] or 0.0 for s in stages)
        return {
            "stages": stages,
            "task_seconds": round(task_total, 2),
            "manifest": manifest,
            "reconciliations": reconciled,
            "checks": checks,
            "published_tables": published[0],
            "dbt": {"nodes": len(nodes), "models": sum(1 for n in nodes if n["kind"] == "model"),
                    "tests": sum(1 for n in nodes if n["kind"] == "test"),
                    "elapsed": round(sum(n["seconds"] for n in nodes), 1),
                    "slowest": measure.slowest(nodes, 6)},
            "_nodes": nodes,  # dropped before the report is stored (compiled SQL is large)
        }

    # ------------------------------------------------------------------ raw limit, the simulated day

    def layer_bytes(self) -> dict:
        """Bytes of the source and of each warehouse layer now (see disk.layer_bytes)."""
        try:
            return disk.layer_bytes(self.server_url, self.db["mis"], self.url["wh"], settings.analytics_schema())
        except psycopg.Error as exc:
            return {"error": str(exc).strip()[:300]}

    def raw_copy(self) -> dict:
        print("  raw COPY limit: same tables and columns into an empty schema", flush=True)
        result = measure.raw_copy_limit(self.url["mis"], self.url["wh"])
        print(f"  raw COPY limit: {result['rows']} rows in {result['seconds']:.1f}s ({result['tool']})", flush=True)
        return result

    def simulate_day(self, day: date) -> dict:
        """One day of branch activity in the MIS (not timed), and the changes it made."""

        if not hasattr(demo_mis, "simulate_days"):
            raise BenchError("the demo generator has no simulate_days(conn, start, days, seed): cannot simulate a day")
        t0 = time.monotonic()
        with psycopg.connect(self.url["mis"]) as conn:
            # from now on this MIS is no longer as generated: --keep must not reuse it
            conn.execute(f"UPDATE public.{MARKER_TABLE} SET info = info || %s::jsonb",
                         (json.dumps({"simulated": day.isoformat()}),))
            conn.commit()
            result = demo_mis.simulate_days(conn, start=day, days=1, seed=self.cfg.seed,
                                            day_loans=self.cfg.day_loans)
            conn.commit()
            # the day's fieldwork: a few surveys (1 per 100 loans touched, or per 400 clients)
            n_surveys = min(999, max(1, (self.cfg.day_loans or self.cfg.scale // 4) // 100))
            surveys = demo_surveys.write_day_submissions(conn, self.drop_dir, self.cfg.seed, day, n_surveys)
        seconds = time.monotonic() - t0
        changes = measure.day_changes(self.url["mis"], day)
        loans = measure.day_changed_loans(self.url["mis"], day)
        print(f"  simulated {day}: {sum(changes.values())} source rows of {loans} loans changed, "
              f"{surveys['submissions']} surveys ({seconds:.1f}s, not timed)", flush=True)
        return {"day": day.isoformat(), "seconds": round(seconds, 1), "generator": _jsonable(result),
                "day_loans": self.cfg.day_loans, "changed_loans": loans, "surveys": surveys,
                "changed_rows": changes, "changed_total": sum(changes.values())}

    def profile(self, nodes: list[dict]) -> dict | None:
        return measure.explain_slowest_model(self.url["wh"], nodes, settings.build_schema(),
                                             settings.analytics_schema())

    def drop_databases(self) -> None:
        for name in self.db.values():
            _drop_db(self.server_url, name)


def night_ok(night: dict) -> bool:
    """Complete = the process exited 0, the DAG run succeeded and so did every task.

    The task check matters: a run whose gate blocked publication can still end
    "success" when its only leaf task (the report, trigger rule ALL_DONE) succeeds.
    """
    return night.get("returncode") == 0 and night.get("state") == "success" and bool(night.get("all_tasks_succeeded"))


_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")


def first_task_startup(log_file: Path, tasks: list[dict]) -> float | None:
    """Seconds of the first task's duration spent before the task itself started.

    In Airflow 3, `dags test` runs tasks through an in-process execution API
    whose start-up is charged to the first task's duration (here: preflight):
    from the task instance's start_date to the log line "Task started". We
    read it so the report can say how much of that task is Airflow.
    """
    first = min((t for t in tasks if t.get("start")), key=lambda t: t["start"], default=None)
    if first is None:
        return None
    try:
        with open(log_file, errors="replace") as fh:
            for line in fh:
                if "Task started" in line:
                    match = _TS.match(line)
                    if not match:
                        return None
                    started = datetime.fromisoformat(match.group(1)).replace(tzinfo=timezone.utc).timestamp()
                    return round(max(0.0, started - first["start"]), 1)
    except OSError:
        return None
    return None


def _first_int(d: dict) -> int | None:
    for key, value in d.items():
        if isinstance(value, int) and not isinstance(value, bool) and any(w in key for w in ("row", "submission", "loaded")):
            return value
    return None


def _jsonable(value):
    try:
        json.dumps(value, default=str)
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return str(value)


def next_day(d: date) -> date:
    return d + timedelta(days=1)
