"""`make bench-extract SCALE=100000`: the nightly cost of row-hash extraction against audit-column extraction.

Why a benchmark of its own: Fineract 1.4-1.7 has no audit column, so its nightly
extraction compares row hashes by key range (sources/fineract_versions.py)
instead of reading the rows past a watermark. This measures what that costs, on
the same data: one generated demo MIS (current schema) and a copy shaped as
Fineract 1.6, each extracted into a warehouse of its own.

Steps, each extraction timed (generation and cloning are not counted):
1. first load of both (cursor: initial; hash: initial);
2. a quiet night: nothing changed in the source;
3. one simulated business day (tools/demo/fineract.simulate_days) applied to the
   current MIS; the Fineract 1.6 copy is re-made from it, so both sources hold
   exactly the same day of changes, then a nightly extraction of both.
The warehouses' raw tables must end equal (checked), and the figures are
written to docs/benchmarks-extract-modes.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import psycopg

from spm_warehouse import settings
from spm_warehouse.console import run_command
from spm_warehouse.settings import parse_conn_uri
from spm_warehouse.sources import fineract as mis
from spm_warehouse.sources.fineract_tables import TABLES
from tools.bench.runner import _create_db, _db_exists, _drop_db, with_database
from tools.demo import fineract as demo_mis
from tools.demo import shapes

INCREMENTAL = [t.name for t in TABLES if t.cursor]


def _extract(src_url: str, wh_url: str, run_id: str, as_of: dt.date) -> dict:
    started = time.monotonic()
    with psycopg.connect(wh_url) as wh:
        manifest = mis.extract_mis(parse_conn_uri("mis_fineract", src_url), wh, run_id=run_id, as_of=as_of)
    seconds = time.monotonic() - started
    inc = [m for m in manifest if m["table_name"] in INCREMENTAL]
    return {"seconds": round(seconds, 2),
            "incremental_tables_seconds": round(sum(float(m["seconds"]) for m in inc), 2),
            "rows_read": sum(m["rows_read"] for m in inc),
            "rows_merged": sum(m["rows_merged"] for m in inc),
            "rows_deleted": sum(m["rows_deleted"] for m in inc),
            "rows_hashed": sum(m.get("rows_hashed", 0) for m in inc),
            "ranges_changed": sum(m.get("ranges_changed", 0) for m in inc),
            "modes": sorted({m["mode"] for m in inc})}


def _raw_digest(wh_url: str) -> dict[str, tuple]:
    """Per incremental table: live rows and a digest of the contract columns that every version has."""
    out = {}
    with psycopg.connect(wh_url) as conn:
        for spec in TABLES:
            if not spec.cursor:
                continue
            cols = [c for c in spec.column_names if c not in ("created_on_utc", "last_modified_on_utc")]
            out[spec.name] = tuple(conn.execute(
                f"SELECT count(*), sum(hashtext(row({', '.join(cols)})::text)::numeric) "
                f"FROM raw_mis.{spec.name} WHERE NOT _deleted").fetchone())
    return out


def _shape_copy(server_url: str, template: str, name: str, as_of: dt.date) -> str:
    _create_db(server_url, name, template=template)
    url = with_database(server_url, name)
    with psycopg.connect(url) as conn:
        shapes.apply_shape_postgres(conn, "fineract16", as_of)
    return url


def run(args: argparse.Namespace) -> int:
    as_of = dt.date.fromisoformat(args.as_of or settings.get("SPM_DEMO_AS_OF"))
    seed = settings.get_int("SPM_DEMO_SEED")
    if args.server_url:
        server_url = args.server_url
    else:
        from spm_warehouse import environment

        server_url = environment.embedded_cluster().start()
    prefix = f"spm_bench_modes_{args.scale}"
    names = {k: f"{prefix}_{k}" for k in ("mis", "mis16", "wh_cursor", "wh_hash")}
    result: dict = {"scale": args.scale, "seed": seed, "as_of": as_of.isoformat(),
                    "bucket_keys": settings.get_int("SPM_HASH_BUCKET_KEYS")}
    started = time.monotonic()
    try:
        print(f"extraction modes at {args.scale:,} clients", flush=True)
        t0 = time.monotonic()
        _create_db(server_url, names["mis"])
        mis_url = with_database(server_url, names["mis"])
        with psycopg.connect(mis_url) as conn:
            counts = demo_mis.build_demo_mis(conn, clients=args.scale, seed=seed, as_of=as_of)
            conn.commit()
        result["source_rows"] = {t: counts.get(t) for t in INCREMENTAL if counts.get(t) is not None}
        print(f"  generated in {time.monotonic() - t0:.0f}s: {result['source_rows']}", flush=True)
        mis16_url = _shape_copy(server_url, names["mis"], names["mis16"], as_of)
        for k in ("wh_cursor", "wh_hash"):
            _create_db(server_url, names[k])
        wh = {"cursor": with_database(server_url, names["wh_cursor"]),
              "hash": with_database(server_url, names["wh_hash"])}
        src = {"cursor": mis_url, "hash": mis16_url}

        for step, day in (("first load", as_of), ("quiet night", as_of)):
            for mode in ("cursor", "hash"):
                result.setdefault(step, {})[mode] = _extract(src[mode], wh[mode], f"{step[:5]}_{mode}", day)
                print(f"  {step:12s} {mode:6s} {result[step][mode]}", flush=True)

        day = as_of + dt.timedelta(days=1)
        with psycopg.connect(mis_url) as conn:
            result["day_changes"] = demo_mis.simulate_days(conn, start=day, days=1, seed=seed)
        # the same day in the 1.6 copy: re-made from the changed MIS (the warehouse keeps its raw tables)
        _drop_db(server_url, names["mis16"])
        mis16_url = _shape_copy(server_url, names["mis"], names["mis16"], as_of)
        src["hash"] = mis16_url
        for mode in ("cursor", "hash"):
            result.setdefault("nightly", {})[mode] = _extract(src[mode], wh[mode], f"night_{mode}", day)
            print(f"  {'nightly':12s} {mode:6s} {result['nightly'][mode]}", flush=True)
        # hard deletes: the hash mode saw them tonight; the cursor mode finds them by key reconciliation
        # (every SPM_RECONCILE_EVERY_DAYS days), run here untimed so that the raw tables can be compared
        with psycopg.connect(wh["cursor"]) as conn:
            result["cursor_reconciled_deletes"] = sum(
                mis.reconcile_keys(parse_conn_uri("mis_fineract", mis_url), conn).values())
        digests = {mode: _raw_digest(wh[mode]) for mode in ("cursor", "hash")}
        result["raw_equal"] = digests["cursor"] == digests["hash"]
        if not result["raw_equal"]:
            result["raw_differences"] = {t: (digests["cursor"][t], digests["hash"][t]) for t in digests["cursor"]
                                         if digests["cursor"][t] != digests["hash"][t]}
    finally:
        if not args.keep:
            for name in names.values():
                if _db_exists(server_url, name):
                    _drop_db(server_url, name)
    result["bench_seconds"] = round(time.monotonic() - started, 1)
    result["machine"] = {"cpus": os.cpu_count(),
                         "load_avg_at_end": Path("/proc/loadavg").read_text().split()[:3]
                         if Path("/proc/loadavg").exists() else None}
    args.out.write_text(render(result))
    print(json.dumps(result, indent=2, default=str))
    print(f"written to {args.out}")
    return 0 if result.get("raw_equal") else 1


def render(r: dict) -> str:
    lines = [
        "# Benchmark: row-hash extraction (Fineract 1.4-1.7) against audit-column extraction",
        "",
        f"Written by `make bench-extract SCALE={r['scale']}` (tools/bench/extract_modes.py). "
        f"{r['scale']:,} clients, seed {r['seed']}, as of {r['as_of']}; ranges of "
        f"{r['bucket_keys']} keys (SPM_HASH_BUCKET_KEYS). Only the five incremental tables are counted; "
        "the reference tables are read whole in both modes.",
        "",
        "Source rows: " + ", ".join(f"{t} {n:,}" for t, n in r.get("source_rows", {}).items()) + ".",
        "",
        "| extraction | mode | seconds (incremental tables) | rows read | rows merged | rows deleted | "
        "rows hashed | ranges changed |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for step in ("first load", "quiet night", "nightly"):
        for mode in ("cursor", "hash"):
            m = r.get(step, {}).get(mode)
            if m:
                lines.append(f"| {step} | {mode} | {m['incremental_tables_seconds']} | {m['rows_read']:,} | "
                             f"{m['rows_merged']:,} | {m['rows_deleted']:,} | {m['rows_hashed']:,} | "
                             f"{m['ranges_changed']:,} |")
    lines += ["", f"One business day changed: {r.get('day_changes')}.",
              f"Raw tables equal in both warehouses after the nightly run: **{r.get('raw_equal')}**.",
              f"Benchmark wall time {r.get('bench_seconds')} s (generation included). Machine: "
              f"{(r.get('machine') or {}).get('cpus')} CPUs, load average at the end "
              f"{(r.get('machine') or {}).get('load_avg_at_end')} (other work shares the machine: compare the "
              "two modes with each other, not with other runs).", "",
              "What the hash mode costs: every night the source hashes every row of the five tables "
              "(MD5 of the extracted columns) and the warehouse sums the stored hashes per key range; "
              "only then do the few changed ranges send keys and rows. The cursor mode reads an index "
              "range. Row-hash extraction is for the versions without audit columns (Fineract 1.4-1.7), "
              "where the alternative is reading every table whole.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench.extract_modes", description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, required=True, help="clients of the demo MIS")
    p.add_argument("--as-of", default=None)
    p.add_argument("--server-url", default=None, help="a PostgreSQL server where the benchmark may create databases "
                                                       "(default: the embedded one)")
    p.add_argument("--keep", action="store_true", help="keep the databases")
    p.add_argument("--out", type=Path, default=settings.PROJECT_ROOT / "docs" / "benchmarks-extract-modes.md")
    p.set_defaults(func=run)
    return run_command(p.parse_args(argv), (LookupError, RuntimeError))


if __name__ == "__main__":
    sys.exit(main())
