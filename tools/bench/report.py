"""The benchmark report: machine facts, targets, markdown, and docs/benchmarks.md upkeep.

Why the file is edited in place rather than overwritten: results of several
scales must sit side by side (100k and 1M nightly times), and people add
their own analysis to the page. The tool owns only the regions between its
markers; each scale's section carries its numbers as JSON in an HTML comment,
from which the side-by-side table is rebuilt at every write.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from spm_warehouse import settings
from tools.bench.measure import STAGES
from tools.bench.runner import night_ok

FIRST_STAGE = STAGES[0]  # the DAG's first task: Airflow's task start-up is charged to it

MB_LIMIT = 1024.0
FULL_LIMIT_S = 600.0
NIGHTLY_LIMIT_S = 120.0
RATIO_MIN = 0.7
# The issue sets the time targets for 100k clients: judged from 100k up to (not incl.) 200k;
# the throughput ratio is scale-free once fixed costs fade: judged from 100k up.
TIMED_SCALES = (100_000, 200_000)
RATIO_FROM = 100_000

METHOD_BEGIN, METHOD_END = "<!-- bench:method:begin -->", "<!-- bench:method:end -->"
SUMMARY_BEGIN, SUMMARY_END = "<!-- bench:summary:begin -->", "<!-- bench:summary:end -->"
SAME_DAY_BEGIN, SAME_DAY_END = "<!-- bench:same-day:begin -->", "<!-- bench:same-day:end -->"
# Issue 17: with the same DAY_LOANS, the nightly at a larger scale is at most 1.3 times the one at 100k;
# at 100k the nightly is at most 0.15 of the full run; peak disk at most 55 kB per client.
SAME_DAY_GROWTH_MAX = 1.3
SAME_DAY_BASE_SCALE = 100_000  # judged at 500k and more against this scale's nightly run
NIGHTLY_SHARE_MAX = 0.15
DISK_KB_PER_CLIENT_MAX = 55.0
DISK_FROM = 100_000
LAYER_NAMES = ("source", "raw", "intermediate", "analytics")


def section_markers(scale: int) -> tuple[str, str]:
    return f"<!-- bench:scale={scale}:begin -->", f"<!-- bench:scale={scale}:end -->"


# --------------------------------------------------------------------------- machine facts


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_facts(server_url: str, server_kind: str) -> dict:
    cpu = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    facts: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host_os": f"{platform.system()} {platform.release()}",
        "cpu": cpu.group(1).strip() if cpu else platform.processor() or "?",
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gb": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
        "disk_free_gb": round(shutil.disk_usage(settings.local_dir()).free / 1e9, 1)
        if settings.local_dir().exists() else None,
        "load_avg_at_start": _read("/proc/loadavg").split()[:3],
        "python": sys.version.split()[0],
        "server": server_kind,
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }
    for module, key in (("airflow", "airflow"), ("dbt.version", "dbt")):
        try:
            mod = __import__(module, fromlist=["x"])
            facts[key] = getattr(mod, "__version__", None) or str(getattr(mod, "installed", "?"))
        except Exception:  # noqa: BLE001 - a version is nice to have
            facts[key] = "?"
    try:
        with psycopg.connect(server_url, autocommit=True) as conn:
            facts["postgres"] = conn.execute("SHOW server_version").fetchone()[0]
            facts["pg_settings"] = {
                name: conn.execute(f"SHOW {name}").fetchone()[0]
                for name in ("shared_buffers", "work_mem", "maintenance_work_mem", "fsync", "synchronous_commit",
                             "max_parallel_workers_per_gather", "jit")
            }
    except psycopg.Error as exc:
        facts["postgres"] = f"? ({exc})"
    return facts


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=settings.PROJECT_ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# --------------------------------------------------------------------------- targets


def peak_mb(result: dict) -> float:
    """The memory figure judged: the larger of the exact single-process peak and the sampled tree sum."""
    values = []
    for key in ("full", "nightly", "second_nightly"):
        m = (result.get(key) or {}).get("memory") or {}
        values += [m.get("max_process_mb") or 0, m.get("max_concurrent_mb") or 0]
    return max(values, default=0.0)


def throughput_ratio(result: dict) -> float | None:
    ours = (result.get("extract_vs_raw") or {}).get("ratio")
    return ours


def evaluate(result: dict) -> list[dict]:
    """Each target: what it says, measured value, ok / MISSED / n/a (not applicable at this scale)."""
    scale = result["scale"]
    timed = TIMED_SCALES[0] <= scale < TIMED_SCALES[1]
    full, nightly = result.get("full") or {}, result.get("nightly") or {}

    def ok(night: dict) -> bool:

        return bool(night) and night_ok(night)

    ratio = throughput_ratio(result)
    second = result.get("second_nightly")
    items = [
        ("both runs complete (full and nightly DAG runs succeed)", "all",
         f"full {_night_state(full)}, nightly {_night_state(nightly)}"
         + (f", second nightly {_night_state(second)}" if second is not None else ""),
         ok(full) and ok(nightly) and (second is None or ok(second))),
        (f"Python peak memory < {MB_LIMIT:.0f} MB", "all", f"{peak_mb(result):.0f} MB", peak_mb(result) < MB_LIMIT),
        (f"full run <= {FULL_LIMIT_S / 60:.0f} min", "100k", _secs(full.get("wall_seconds")),
         (full.get("wall_seconds") or 1e12) <= FULL_LIMIT_S),
        (f"nightly run <= {NIGHTLY_LIMIT_S / 60:.0f} min end to end", "100k", _secs(nightly.get("wall_seconds")),
         (nightly.get("wall_seconds") or 1e12) <= NIGHTLY_LIMIT_S),
        (f"extract+load >= {RATIO_MIN} x raw COPY throughput", "100k",
         f"{ratio:.2f}" if ratio is not None else "?", ratio is not None and ratio >= RATIO_MIN),
    ]
    share = (nightly.get("wall_seconds") / full["wall_seconds"]
             if nightly.get("wall_seconds") and full.get("wall_seconds") else None)
    if result.get("day_loans"):
        items.append((f"nightly <= {NIGHTLY_SHARE_MAX} x full run (DAY_LOANS={result['day_loans']:,})", "100k",
                      f"{share:.2f}" if share is not None else "?", share is not None and share <= NIGHTLY_SHARE_MAX))
    kb = disk_kb_per_client(result)
    if kb is not None:
        items.append((f"peak disk <= {DISK_KB_PER_CLIENT_MAX:.0f} kB per client", "disk", f"{kb:.0f} kB",
                      kb <= DISK_KB_PER_CLIENT_MAX))
    out = []
    for text, scope, measured, passed in items:
        applies = (scope == "all" or (timed and scope == "100k") or (scope == "disk" and scale >= DISK_FROM)
                   or (text.startswith("extract+load") and scale >= RATIO_FROM))
        out.append({"target": text, "measured": measured,
                    "verdict": ("ok" if passed else "MISSED") if applies else ("n/a (" + ("ok" if passed else "over") + ")")})
    return out


def disk_kb_per_client(result: dict) -> float | None:
    """Peak disk of the bench (every night it ran) per client, in kB."""
    peak = result.get("disk_peak_gb")
    return peak * 1e6 / result["scale"] if peak and result.get("scale") else None


def layer_bytes_per_client(result: dict) -> dict[str, float]:
    """Bytes per client of the source, raw, intermediate and analytics layers after the last night run."""
    layers = {}
    for key in ("second_nightly", "nightly", "full"):
        layers = (((result.get(key) or {}).get("disk") or {}).get("layers") or {}).get("layers") or {}
        if layers:
            break
    return {k: layers[k] / result["scale"] for k in LAYER_NAMES if layers.get(k) is not None}


def _night_state(night: dict) -> str:
    if not night:
        return "not run"
    failed = [s["stage"] for s in night.get("stages", []) if s.get("state") not in ("success", None)]
    return night.get("state", "?") + (f" but {', '.join(failed)} not successful" if failed else "")


def _secs(v) -> str:
    if v is None:
        return "-"
    v = float(v)
    return f"{v:.1f} s" if v < 120 else f"{v:.0f} s ({v / 60:.1f} min)"


def _num(v, digits: int = 0) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, float) and digits:
        return f"{v:,.{digits}f}"
    return f"{int(round(float(v))):,}"


# --------------------------------------------------------------------------- markdown


def render_section(result: dict) -> str:
    """One scale's section (without markers)."""
    scale = result["scale"]
    m = result["machine"]
    full, nightly = result.get("full") or {}, result.get("nightly") or {}
    lines = [f"## {scale:,} clients", ""]
    lines.append(f"Measured {m['date']} with `{result['command']}` at commit {m.get('git_commit') or '?'}"
                 + (" (with uncommitted changes)" if m.get("git_dirty") else "") + ".")
    lines.append("")
    lines.append(
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), {m['ram_gb']} GB RAM, "
        f"{m['host_os']}; load average at start {' '.join(m['load_avg_at_start'])}; "
        f"PostgreSQL {m.get('postgres')} ({m['server']}; "
        + ", ".join(f"{k}={v}" for k, v in (m.get("pg_settings") or {}).items())
        + f"); Python {m['python']}, Airflow {m.get('airflow')}, dbt {m.get('dbt')}.")
    lines.append("")
    gen = result.get("generation") or {}
    src_rows = sum((gen.get("mis_rows") or {}).values())
    lines.append(
        "Generation (not counted): "
        + ("reused the generated MIS (--keep)" if gen.get("reused") else
           f"demo MIS {_secs(gen.get('mis_seconds'))}, survey exports {_secs(gen.get('surveys_seconds'))}")
        + (f", clone {_secs(gen.get('clone_seconds'))}" if gen.get("clone_seconds") is not None else "")
        + f"; source rows {src_rows:,} ("
        + ", ".join(f"{k} {v:,}" for k, v in sorted((gen.get("mis_rows") or {}).items(), key=lambda kv: -kv[1])[:5])
        + ", ...).")
    lines.append("")

    # stage table
    lines.append("| stage | full: s | full: rows | full: rows/s | full: peak MB | nightly: s | nightly: rows | nightly: rows/s | nightly: peak MB |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    f_stages = {s["stage"]: s for s in full.get("stages", [])}
    n_stages = {s["stage"]: s for s in nightly.get("stages", [])}
    for stage in [s["stage"] for s in full.get("stages", [])] or [s["stage"] for s in nightly.get("stages", [])]:
        f, n = f_stages.get(stage, {}), n_stages.get(stage, {})
        unit = f.get("unit") or n.get("unit")
        name = stage + (f" ({unit})" if unit else "")
        if stage == FIRST_STAGE and (full.get("first_task_startup_s") or nightly.get("first_task_startup_s")):
            name += (f" (incl. Airflow task start-up {_num(full.get('first_task_startup_s'), 1)} / "
                     f"{_num(nightly.get('first_task_startup_s'), 1)} s)")
        if f.get("state") not in (None, "success") or n.get("state") not in (None, "success"):
            name += f" [{f.get('state', '-')}/{n.get('state', '-')}]"
        lines.append(f"| {name} | {_num(f.get('seconds'), 1)} | {_num(f.get('rows'))} | {_num(f.get('rows_per_s'))} | "
                     f"{_num(f.get('peak_mb'))} | {_num(n.get('seconds'), 1)} | {_num(n.get('rows'))} | "
                     f"{_num(n.get('rows_per_s'))} | {_num(n.get('peak_mb'))} |")
    for label, key in (("Airflow overhead (dags test start-up, scheduling)", "overhead"),
                       ("**end to end (wall time of `airflow dags test`)**", "wall_seconds")):
        fv = (full.get("wall_seconds") or 0) - (full.get("task_seconds") or 0) if key == "overhead" else full.get(key)
        nv = (nightly.get("wall_seconds") or 0) - (nightly.get("task_seconds") or 0) if key == "overhead" else nightly.get(key)
        lines.append(f"| {label} | {_num(fv, 1) if full else '-'} | | | {_num((full.get('memory') or {}).get('max_concurrent_mb')) if key != 'overhead' else ''} | "
                     f"{_num(nv, 1) if nightly else '-'} | | | {_num((nightly.get('memory') or {}).get('max_concurrent_mb')) if key != 'overhead' else ''} |")
    lines.append("")

    ratio = result.get("extract_vs_raw") or {}
    raw = result.get("raw_copy") or {}
    lines.append("Key figures:")
    lines.append("")
    lines.append(f"- Full run {_secs(full.get('wall_seconds'))}, nightly run {_secs(nightly.get('wall_seconds'))}; "
                 f"nightly / full = {_ratio(nightly.get('wall_seconds'), full.get('wall_seconds'))}.")
    lines.append(f"- Raw COPY limit ({raw.get('tool', '?')}): {_num(raw.get('rows'))} rows in {_secs(raw.get('seconds'))} "
                 f"= {_num(raw.get('rows_per_s'))} rows/s. Our extract+load (task extract_mis, full run): "
                 f"{_num(ratio.get('rows'))} rows in {_secs(ratio.get('seconds'))} = {_num(ratio.get('rows_per_s'))} rows/s. "
                 f"**Ratio {ratio.get('ratio') if ratio.get('ratio') is None else format(ratio['ratio'], '.2f')}** of the raw limit."
                 + (f" Of the task's {ratio['seconds']:.0f} s, {ratio.get('per_table_seconds', 0):.0f} s are the per-table loads, "
                    f"{ratio.get('reconcile_seconds', 0):.0f} s key reconciliation (hard-delete detection, due on the first load "
                    f"and then every SPM_RECONCILE_EVERY_DAYS) and {ratio.get('other_seconds') or 0:.0f} s the rest"
                    + (f"; without the reconciliation the ratio is {ratio['ratio_without_reconcile']:.2f}."
                       if ratio.get("ratio_without_reconcile") else ".")
                    if ratio.get("seconds") and ratio.get("per_table_seconds") is not None else ""))
    day = result.get("day") or {}
    lines.append(f"- Simulated day {day.get('day', '?')}"
                 + (f" (DAY_LOANS={day['day_loans']:,})" if day.get("day_loans") else "")
                 + f": {_num(day.get('changed_total'))} source rows of {_num(day.get('changed_loans'))} loans changed ("
                 + ", ".join(f"{k} {v:,}" for k, v in (day.get("changed_rows") or {}).items() if v) + "); "
                 + (f"{day['surveys']['submissions']} surveys dropped; " if day.get("surveys") else "")
                 + f"the nightly extraction read {_num(_stage(nightly, 'extract_mis').get('rows'))} rows.")
    for key, night in (("full", full), ("nightly", nightly)):
        mem = night.get("memory") or {}
        if mem:
            procs = ", ".join(f"{k} {v:.0f} MB" for k, v in list(mem.get("by_process", {}).items())[:4])
            lines.append(f"- Python memory, {key} run: largest single process (VmHWM) {mem.get('max_process_mb', 0):.0f} MB, "
                         f"largest sampled sum over the process tree {mem.get('max_concurrent_mb', 0):.0f} MB ({procs}).")
    second = result.get("second_nightly") or {}
    if second:
        second_day = result.get("second_day") or {}
        lines.append(f"- Second nightly run (the steady state: from now on the warehouse keeps three publications' "
                     f"marts, the first nightly only two): {_secs(second.get('wall_seconds'))} for a day of "
                     f"{_num(second_day.get('changed_total'))} source rows of {_num(second_day.get('changed_loans'))} "
                     f"loans; nightly / full = {_ratio(second.get('wall_seconds'), full.get('wall_seconds'))}.")
    for key, night in (("full", full), ("nightly", nightly), ("second nightly", second)):
        d = night.get("disk") or {}
        if d.get("peak_gb") is not None:
            lines.append(f"- Peak disk, {key} run: {d['peak_gb']:.2f} GB (this scale's databases "
                         f"{d.get('databases_at_peak_gb', 0):.2f} GB + PostgreSQL temporary files "
                         f"{_num(d.get('temp_at_peak_gb'), 2) if d.get('temp_at_peak_gb') is not None else '?'} GB "
                         f"at that moment; {d.get('start_gb', 0):.2f} GB at the start, {d.get('end_gb', 0):.2f} GB "
                         f"at the end).")
    per_client = layer_bytes_per_client(result)
    if per_client:
        lines.append(f"- Bytes per client after the {'second ' if result.get('second_nightly') else ''}nightly run: "
                     + ", ".join(f"{k} {_num(v)}" for k, v in per_client.items())
                     + " (analytics = every copy of the marts: published, previous, tomorrow's build, and the versioned facts of `history`).")
    for key, night in (("full", full), ("nightly", nightly)):
        h = night.get("hidden") or {}
        if h:
            lines.append(f"- Hidden costs, {key} run: Airflow start-up and scheduling "
                         f"{_num(h.get('airflow_startup_s'), 1)} s; dbt start-up and parse "
                         f"{_num(h.get('dbt_parse_s'), 1)} s; the gate's checks by kind: "
                         + (", ".join(f"{k} {v:.1f} s" for k, v in (h.get("gate_s_by_kind") or {}).items()) or "-")
                         + ".")
    if result.get("orchestrator_max_rss_mb"):
        lines.append(f"- Not judged: the benchmark's own process (generation, raw COPY, profiling) peaked at "
                     f"{result['orchestrator_max_rss_mb']:.0f} MB.")
    lines.append("")

    # per-table extract vs raw
    if ratio.get("tables"):
        lines.append("<details><summary>Extract+load vs raw COPY, per table (full run)</summary>")
        lines.append("")
        lines.append("| table | rows | ours s | ours rows/s | raw s | raw rows/s | ours / raw |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for t in ratio["tables"]:
            lines.append(f"| {t['table']} | {_num(t.get('rows'))} | {_num(t.get('ours_seconds'), 2)} | {_num(t.get('ours_rows_per_s'))} | "
                         f"{_num(t.get('raw_seconds'), 2)} | {_num(t.get('raw_rows_per_s'))} | "
                         f"{'-' if t.get('ratio') is None else format(t['ratio'], '.2f')} |")
        lines.append("")
        lines.append("</details>")
        lines.append("")

    for key, night in (("full", full), ("nightly", nightly)):
        dbt = night.get("dbt") or {}
        if dbt.get("slowest"):
            lines.append(f"<details><summary>Slowest dbt nodes, {key} run ({dbt.get('models')} models, "
                         f"{dbt.get('tests')} tests, {dbt.get('elapsed')} s summed)</summary>")
            lines.append("")
            lines.append("| node | status | s | rows |")
            lines.append("|---|---|---:|---:|")
            for n in dbt["slowest"]:
                lines.append(f"| {n['unique_id']} | {n['status']} | {n['seconds']:.1f} | {_num(n.get('rows'))} |")
            lines.append("")
            lines.append("</details>")
            lines.append("")

    # targets
    lines.append("| target | measured | verdict |")
    lines.append("|---|---|---|")
    for t in result.get("targets", []):
        lines.append(f"| {t['target']} | {t['measured']} | {t['verdict']} |")
    lines.append("")
    lines.append("Closing note: " + closing_note(result))
    lines.append("")
    for key in ("full", "nightly"):
        prof = (result.get("profile") or {}).get(key)
        if not prof:
            continue
        lines.append(f"<details><summary>Profile: EXPLAIN (ANALYZE, BUFFERS) of the slowest model of the {key} run, "
                     f"{prof['model']} ({prof['seconds_in_build']:.1f} s in the build)</summary>")
        lines.append("")
        lines.append("```")
        lines.extend(prof.get("plan") or [f"could not profile: {prof.get('error')}"])
        lines.append("```")
        lines.append("")
        lines.append("</details>")
        lines.append("")
    for key, night in (("full", full), ("nightly", nightly)):
        if night.get("failure"):
            lines.append(f"<details><summary>{key} run failure (log {night.get('log')})</summary>")
            lines.append("")
            lines.append("```")
            lines.append(night["failure"])
            lines.append("```")
            lines.append("")
            lines.append("</details>")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _stage(night: dict, name: str) -> dict:
    for s in night.get("stages", []):
        if s["stage"] == name:
            return s
    return {}


def _ratio(a, b) -> str:
    return f"{float(a) / float(b):.2f}" if a and b else "-"


def closing_note(result: dict) -> str:
    """Which targets were missed, in which stage, and the evidence; or that all applicable targets hold."""
    missed = [t for t in result.get("targets", []) if t["verdict"] == "MISSED"]
    notes = []
    full, nightly = result.get("full") or {}, result.get("nightly") or {}
    for t in missed:
        text = t["target"]
        if text.startswith("full run") or text.startswith("nightly run"):
            night = full if text.startswith("full") else nightly
            stages = sorted((s for s in night.get("stages", []) if s.get("seconds")), key=lambda s: -s["seconds"])
            wall = night.get("wall_seconds") or 0
            parts = [f"{s['stage']} {s['seconds']:.0f} s ({100 * s['seconds'] / wall:.0f}%)" for s in stages[:3]] if wall else []
            overhead = wall - (night.get("task_seconds") or 0)
            slow = (night.get("dbt") or {}).get("slowest") or []
            notes.append(
                f"{text} missed ({t['measured']}): the time goes to " + ", ".join(parts)
                + f"; Airflow overhead {overhead:.0f} s."
                + (" Slowest dbt nodes: " + ", ".join(f"{n.get('name') or n['unique_id']} {n['seconds']:.0f} s" for n in slow[:3]) + "."
                   if slow else ""))
        elif text.startswith("extract+load"):
            tables = sorted((x for x in (result.get("extract_vs_raw") or {}).get("tables", []) if x.get("ratio") is not None),
                            key=lambda x: -(x.get("ours_seconds") or 0))
            evr = result.get("extract_vs_raw") or {}
            if evr.get("reconcile_seconds"):
                notes.append(f"{text} missed ({t['measured']}): {evr['reconcile_seconds']:.0f} s of the extract_mis task "
                             f"are key reconciliation, which the first load runs although it has just read every key"
                             + (f" (without it: {evr['ratio_without_reconcile']:.2f})" if evr.get("ratio_without_reconcile") else "")
                             + ".")
            lead = "Per table" if evr.get("reconcile_seconds") else f"{text} missed ({t['measured']}): largest tables"
            per_table = ", ".join(f"{x['table']} {x['ratio']:.2f} of raw ({x.get('ours_seconds') or 0:.0f} s vs "
                                  f"{x.get('raw_seconds') or 0:.0f} s)" for x in tables[:3])
            notes.append(f"{lead}: {per_table}.")
        elif text.startswith("Python peak"):
            procs = {}
            for night in (full, nightly):
                for k, v in ((night.get("memory") or {}).get("by_process") or {}).items():
                    procs[k] = max(procs.get(k, 0), v)
            top = sorted(procs.items(), key=lambda kv: -kv[1])[:3]
            notes.append(f"{text} missed ({t['measured']}): " + ", ".join(f"{k} {v:.0f} MB" for k, v in top) + ".")
        elif text.startswith("nightly <="):
            slow = (nightly.get("dbt") or {}).get("slowest") or []
            notes.append(f"{text} missed ({t['measured']}): slowest dbt nodes of the nightly run: "
                         + (", ".join(f"{n.get('name') or n['unique_id']} {n['seconds']:.0f} s" for n in slow[:4]) or "-")
                         + " (the EXPLAIN ANALYZE of the slowest is below).")
        elif text.startswith("peak disk"):
            per_client = layer_bytes_per_client(result)
            notes.append(f"{text} missed ({t['measured']}): bytes per client "
                         + ", ".join(f"{k} {_num(v)}" for k, v in per_client.items()) + ".")
        else:
            notes.append(f"{text}: {t['measured']} (see the failure log below).")
    if not missed:
        applicable = [t for t in result.get("targets", []) if not t["verdict"].startswith("n/a")]
        notes.append(f"every target that applies at {result['scale']:,} clients holds ("
                     + ", ".join(t["target"] for t in applicable) + ").")
    return " ".join(notes)


def _short(target: str) -> str:
    for prefix, short in (("both runs", "completion"), ("Python peak", "memory"), ("full run", "full time"),
                          ("nightly run", "nightly time"), ("extract+load", "throughput"),
                          ("nightly <=", "nightly share"), ("peak disk", "disk")):
        if target.startswith(prefix):
            return short
    return target


def render_summary(results: list[dict]) -> str:
    lines = ["| clients | measured | full run | nightly run | day's loans changed | day's source changes | "
             "nightly rows extracted | nightly / full | extract+load / raw COPY | Python peak MB | peak disk GB | "
             "targets |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in sorted(results, key=lambda r: r["scale"]):
        full, nightly = r.get("full") or {}, r.get("nightly") or {}
        ratio = (r.get("extract_vs_raw") or {}).get("ratio")
        missed = [_short(t["target"]) for t in r.get("targets", []) if t["verdict"] == "MISSED"]
        lines.append(
            f"| {r['scale']:,} | {r['machine']['date'][:10]} | {_secs(full.get('wall_seconds'))} | {_secs(nightly.get('wall_seconds'))} | "
            f"{_num((r.get('day') or {}).get('changed_loans'))} | {_num((r.get('day') or {}).get('changed_total'))} | {_num(_stage(nightly, 'extract_mis').get('rows'))} | "
            f"{_ratio(nightly.get('wall_seconds'), full.get('wall_seconds'))} | "
            f"{'-' if ratio is None else format(ratio, '.2f')} | {peak_mb(r):.0f} | "
            f"{_num(r.get('disk_peak_gb'), 2)} | "
            f"{'missed: ' + '; '.join(missed) if missed else 'ok'} |")
    return "\n".join(lines) + "\n"


def render_same_day(results: list[dict]) -> str:
    """Nightly runs side by side at the scales measured with the same DAY_LOANS (issue 17).

    Why a table of its own: a nightly run's time must grow with the day's work, not with the
    history; only runs whose day touched the same number of loans can show which it does.
    """
    groups: dict[int, list[dict]] = {}
    for r in results:
        if r.get("day_loans"):
            groups.setdefault(int(r["day_loans"]), []).append(r)
    if not groups:
        return ("No run with `DAY_LOANS` yet: `make bench SCALE=<clients> DAY_LOANS=<n>` at two or more scales "
                "with the same n fills this table.\n")
    lines = ["| DAY_LOANS | clients | loans changed | nightly run | nightly / smallest scale's | full run | "
             "nightly / full | peak disk GB (full / nightly / second nightly) | kB per client at peak | bytes per client: "
             "source / raw / intermediate / analytics | hidden costs, nightly: Airflow s / dbt parse s / gate s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for n in sorted(groups):
        runs = sorted(groups[n], key=lambda r: r["scale"])
        base = (runs[0].get("nightly") or {}).get("wall_seconds")
        for r in runs:
            full, nightly = r.get("full") or {}, r.get("nightly") or {}
            growth = _ratio(nightly.get("wall_seconds"), base) if r is not runs[0] else "1.00"
            judged = runs[0]["scale"] == SAME_DAY_BASE_SCALE and r["scale"] >= 5 * SAME_DAY_BASE_SCALE
            if judged and nightly.get("wall_seconds") and base:
                growth += " ok" if nightly["wall_seconds"] / base <= SAME_DAY_GROWTH_MAX else " MISSED"
            per_client = layer_bytes_per_client(r)
            hidden = nightly.get("hidden") or {}
            gate = sum((hidden.get("gate_s_by_kind") or {}).values()) if hidden.get("gate_s_by_kind") else None
            kb = disk_kb_per_client(r)
            lines.append(
                f"| {n:,} | {r['scale']:,} | {_num((r.get('day') or {}).get('changed_loans'))} | "
                f"{_secs(nightly.get('wall_seconds'))} | {growth} | {_secs(full.get('wall_seconds'))} | "
                f"{_ratio(nightly.get('wall_seconds'), full.get('wall_seconds'))} | "
                f"{_num((full.get('disk') or {}).get('peak_gb'), 2)} / {_num((nightly.get('disk') or {}).get('peak_gb'), 2)}"
                f"{' / ' + _num(((r.get('second_nightly') or {}).get('disk') or {}).get('peak_gb'), 2) if r.get('second_nightly') else ''} | "
                f"{'-' if kb is None else format(kb, ',.0f')} | "
                + " / ".join(_num(per_client.get(k)) for k in LAYER_NAMES) + " | "
                f"{_num(hidden.get('airflow_startup_s'), 1)} / {_num(hidden.get('dbt_parse_s'), 1)} / "
                f"{_num(gate, 1)} |")
    lines.append("")
    lines.append(f"Target (issue 17): with the same DAY_LOANS, the nightly run at 500k or 1M clients is at most "
                 f"{SAME_DAY_GROWTH_MAX} times the one at 100k.")
    return "\n".join(lines) + "\n"


METHOD_TEXT = """\
How the numbers are made (written by `python -m tools.bench`; `make bench SCALE=<clients>`):

1. **Generation (not counted).** The demo Fineract MIS (`demo/fineract.py: build_demo_mis`) and the survey
   exports (`demo/surveys.py: generate_surveys`) are generated at the requested number of clients into the
   scale's own databases (`spm_bench_<clients>_mis`, `_wh`, `_airflow` on the project's embedded PostgreSQL,
   or `--server-url`), so a benchmark never touches `make demo`'s warehouse and scales never mix. The
   warehouse is recreated empty for every run. `--keep` keeps a pristine copy of the generated MIS
   (`_mis_gen`, cloned with `CREATE DATABASE ... TEMPLATE`) so a rerun skips generation.
2. **Full run.** The real nightly DAG, `airflow dags test spm_nightly <as-of>`, on the empty warehouse:
   extraction, load, dbt build, gate, publish, report. We time the real DAG rather than the stage functions
   in-process because the target is the night an operator gets: it includes Airflow's DAG parsing, run
   creation and task bookkeeping, and dbt as a child process. Stage seconds are Airflow's own task-instance
   durations (metadata DB); *Airflow overhead* is the wall time of `airflow dags test` minus the tasks
   (DAG parsing, run creation, scheduling loop, interpreter start-up). Airflow 3 runs `dags test` tasks through
   an in-process execution API whose start-up is charged to the first task: the `preflight` row says how much
   (read from the log), the rest of that row is ours.
   Rows come from what the stages record: `meta.load_manifest` (rows read by the extraction),
   `raw_kobo.submissions` (submissions loaded), dbt's `run_results.json` (rows affected by models and
   seeds), `meta.check_results` (checks run), and a count of the published schema.
3. **Raw COPY limit**, in the same run, right after the full run: for every table the extraction loaded,
   `COPY (SELECT <the columns raw_mis keeps> FROM <source table>) TO STDOUT` piped into
   `COPY bench_rawcopy.<table> FROM STDIN` on the same warehouse (empty schema, no keys), with two `psql`
   processes joined by a pipe (psycopg on both ends when psql is absent). *Extract+load / raw COPY* is the
   rows/s of the `extract_mis` task (extraction, COPY into landing, merge into keyed raw tables, watermarks)
   divided by the rows/s of this plain copy of the same rows and columns.
4. **One simulated day** (`demo/fineract.py: simulate_days`, not timed), then the **nightly run**
   `airflow dags test spm_nightly <as-of + 1 day>`: incremental extraction, incremental dbt models,
   gate, publish. *Day's source changes* counts the source rows whose `last_modified_on_utc` falls on that day,
   *day's loans changed* the distinct loans among them (the loan, its transactions or its schedule). With
   `DAY_LOANS=<n>` (`--day-loans`) the day touches exactly n loans whatever the scale (repayments, some with an
   earlier value date, a few approvals, disbursements and repeat loans, one reversal of a recent repayment), with
   a few new, activated, closed and edited clients and n/100 survey submissions dropped for the night: nightly
   runs with the same n at different scales show growth with history apart from growth with the day.
5. **Memory.** Every Python process the run starts (`airflow dags test`, which runs the tasks in-process,
   and its children such as the `dbt build` process) is watched by polling `/proc` every 0.25 s:
   *largest single process* is the kernel's exact peak RSS (`VmHWM`) of each process; *sampled sum* is the
   largest sum of `VmRSS` over the Python processes of the tree at one moment (the per-stage "peak MB"
   columns use this sum within the stage's time window). The memory target is judged on the larger of the two.
   PostgreSQL's own memory is not counted (it is not Python and is shared by design).
6. **Disk.** During each night the size of this scale's databases (`pg_database_size` of the MIS, the
   warehouse and the Airflow metadata) plus the cluster's temporary files (`pg_ls_tmpdir()`: sort and hash
   spill) is polled every 2 s; *peak disk* is the largest sum. The temporary files are the cluster's, so
   another session's spill would count too (an upper bound on a shared machine). WAL is not counted. After
   each night the bytes of the source MIS and of the warehouse's layers (raw = `raw_*` schemas, intermediate,
   analytics = every copy of the marts: published, previous and tomorrow's build, and the schema `history`
   that keeps the history-sized facts once for all of them) are divided by the clients.
7. **Hidden costs**, one line per night: Airflow start-up and scheduling (the first task's execution-API
   start-up plus the wall time outside tasks), dbt's start-up and parse (from `Running with dbt=` to
   `Found <n> models` in the build's dbt log) and the gate's checks by kind (the gate's own timing).

Targets (issue 7): at 100k clients the full run takes at most 10 minutes, the nightly run at most
2 minutes end to end, extract+load reaches at least 0.7 of the raw COPY throughput, and Python peak memory stays
under 1 GB; at 1M clients both runs complete with Python peak memory under 1 GB, and the nightly time grows with
the day's changes, not with history (side-by-side table). Time and throughput targets are reported but not judged
below 100k clients (fixed costs dominate there). The machine is shared: the load average at start is recorded.
Targets (issue 17): with the same `DAY_LOANS`, the nightly run at 500k or 1M is at most 1.3 times the one at 100k
(table *Nightly runs with the same day*); at 100k with `DAY_LOANS` the nightly run is at most 0.15 of the full run;
peak disk at most 55 kB per client (judged from 100k clients).
"""


def update_document(path: Path, result: dict) -> None:
    """Insert or replace this scale's section, the method text and the side-by-side summary."""
    text = path.read_text() if path.exists() else (
        "# Benchmarks\n\nThe nightly run at the scale of a large MFI (issue 7).\n\n"
        f"{METHOD_BEGIN}\n{METHOD_END}\n\n## Side by side\n\n{SUMMARY_BEGIN}\n{SUMMARY_END}\n")
    if METHOD_BEGIN not in text:
        text += f"\n{METHOD_BEGIN}\n{METHOD_END}\n"
    if SUMMARY_BEGIN not in text:
        text += f"\n## Side by side\n\n{SUMMARY_BEGIN}\n{SUMMARY_END}\n"
    if SAME_DAY_BEGIN not in text:
        at = text.index(SUMMARY_END) + len(SUMMARY_END)
        text = (text[:at] + f"\n\n## Nightly runs with the same day\n\n{SAME_DAY_BEGIN}\n{SAME_DAY_END}\n"
                + text[at:])
    text = _replace_region(text, METHOD_BEGIN, METHOD_END, METHOD_TEXT)
    begin, end = section_markers(result["scale"])
    stored = {k: v for k, v in result.items()}
    data = json.dumps(stored, default=str, sort_keys=True).replace("--", "-\\u002d")
    body = render_section(result) + f"\n<!-- bench:data {data} -->\n"
    if begin in text:
        text = _replace_region(text, begin, end, body)
    else:
        text = _insert_section(text, result["scale"], f"{begin}\n{body}{end}\n")
    results = [json.loads(m.group(1)) for m in re.finditer(r"<!-- bench:data (\{.*?\}) -->", text, re.S)]
    text = _replace_region(text, SUMMARY_BEGIN, SUMMARY_END, render_summary(results))
    text = _replace_region(text, SAME_DAY_BEGIN, SAME_DAY_END, render_same_day(results))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _replace_region(text: str, begin: str, end: str, body: str) -> str:
    start = text.index(begin) + len(begin)
    stop = text.index(end, start)
    return text[:start] + "\n" + body.rstrip("\n") + "\n" + text[stop:]


def _insert_section(text: str, scale: int, block: str) -> str:
    """Keep the scale sections in increasing order of clients, after the summary."""
    later = [(int(m.group(1)), m.start()) for m in re.finditer(r"<!-- bench:scale=(\d+):begin -->", text)]
    after = sorted(pos for s, pos in later if s > scale)
    if after:
        pos = after[0]
        # put the block before the heading line that precedes nothing: markers start the section
        return text[:pos] + block + "\n" + text[pos:]
    return text.rstrip("\n") + "\n\n" + block
