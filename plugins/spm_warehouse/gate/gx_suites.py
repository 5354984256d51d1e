"""Great Expectations suites on raw tables and marts, from the committed GX project.

The project lives in expectations/ (a file-based GX 1.x Data Context:
great_expectations.yml, suites as JSON under expectations/expectations/,
validation definitions and the `spm_gate` checkpoint). Its one data source,
`warehouse`, reads its connection string from the substitution variable
SPM_GX_WAREHOUSE_URL, which this module hands over as GX's
`runtime_environment` - so no credential is ever written into the project.

One CheckResult per suite ("gx.<suite name>"). Blocking is decided in two
steps: the suite must be blocking in gate/thresholds.yml (gx.suites), and the
failed expectation must have severity "critical" (GX 1.x severities:
critical, warning, info; set per expectation in the suite JSON). Anything
else that fails is reported as a warning.

Each run's validation results and Data Docs are written straight into its
report folder - <reports>/<run>/gx_validations and <reports>/<run>/gx_data_docs -
through the substitution variables SPM_GX_RESULTS_DIR and SPM_GX_DOCS_DIR of
great_expectations.yml. So the committed project is never written to, runs
never share (or accumulate) results, and the report links its own docs.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from spm_warehouse import settings
from spm_warehouse.build import STATE_COLUMNS
from spm_warehouse.gate.base import CheckContext, CheckResult, judged, relation_exists
from spm_warehouse.paths import GX_PROJECT_DIR, run_dir_name

log = logging.getLogger(__name__)

KIND = "gx"
DEFAULT_PROJECT_DIR = GX_PROJECT_DIR
# The schema name the committed mart assets use; another SPM_BUILD_SCHEMA is substituted at run time.
PROJECT_BUILD_SCHEMA = "analytics_build"
URL_VARIABLE = "SPM_GX_WAREHOUSE_URL"
RESULTS_VARIABLE = "SPM_GX_RESULTS_DIR"
DOCS_VARIABLE = "SPM_GX_DOCS_DIR"
MAX_LISTED = 8


def warehouse_sqlalchemy_url(conn: psycopg.Connection) -> str:
    """SQLAlchemy URL (psycopg 3 driver) for the database `conn` is connected to."""
    info = conn.info
    auth = quote(info.user or "", safe="")
    if info.password:
        auth += ":" + quote(info.password, safe="")
    host = info.host or ""
    dbname = quote(info.dbname or "", safe="")
    if host.startswith("/"):  # Unix socket directory
        return f"postgresql+psycopg://{auth}@/{dbname}?host={quote(host, safe='')}&port={info.port}"
    return f"postgresql+psycopg://{auth}@{host}:{info.port}/{dbname}"


_preload: threading.Thread | None = None


def _quiet_gx_logs() -> None:
    for name in ("great_expectations", "great_expectations._docs_decorators"):
        logging.getLogger(name).setLevel(logging.WARNING)  # GX logs every registration at INFO


def _import_gx() -> None:
    _quiet_gx_logs()
    import great_expectations  # noqa: F401
    from great_expectations.core.run_identifier import RunIdentifier  # noqa: F401


def preload() -> None:
    """Start importing Great Expectations in a background thread (idempotent).

    Why: `import great_expectations` costs 5-6 s of Python (scipy, pandas, its registries),
    whatever the data; the gate's SQL checks that run before the GX suites spend their time
    waiting on PostgreSQL, so the import runs in that time instead of after it. The import
    stays inside the gate (never at DAG parse time).
    """
    global _preload
    if _preload is None and "great_expectations" not in sys.modules:
        _preload = threading.Thread(target=_import_gx, name="gx-preload", daemon=True)
        _preload.start()


def _wait_for_preload() -> None:
    """Join the background import before importing GX here: never two threads inside one import."""
    global _preload
    if _preload is not None:
        started = time.monotonic()
        _preload.join()
        _preload = None
        log.info("gx: waited %.1fs for the background import of great_expectations", time.monotonic() - started)


def open_context(sqlalchemy_url: str, run_dir: Path, project: Path | None = None):
    """The GX File Data Context of the project, writing results and Data Docs under run_dir."""
    _quiet_gx_logs()
    _wait_for_preload()
    import great_expectations as gx  # heavy import: only when the gate runs

    run_dir = Path(run_dir)
    return gx.get_context(mode="file", context_root_dir=str(project or DEFAULT_PROJECT_DIR), runtime_environment={
        URL_VARIABLE: sqlalchemy_url,
        RESULTS_VARIABLE: str(run_dir / "gx_validations"),
        DOCS_VARIABLE: str(run_dir / "gx_data_docs"),
    })


def run(ctx: CheckContext) -> list[CheckResult]:
    cfg = ctx.thresholds.get("gx", {}) or {}
    project = Path(ctx.gx_project_dir or DEFAULT_PROJECT_DIR)
    if not (project / "great_expectations.yml").exists():
        return [judged("gx.project", KIND, False, True, {"project_dir": str(project)},
                       f"no GX project at {project} (great_expectations.yml missing)")]

    _wait_for_preload()
    from great_expectations.core.run_identifier import RunIdentifier  # heavy, as above: only when the gate runs

    run_dir = Path(ctx.reports_dir or settings.reports_dir()) / run_dir_name(ctx.run_id)
    started = time.monotonic()
    context = open_context(warehouse_sqlalchemy_url(ctx.wh), run_dir, project)
    opened = time.monotonic()
    checkpoint_name = cfg.get("checkpoint", "spm_gate")
    checkpoint = context.checkpoints.get(checkpoint_name)
    suite_cfg: dict = cfg.get("suites", {}) or {}
    default_blocking = bool(cfg.get("default_blocking", True))

    out: list[CheckResult] = []
    runnable = []
    for vd in checkpoint.validation_definitions:
        asset = vd.asset
        if asset.schema_name == PROJECT_BUILD_SCHEMA and ctx.build_schema != PROJECT_BUILD_SCHEMA:
            asset.schema_name = ctx.build_schema  # in memory only; the project file is not rewritten
        blocking = bool((suite_cfg.get(vd.suite.name) or {}).get("blocking", default_blocking))
        table = f"{asset.schema_name}.{asset.table_name}"
        if not relation_exists(ctx.wh, table):
            out.append(judged(f"gx.{vd.suite.name}", KIND, False, blocking, {"table": table},
                              f"table {table} does not exist: suite {vd.suite.name} not run"))
            continue
        runnable.append(vd)
    if not runnable:
        return out

    scoped = scope_assets(ctx, runnable, cfg.get("scope") or {})
    copied = time.monotonic()
    if scoped:
        out_facts = ctx.facts.setdefault("gx_scoped", {})
        out_facts.update(scoped)
    run_id = RunIdentifier(run_name=ctx.run_id)
    try:
        if len(runnable) == len(checkpoint.validation_definitions):
            validations = list(checkpoint.run(run_id=run_id).run_results.values())
        else:
            # GX refuses to run a checkpoint whose list of definitions differs from its saved file, so
            # when a table is missing the other suites run one by one and the Data Docs are rebuilt.
            validations = [vd.run(run_id=run_id, result_format=checkpoint.result_format) for vd in runnable]
            context.build_data_docs()
    finally:
        _dispose_engines([vd.asset.datasource for vd in runnable] + list(context.data_sources.all().values()))
        if scoped:
            drop_scoped_copies(ctx)
    # where the GX seconds go (the import itself is logged by _wait_for_preload)
    log.info("gx: context %.1fs, scoped copies %.1fs, %d suites validated with Data Docs in %.1fs",
             opened - started, copied - opened, len(validations), time.monotonic() - copied)
    for validation in validations:
        suite = validation.suite_name
        blocking = bool((suite_cfg.get(suite) or {}).get("blocking", default_blocking))
        out.append(_suite_result(suite, validation, blocking))
    out.sort(key=lambda r: r.name)
    docs = run_dir / "gx_data_docs" / "index.html"
    if docs.exists():
        ctx.facts["gx_data_docs"] = str(docs)
    return out


SCOPE_SCHEMA = "gate_scope"


def scope_assets(ctx: CheckContext, definitions: list, scopes: dict) -> dict[str, int]:
    """Point suites configured with a scope at copies of tonight's rows only; returns rows per table.

    A table whose rows are all tonight's (after a full run) is validated in place, without a copy,
    and listed in ctx.facts["gx_in_place"].

    Why: at a million clients m_loan_transaction holds tens of millions of rows,
    and validating every one of them every night would make the gate grow with
    history. The scoped rows are copied once into unlogged tables of the
    private schema gate_scope (no grants), committed on their own connection
    because GX reads through another one, and dropped once GX has read them
    (drop_scoped_copies).
    """
    wanted = []
    for vd in definitions:
        asset = vd.asset
        key = f"{PROJECT_BUILD_SCHEMA if asset.schema_name == ctx.build_schema else asset.schema_name}.{asset.table_name}"
        kind = scopes.get(key)
        if kind:
            wanted.append((vd, kind))
    if not wanted:
        return {}
    info = ctx.wh.info
    params = info.get_parameters()
    if info.password:
        params["password"] = info.password
    counts: dict[str, int] = {}
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCOPE_SCHEMA)))
        for vd, kind in wanted:
            asset = vd.asset
            source = sql.Identifier(asset.schema_name, asset.table_name)
            view = sql.Identifier(SCOPE_SCHEMA, f"{asset.schema_name}__{asset.table_name}")
            needed = {"run": {"_run_id"}, "latest_write": set(STATE_COLUMNS)}
            have = {r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                (asset.schema_name, asset.table_name))}
            if kind in needed and not needed[kind] <= have:
                log.warning("gx: %s.%s has no %s columns: validated whole (gx.scope %s ignored)",
                            asset.schema_name, asset.table_name, "/".join(sorted(needed[kind] - have)), kind)
                continue
            if kind == "run":
                where = sql.SQL("_run_id = {}").format(sql.Literal(ctx.run_id))
            elif kind == "latest_write":
                state = conn.execute(sql.SQL(
                    "SELECT {} FROM {} "
                    "WHERE _watermark IS NOT NULL ORDER BY _as_of_date DESC, _cutoff_ts DESC, _watermark DESC LIMIT 1"
                ).format(sql.SQL(", ").join(map(sql.Identifier, STATE_COLUMNS)), source)).fetchone()
                if state is None:
                    where = sql.SQL("true")
                else:  # equality on the indexed state columns: an index scan, not a scan of the history
                    where = sql.SQL(" AND ").join(
                        sql.SQL("{} IS NOT DISTINCT FROM {}").format(sql.Identifier(c), sql.Literal(v))
                        if v is None else sql.SQL("{} = {}").format(sql.Identifier(c), sql.Literal(v))
                        for c, v in zip(STATE_COLUMNS, state))
            else:
                raise ValueError(f"gx.scope of {asset.schema_name}.{asset.table_name}: unknown scope {kind!r} "
                                 "(run or latest_write)")
            key = f"{asset.schema_name}.{asset.table_name}"
            # Tonight's rows are all the rows (a first load, a full run): GX reads the table itself. A
            # copy would hold the whole table a second time (1 GB at 100k clients, the largest disk use of
            # the first night). On other nights the first row read is an older one, so this asks little.
            outside = conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE ({}) IS NOT TRUE)")
                                   .format(source, where)).fetchone()[0]
            if not outside:
                counts[key] = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(source)).fetchone()[0]
                ctx.facts.setdefault("gx_in_place", []).append(key)
                continue
            # A table, not a view: GX sends one query per expectation, and each would filter the history again.
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(view))
            conn.execute(sql.SQL("CREATE UNLOGGED TABLE {} AS SELECT * FROM {} WHERE {}").format(view, source, where))
            counts[key] = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(view)).fetchone()[0]
            asset.table_name = f"{asset.schema_name}__{asset.table_name}"  # in memory only
            asset.schema_name = SCOPE_SCHEMA
    in_place = set(ctx.facts.get("gx_in_place", []))
    for table, n in counts.items():
        log.info("gx: %s validated on tonight's %d rows (gx.scope)%s", table, n,
                 ": all its rows, read in place" if table in in_place else "")
    return counts


def drop_scoped_copies(ctx: CheckContext) -> None:
    """Drop the copies scope_assets made, once GX has read them.

    Why: they are as large as the night's rows (every row, after a full run), and
    kept until the next gate they would sit through the next night's build, when
    the warehouse takes the most disk.
    """
    params = ctx.wh.info.get_parameters()
    if ctx.wh.info.password:
        params["password"] = ctx.wh.info.password
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCOPE_SCHEMA)))


def _suite_result(suite: str, validation, blocking: bool) -> CheckResult:
    stats = validation.statistics or {}
    failed = [r for r in validation.results if not r.success]
    critical = [r for r in failed if _severity(r) == "critical"]
    described = [_describe(r) for r in failed[:MAX_LISTED]]
    numbers = {
        "evaluated": int(stats.get("evaluated_expectations") or 0),
        "failed": len(failed),
        "failed_critical": len(critical),
        "failed_expectations": described,
    }
    if not failed:
        return judged(f"gx.{suite}", KIND, True, blocking, numbers,
                      f"{numbers['evaluated']} expectations met")
    # A suite only blocks through its critical expectations.
    status_blocking = blocking and bool(critical)
    return judged(f"gx.{suite}", KIND, False, status_blocking, numbers,
                  f"{len(failed)} of {numbers['evaluated']} expectations failed: " + "; ".join(described))


def _severity(result) -> str:
    config = result.expectation_config
    value = getattr(config, "severity", None)
    return str(getattr(value, "value", value) or "critical").lower()


def _describe(result) -> str:
    config = result.expectation_config
    kwargs = config.kwargs or {}
    target = kwargs.get("column") or kwargs.get("column_list") or (
        f"{kwargs.get('column_A')},{kwargs.get('column_B')}" if "column_A" in kwargs else "")
    text = f"{config.type}({target})" if target else config.type
    exc = (result.exception_info or {}) if isinstance(result.exception_info, dict) else {}
    if exc.get("raised_exception"):
        return text + ": error " + str(exc.get("exception_message", ""))[:160]
    res = result.result or {}
    if res.get("unexpected_count") is not None:
        pct = res.get("unexpected_percent")
        text += f": {res['unexpected_count']} unexpected" + (f" ({pct:.2f}%)" if isinstance(pct, (int, float)) else "")
    elif "observed_value" in res:
        text += f": observed {str(res['observed_value'])[:120]}"
    return text


def _dispose_engines(datasources: list) -> None:
    """Close GX's SQLAlchemy pools so no idle connection outlives the gate."""
    for datasource in datasources:
        execution_engine = getattr(datasource, "_execution_engine", None)
        for engine in (getattr(datasource, "_engine", None), getattr(execution_engine, "engine", None)):
            if engine is not None:
                try:
                    engine.dispose()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass
