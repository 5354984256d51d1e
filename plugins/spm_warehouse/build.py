"""The build: dbt as a subprocess against the warehouse connection.

Why a subprocess: dbt keeps global state and loads a lot of modules; a child
process gives clean memory after every run, readable logs, and the same
behaviour as a data engineer typing `dbt build` by hand.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from spm_warehouse import faults, paths, settings
from spm_warehouse.environment import local_secrets, venv_bin
from spm_warehouse.paths import DBT_PROJECT_DIR
from spm_warehouse.settings import ConnInfo

log = logging.getLogger(__name__)

# Vars that change on every run (the as-of date) go to dbt through the environment (read by the
# project's macros only while executing, see macros/incremental/core_as_of.sql): in --vars
# they would change dbt's vars hash, and dbt re-parses the whole project when
# that hash changes (several seconds a run, more on a busy machine).
RUN_VARS_IN_ENV = {"as_of_date": "SPM_AS_OF_DATE"}
PARSE_CACHE = "partial_parse.msgpack"
# The bookkeeping columns the incremental framework adds to each incremental mart
# (dbt_project/macros/incremental/README.md): the run's as-of date, knowledge cutoff and
# raw watermark, and whether a backfill wrote the row. The gate scopes validations with them.
STATE_COLUMNS = ("_as_of_date", "_cutoff_ts", "_watermark", "_backfill")
TAIL_LINES = 200  # lines of dbt output kept for error messages
# dbt unit tests (`unit_tests:` in the models' YAML) check a model's SQL on hand-made rows, not
# tonight's data: the code does not change between nights, so they run in `make test`
# (tests/integration/dbt/test_dbt_unit_tests.py), not in every production build.
NIGHTLY_EXCLUDED_RESOURCES = ("unit_test",)


def nightly_build_args(full_refresh: bool = False) -> list[str]:
    """The arguments of the nightly (and full) production `dbt build`: every model, seed and data test."""
    args = ["build"]
    for resource in NIGHTLY_EXCLUDED_RESOURCES:
        args += ["--exclude-resource-type", resource]
    return args + (["--full-refresh"] if full_refresh else [])


def parse_cache_path() -> Path:
    """The last parse of the project, shared by the runs of this checkout.

    Every run has its own target folder, which would start with no parse at
    all; it starts from a copy of this one instead. dbt checks the copy (dbt
    version, project files, vars, profile) and re-parses whatever changed.
    """
    return paths.dbt_parse_cache()


def code_fingerprint() -> str:
    """sha256 over the dbt project's files: incremental models that cache derived data rebuild when it changes."""
    digest = hashlib.sha256()
    files = [DBT_PROJECT_DIR / "dbt_project.yml"]
    for folder in ("models", "macros", "seeds"):
        files += sorted(p for p in (DBT_PROJECT_DIR / folder).rglob("*") if p.is_file())
    for path in files:
        digest.update(str(path.relative_to(DBT_PROJECT_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@dataclass
class DbtResult:
    """What a dbt invocation did: exit code, per-node results, where its files are."""

    command: list[str]
    returncode: int
    target_path: Path
    results: list[dict] = field(default_factory=list)
    elapsed_s: float = 0.0
    log_tail: str = ""

    @property
    def success(self) -> bool:
        return self.returncode == 0

    def failures(self) -> list[dict]:
        return [r for r in self.results if r["status"] in ("error", "fail", "runtime error")]

    def warnings(self) -> list[dict]:
        return [r for r in self.results if r["status"] == "warn"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    def summary(self) -> dict:
        """Small, JSON-able summary (for XCom and the gate)."""
        return {
            "success": self.success,
            "returncode": self.returncode,
            "elapsed_s": round(self.elapsed_s, 1),
            "counts": self.counts(),
            "results": [
                {k: r.get(k) for k in ("unique_id", "resource_type", "status", "failures", "message")}
                for r in self.failures() + self.warnings()
            ],
            "target_path": str(self.target_path),
        }


def pseudonym_key() -> str:
    """SPM_PSEUDONYM_KEY, else the one generated once into <SPM_LOCAL_DIR>/secrets.env."""
    return settings.get("SPM_PSEUDONYM_KEY") or local_secrets()["SPM_PSEUDONYM_KEY"]


def dbt_env(wh: ConnInfo) -> dict[str, str]:
    """Environment for a dbt child process: the profile reads these."""
    env = dict(os.environ)
    env.update(
        {
            "SPM_DBT_HOST": wh.host or "127.0.0.1",
            "SPM_DBT_PORT": str(wh.port or 5432),
            "SPM_DBT_USER": wh.login or "postgres",
            "SPM_DBT_PASSWORD": wh.password or "",
            "SPM_DBT_DBNAME": wh.schema,
            "SPM_DBT_SCHEMA": "build",
            "SPM_BUILD_SCHEMA": settings.build_schema(),
            "SPM_RESTRICTED_BUILD_SCHEMA": settings.restricted_build_schema(),
            # read by macros/account_pseudonym.sql while executing only (never at parse time)
            "SPM_DBT_PSEUDONYM_KEY": pseudonym_key(),
            "SPM_DBT_THREADS": settings.get("SPM_DBT_THREADS"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            "DO_NOT_TRACK": "1",
            # JIT compilation costs seconds per analytic query and gains nothing here.
            "PGOPTIONS": (env.get("PGOPTIONS", "") + " -c jit=off").strip(),
        }
    )
    return env


def parse_run_results(target_path: Path) -> tuple[list[dict], float]:
    path = target_path / "run_results.json"
    if not path.exists():
        return [], 0.0
    data = json.loads(path.read_text())
    results = []
    for r in data.get("results", []):
        uid = r.get("unique_id", "")
        if uid.startswith("operation.") and str(r.get("status")) == "success":
            continue  # a project hook that ran (on-run-start: macros/history.sql): not a result of a model or test
        results.append(
            {
                "unique_id": uid,
                "resource_type": uid.split(".", 1)[0],
                "status": str(r.get("status")),
                "failures": r.get("failures"),
                "message": r.get("message"),
                "execution_time": r.get("execution_time"),
                "rows_affected": (r.get("adapter_response") or {}).get("rows_affected"),
            }
        )
    return results, float(data.get("elapsed_time") or 0.0)


def run_dbt(
    args: list[str],
    wh: ConnInfo,
    dbt_vars: dict | None = None,
    target_path: Path | None = None,
    log_path: Path | None = None,
) -> DbtResult:
    """Run `dbt <args>` in the project; never raises for model or test failures.

    The caller (the gate) decides what a failure means. Each run gets its own
    target folder so concurrent runs (tests, backfills) do not clobber each
    other's manifest and run_results.json.
    """
    target_path = Path(target_path or settings.local_dir() / "dbt" / "target")
    log_path = Path(log_path or target_path.parent / "logs")
    target_path.mkdir(parents=True, exist_ok=True)
    log_path.mkdir(parents=True, exist_ok=True)
    # the compiled SQL carries the pseudonym key (macros/account_pseudonym.sql): owner only
    for folder in (target_path, log_path):
        os.chmod(folder, 0o700)
    command = [
        venv_bin("dbt"),
        *args,
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(target_path),
        "--log-path", str(log_path),
    ]
    env = dbt_env(wh)
    stable_vars = {}
    for name, value in (dbt_vars or {}).items():
        if name in RUN_VARS_IN_ENV:
            env[RUN_VARS_IN_ENV[name]] = str(value)
        else:
            stable_vars[name] = value
    if stable_vars:
        command += ["--vars", json.dumps(stable_vars, default=str, sort_keys=True)]
    restore_parse_cache(target_path)
    log.info("running: %s", " ".join(command[:2] + command[2:3]))
    returncode, tail = _stream(command, env)
    save_parse_cache(target_path)
    results, elapsed = parse_run_results(target_path) if args and args[0] in ("build", "run", "test", "seed") else ([], 0.0)
    result = DbtResult(command=command, returncode=returncode, target_path=target_path,
                       results=results, elapsed_s=elapsed, log_tail=tail)
    return result


def _die_with_parent() -> None:
    """In the dbt child: die when the stage process dies (Linux PR_SET_PDEATHSIG).

    Why: a stage killed by the OOM killer or a lost worker must not leave dbt building into
    the build schema on its own, beside the retry's dbt (the night lock dies with the stage).
    """
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)


def _stream(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run dbt, logging each line as it comes; return its exit code and the last lines.

    Why stream: a night's build runs for many minutes, and the operator
    watching the Airflow task log must see which model dbt is on now, not the
    last 40 lines once dbt has exited. Only a bounded tail is kept in memory.
    """
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with subprocess.Popen(command, env=env, cwd=DBT_PROJECT_DIR, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, bufsize=1, preexec_fn=_die_with_parent) as proc:
        assert proc.stdout is not None
        for n, line in enumerate(proc.stdout):
            line = line.rstrip("\n")
            tail.append(line)
            log.info("dbt | %s", line)
            if n == 40:  # dbt is building models by now
                faults.point("build.dbt")
    return proc.returncode, "\n".join(tail)


def failure_summary(result: DbtResult) -> list[str]:
    """Closing lines of the build log: which models and tests failed or warned, by name."""
    if not result.results:
        return []
    lines = [f"dbt summary: {result.counts()} (exit code {result.returncode})"]
    for label, rows in (("failed", result.failures()), ("warned", result.warnings())):
        for r in rows:
            what = r["unique_id"].split(".", 1)[0]
            name = r["unique_id"].rsplit(".", 1)[-1] if what == "model" else r["unique_id"].split(".", 2)[-1]
            message = (r.get("message") or "").strip().splitlines()
            detail = f"{r['failures']} failing rows" if r.get("failures") else (message[0] if message else r["status"])
            lines.append(f"  {label}: {what} {name}: {detail}")
    return lines


def restore_parse_cache(target_path: Path) -> None:
    cache, mine = parse_cache_path(), target_path / PARSE_CACHE
    if cache.exists() and not mine.exists():
        shutil.copy2(cache, mine)


def save_parse_cache(target_path: Path) -> None:
    """Keep this run's parse for the next run (replaced atomically: runs may overlap)."""
    mine = target_path / PARSE_CACHE
    if not mine.exists():
        return
    cache = parse_cache_path()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    shutil.copy2(mine, tmp)
    os.replace(tmp, cache)
