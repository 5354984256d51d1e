"""Command line of the benchmark: `python -m tools.bench --scale <clients>` (`make bench SCALE=...`).

Steps: generate (not counted) -> full run (real DAG) -> raw COPY limit ->
one simulated day -> nightly run (real DAG) -> profile if a target is missed
-> print the report and write it into docs/benchmarks.md (one section per
scale, previous scales kept).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import sys
import time
import traceback
from datetime import date
from pathlib import Path

from spm_warehouse import environment, settings
from tools.bench import measure, report
from tools.bench.measure import manifest_table
from tools.bench.runner import Bench, BenchConfig, BenchError, next_day, night_ok

log = logging.getLogger("tools.bench")


def parse_args(argv: list[str] | None) -> BenchConfig:
    p = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, required=True, help="number of clients of the demo MIS (e.g. 10000, 100000, 1000000)")
    p.add_argument("--day-loans", type=int, default=None,
                   help="the simulated day touches exactly this many loans (repayments, a few disbursements, a "
                        "backdated correction), so that nightly runs at different scales can be compared "
                        "(default: a day that grows with the number of clients)")
    p.add_argument("--seed", type=int, default=None, help="random seed of the demo data (default SPM_DEMO_SEED)")
    p.add_argument("--as-of", default=None, help="as-of date of the full run, YYYY-MM-DD (default SPM_DEMO_AS_OF); "
                                                 "the nightly run is the day after")
    p.add_argument("--server-url", default=None, help="postgresql:// URL of a server where the benchmark may CREATE "
                                                      "DATABASE (default: the project's embedded PostgreSQL)")
    p.add_argument("--db-prefix", default=None, help="prefix of the benchmark's databases (default spm_bench_<scale>)")
    p.add_argument("--work-dir", type=Path, default=None, help="folder for Airflow home, dbt targets, survey drops, logs "
                                                               "(default <SPM_LOCAL_DIR>/bench/<scale>)")
    p.add_argument("--out", type=Path, default=settings.PROJECT_ROOT / "docs" / "benchmarks.md",
                   help="markdown file to write (a section per scale is added or replaced)")
    p.add_argument("--keep", action="store_true", help="keep a pristine copy of the generated MIS and reuse it next time")
    p.add_argument("--drop-after", action="store_true", help="drop the benchmark's databases at the end")
    p.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                   help="EXPLAIN ANALYZE the slowest model: auto = when a target is missed or from 100k clients")
    p.add_argument("--timeout", type=float, default=None, help="seconds after which a DAG run is killed")
    p.add_argument("--force", action="store_true", help="run even when the free disk looks too small")
    p.add_argument("--rerender", action="store_true",
                   help="only rewrite this scale's section of --out from <work dir>/result.json (no run)")
    p.add_argument("--no-second-night", action="store_true",
                   help="stop after the first nightly run (the second shows the steady state: from then on the "
                        "warehouse holds three publications' marts, the first night only two)")
    p.add_argument("--continue-after-failure", action="store_true",
                   help="measure the raw COPY limit and the nightly run even when the full run failed")
    a = p.parse_args(argv)
    if a.scale < 1:
        p.error("--scale must be at least 1")
    if a.day_loans is not None and a.day_loans < 1:
        p.error("--day-loans must be at least 1")
    try:
        as_of = date.fromisoformat(a.as_of or settings.get("SPM_DEMO_AS_OF"))
    except ValueError:
        p.error(f"--as-of must be YYYY-MM-DD, got {a.as_of!r}")
    return BenchConfig(
        scale=a.scale,
        seed=a.seed if a.seed is not None else settings.get_int("SPM_DEMO_SEED"),
        as_of=as_of,
        server_url=a.server_url,
        db_prefix=a.db_prefix or f"spm_bench_{a.scale}",
        work_dir=(a.work_dir or settings.local_dir() / "bench" / str(a.scale)).resolve(),
        out=a.out.resolve(),
        keep=a.keep,
        drop_after=a.drop_after,
        profile=a.profile,
        timeout_s=a.timeout,
        force=a.force,
        continue_after_failure=a.continue_after_failure,
        second_night=not a.no_second_night,
        rerender=a.rerender,
        day_loans=a.day_loans,
    )


def resolve_server(cfg: BenchConfig) -> tuple[str, str]:
    """(server URL, description): --server-url, else the embedded cluster (started on demand)."""
    if cfg.server_url:
        return cfg.server_url, "server given with --server-url"

    cluster = environment.embedded_cluster()  # before SPM_LOCAL_DIR is pointed at the bench folder
    return cluster.start(), f"embedded cluster {cluster.data_dir}"


# Peak disk per client measured at 100k clients (MIS 1.8 GB, warehouse with two publications and a
# build 7.3 GB, one raw-COPY table, sort spill ~1 GB): about 110 kB per client, plus the pristine copy.
DISK_KB_PER_CLIENT = 110
DISK_KB_PER_CLIENT_KEEP = 20


def check_disk(cfg: BenchConfig) -> None:
    """Refuse to start a run that would fill the disk (the cluster, and everyone on it, would stop)."""
    if cfg.force or cfg.server_url:  # another server's disk is not ours to judge
        return
    folder = settings.local_dir()
    folder.mkdir(parents=True, exist_ok=True)
    need_gb = cfg.scale * (DISK_KB_PER_CLIENT + (DISK_KB_PER_CLIENT_KEEP if cfg.keep else 0)) / 1e6
    free_gb = shutil.disk_usage(folder).free / 1e9
    if need_gb > free_gb:
        raise BenchError(
            f"{cfg.scale:,} clients need about {need_gb:.0f} GB of free disk under {folder} "
            f"(~{DISK_KB_PER_CLIENT} kB per client{' + the --keep copy' if cfg.keep else ''}); {free_gb:.0f} GB free. "
            "Free space (e.g. drop other scales' spm_bench_* databases), or pass --force.")


def extract_vs_raw(full: dict, raw: dict) -> dict:
    """Our extract+load rows/s (task extract_mis) over the raw COPY rows/s, in total and per table."""
    stage = next((s for s in full.get("stages", []) if s["stage"] == "extract_mis"), {})
    rows, seconds = stage.get("rows"), stage.get("seconds")
    raw_rate = raw.get("rows_per_s")
    ours_rate = rows / seconds if rows and seconds else None
    by_table: dict[str, dict] = {}

    for item in measure.mis_manifest(full.get("manifest", [])):
        t = by_table.setdefault(manifest_table(item), {"rows": 0, "seconds": 0.0})
        t["rows"] += int(item.get("rows_read") or 0)
        t["seconds"] += float(item.get("seconds") or 0.0)
    tables = []
    for r in raw.get("tables", []):
        ours = by_table.get(r["table"], {})
        o_rate = ours["rows"] / ours["seconds"] if ours.get("rows") and ours.get("seconds") else None
        r_rate = r["rows"] / r["seconds"] if r["rows"] and r["seconds"] else None
        tables.append({"table": r["table"], "rows": ours.get("rows", r["rows"]),
                       "ours_seconds": round(ours["seconds"], 3) if ours.get("seconds") else None,
                       "ours_rows_per_s": o_rate, "raw_seconds": r["seconds"], "raw_rows_per_s": r_rate,
                       "ratio": o_rate / r_rate if o_rate and r_rate else None})
    tables.sort(key=lambda t: -(t["rows"] or 0))
    per_table_s = sum(t["seconds"] for t in by_table.values())
    reconcile_s = sum(r["seconds"] for r in full.get("reconciliations") or [])
    without = (seconds - reconcile_s) if seconds else None
    return {"rows": rows, "seconds": seconds, "rows_per_s": ours_rate, "raw_rows_per_s": raw_rate,
            "ratio": ours_rate / raw_rate if ours_rate and raw_rate else None, "tables": tables,
            "per_table_seconds": round(per_table_s, 1), "reconcile_seconds": round(reconcile_s, 1),
            "other_seconds": round(seconds - per_table_s - reconcile_s, 1) if seconds else None,
            "ratio_without_reconcile": (rows / without) / raw_rate if rows and without and raw_rate and reconcile_s else None}


def headline(result: dict) -> dict:
    """The top-level figures of result.json (the per-stage detail stays under full / nightly)."""
    full, nightly = result.get("full") or {}, result.get("nightly") or {}
    second = result.get("second_nightly") or {}
    disks = [(n.get("disk") or {}).get("peak_gb") for n in (full, nightly, second)]
    return {
        "full_s": full.get("wall_seconds"),
        "nightly_s": nightly.get("wall_seconds"),
        "second_nightly_s": second.get("wall_seconds"),
        "day_loans": (result.get("day") or {}).get("day_loans"),
        "day_changed_loans": (result.get("day") or {}).get("changed_loans"),
        "python_peak_mb": round(report.peak_mb(result), 1),
        "disk_peak_gb": max((d for d in disks if d is not None), default=None),
    }


def run(cfg: BenchConfig) -> int:
    started = time.monotonic()
    print(f"spm-warehouse benchmark: {cfg.scale:,} clients (work dir {cfg.work_dir})", flush=True)
    check_disk(cfg)
    server_url, server_kind = resolve_server(cfg)
    bench = Bench(cfg, server_url, server_kind)
    command = "make bench SCALE=%d" % cfg.scale if cfg.db_prefix == f"spm_bench_{cfg.scale}" else \
        "python -m tools.bench --scale %d" % cfg.scale
    if cfg.day_loans:
        command += (" DAY_LOANS=%d" if command.startswith("make") else " --day-loans %d") % cfg.day_loans
    result: dict = {"scale": cfg.scale, "seed": cfg.seed, "as_of": cfg.as_of.isoformat(), "command": command,
                    "machine": report.machine_facts(server_url, server_kind)}
    bench.configure_environment()
    print("  generating the demo MIS and survey exports (not counted)", flush=True)
    result["generation"] = bench.generate()
    gen = result["generation"]
    print(f"  generation: {'reused' if gen.get('reused') else str(gen.get('mis_seconds')) + 's MIS, ' + str(gen.get('surveys_seconds')) + 's surveys'}"
          f", {sum((gen.get('mis_rows') or {}).values()):,} source rows", flush=True)

    nodes: dict[str, list] = {}
    full = bench.run_night(cfg.as_of, "full")
    nodes["full"] = full.pop("_nodes", [])
    result["full"] = full
    ok = night_ok(full)
    if ok or cfg.continue_after_failure:
        result["raw_copy"] = bench.raw_copy()
        result["extract_vs_raw"] = extract_vs_raw(full, result["raw_copy"])
        day = next_day(cfg.as_of)
        result["day"] = bench.simulate_day(day)
        nightly = bench.run_night(day, "nightly")
        nodes["nightly"] = nightly.pop("_nodes", [])
        result["nightly"] = nightly
        ok = ok and night_ok(nightly)
        if cfg.second_night and (ok or cfg.continue_after_failure):
            # the steady state: the first nightly publishes over an empty rollback copy, later nights do not
            second_day = next_day(day)
            result["second_day"] = bench.simulate_day(second_day)
            second = bench.run_night(second_day, "second_nightly")
            second.pop("_nodes", None)
            result["second_nightly"] = second
            ok = ok and night_ok(second)
    result.update(headline(result))
    result["targets"] = report.evaluate(result)
    missed = any(t["verdict"] == "MISSED" for t in result["targets"])
    if cfg.profile == "always" or (cfg.profile == "auto" and (missed or cfg.scale >= 100_000)):
        result["profile"] = {}
        for key, items in nodes.items():
            if items:
                print(f"  profiling the slowest model of the {key} run", flush=True)
                result["profile"][key] = bench.profile(items)
    result["machine"]["load_avg_at_end"] = Path("/proc/loadavg").read_text().split()[:3] \
        if Path("/proc/loadavg").exists() else None
    result["bench_seconds"] = round(time.monotonic() - started, 1)
    result["orchestrator_max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    (cfg.work_dir / "result.json").write_text(json.dumps(result, indent=2, default=str))
    report.update_document(cfg.out, result)
    print()
    print(report.render_section(result))
    print(f"report written to {cfg.out} (raw data: {cfg.work_dir / 'result.json'})")
    if cfg.drop_after:
        bench.drop_databases()
    return 0 if ok else 1


def rerender(cfg: BenchConfig) -> int:
    """Rewrite the section from the stored result (after a change of the report's format or targets)."""
    path = cfg.work_dir / "result.json"
    if not path.exists():
        raise BenchError(f"no stored result at {path}: run the benchmark first")
    result = json.loads(path.read_text())

    for key in ("full", "nightly"):  # rows of extract_mis: MIS tables only (older results counted surveys too)
        night = result.get(key) or {}
        entries = measure.mis_manifest(night.get("manifest") or [])
        for stage in night.get("stages", []):
            if stage["stage"] == "extract_mis" and entries:
                stage["rows"] = sum(int(m.get("rows_read") or 0) for m in entries)
                stage["rows_per_s"] = round(stage["rows"] / stage["seconds"], 1) if stage.get("seconds") else None
    if result.get("full") and result.get("raw_copy"):
        result["extract_vs_raw"] = extract_vs_raw(result["full"], result["raw_copy"])
    result.update(headline(result))
    result["targets"] = report.evaluate(result)
    path.write_text(json.dumps(result, indent=2, default=str))
    report.update_document(cfg.out, result)
    print(f"section for {cfg.scale:,} clients rewritten in {cfg.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_args(argv)
    try:
        if cfg.rerender:
            return rerender(cfg)
        return run(cfg)
    except KeyboardInterrupt:
        return 130
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the user gets one line and the log, not a traceback
        cfg.work_dir.mkdir(parents=True, exist_ok=True)
        trace = cfg.work_dir / "bench_error.log"
        trace.write_text(traceback.format_exc())
        print(f"error: {type(exc).__name__}: {exc}\n(details: {trace})", file=sys.stderr)
        return 2
