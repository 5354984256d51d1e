"""`make demo`: demo sources (a Fineract MIS and survey drops), one nightly run, a summary.

`python -m tools.demo demo` runs it all; `python -m tools.demo sources` only
builds the sources (docker-compose's init service). The nightly run itself is
the runtime's (`spm_warehouse.cli.airflow_dags_test`): the demo only feeds it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import date
from typing import Iterator

from spm_warehouse import environment, settings
from spm_warehouse.cli import UserError, airflow_dags_test, dispatch, print_summary
from spm_warehouse.db import connect
from spm_warehouse.embedded_postgres import free_port
from tools.demo import fineract as demo_mis
from tools.demo import fineract_spm as demo_spm
from tools.demo import shapes as demo_shapes
from tools.demo import surveys as demo_surveys


def _demo_marker(conn) -> dict | None:
    row = conn.execute(
        "SELECT to_regclass('public.spm_demo_info') IS NOT NULL"
    ).fetchone()
    if not row or not row[0]:
        return None
    got = conn.execute("SELECT info FROM public.spm_demo_info LIMIT 1").fetchone()
    return got[0] if got else None


def ensure_demo_sources(clients: int, seed: int, as_of: date, shape: str = "current") -> dict:
    """Build the demo Fineract MIS (in the Fineract shape asked for) and survey drops unless they already match."""
    demo_shapes.check_shape(shape)
    wanted = {"clients": clients, "seed": seed, "as_of": as_of.isoformat(), "generator": 2}
    if shape != "current":
        wanted["shape"] = shape
    with connect("mis_fineract", autocommit=True) as conn:
        if _demo_marker(conn) == wanted:
            return {"reused": True, **wanted}
        conn.autocommit = False
        started = time.monotonic()
        counts = demo_mis.build_demo_mis(conn, clients=clients, seed=seed, as_of=as_of)
        conn.commit()
        print(f"  demo MIS: {clients} clients generated in {time.monotonic() - started:.1f}s", flush=True)
        drop = settings.survey_drop_dir()
        drop.mkdir(parents=True, exist_ok=True)
        survey_counts = demo_surveys.generate_surveys(conn, out_dir=drop, seed=seed, as_of=as_of)
        _apply_shape(conn, shape, seed, as_of, drop)
        # the marker last: a build or shape that failed half-way is rebuilt next time
        conn.execute("DROP TABLE IF EXISTS public.spm_demo_info")
        conn.execute("CREATE TABLE public.spm_demo_info (info jsonb NOT NULL)")
        conn.execute("INSERT INTO public.spm_demo_info VALUES (%s)", (json.dumps(wanted),))
        conn.commit()
    return {"reused": False, **wanted, "tables": counts, "surveys": survey_counts}


def _apply_shape(conn, shape: str, seed: int, as_of: date, drop) -> None:
    if shape == "current":
        return
    if shape == "mis_surveys":
        # Fineract's survey module with a PPI survey and a client_spm datatable, beside the Kobo drops
        counts = demo_spm.add_mis_surveys(conn, seed=seed, as_of=as_of, survey_drop_dir=drop)
        print(f"  demo MIS: SPM data in the MIS: {counts}", flush=True)
        return
    demo_shapes.apply_shape_postgres(conn, shape, as_of, settings.legacy_timezone())
    print(f"  demo MIS: shaped as {shape}", flush=True)


@contextmanager
def demo_kobo_api() -> Iterator[int | None]:
    """Serve the demo survey pages like KoboToolbox's API v2 while the demo runs.

    Only when no kobotoolbox connection is configured: the demo then exercises
    the real API client (pagination, token auth) against recorded pages.
    """
    pages = settings.survey_drop_dir() / "kobo_replay" / "api"
    if os.environ.get("AIRFLOW_CONN_KOBOTOOLBOX") or not pages.is_dir():
        yield None
        return
    port, token = free_port(), secrets.token_hex(16)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.demo.kobo_replay", "--port", str(port), "--dir", str(pages),
         "--token", token],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.environ["AIRFLOW_CONN_KOBOTOOLBOX"] = json.dumps(
        {"conn_type": "http", "host": f"http://127.0.0.1:{port}", "password": token,
         "extra": {"asset_uids": sorted(p.name for p in pages.iterdir() if p.is_dir())}}
    )
    try:
        _wait_for_port(port)
        print(f"  survey API: demo KoboToolbox replay on http://127.0.0.1:{port}", flush=True)
        yield port
    finally:
        os.environ.pop("AIRFLOW_CONN_KOBOTOOLBOX", None)
        proc.terminate()
        proc.wait(timeout=10)


def _wait_for_port(port: int, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise UserError(f"the demo Kobo replay server did not start on port {port}")


def cmd_demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    print("spm-warehouse demo", flush=True)
    environment.configure()
    as_of = date.fromisoformat(args.as_of or settings.get("SPM_DEMO_AS_OF"))
    clients = args.clients or settings.get_int("SPM_DEMO_CLIENTS")
    seed = settings.get_int("SPM_DEMO_SEED")
    shape = args.shape or settings.get("SPM_DEMO_SHAPE")
    info = ensure_demo_sources(clients, seed, as_of, shape)
    if info["reused"]:
        print(f"  demo MIS: reusing {clients} clients (seed {seed}, as-of {as_of}, shape {shape})", flush=True)
    # A demo MIS built anew (another size, seed or generator version) carries rows dated before
    # what the warehouse extracted last: the night re-extracts it in full, as on a fresh install.
    conf = None if info["reused"] else {"full_refresh": True}
    with demo_kobo_api():
        rc, failure = airflow_dags_test("spm_nightly", as_of, conf)
    print_summary(as_of)
    if rc:
        print("\nThe night FAILED:\n" + failure, file=sys.stderr)
    print(f"\nmake demo {'finished' if rc == 0 else 'FAILED'} in {time.monotonic() - started:.0f}s")
    return 1 if rc else 0


def cmd_demo_sources(args: argparse.Namespace) -> int:
    """Only the demo MIS and survey drops (used by docker-compose's init service)."""
    environment.configure()
    as_of = date.fromisoformat(args.as_of or settings.get("SPM_DEMO_AS_OF"))
    info = ensure_demo_sources(args.clients or settings.get_int("SPM_DEMO_CLIENTS"), settings.get_int("SPM_DEMO_SEED"),
                               as_of, args.shape or settings.get("SPM_DEMO_SHAPE"))
    print(json.dumps({k: v for k, v in info.items() if k != "tables"}, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="demo sources + one nightly run + summary")
    p.add_argument("--clients", type=int)
    p.add_argument("--as-of")
    p.add_argument("--shape", help="which Fineract to imitate: " + ", ".join(demo_shapes.SHAPES))
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("sources", help="build only the demo MIS and survey drops")
    p.add_argument("--clients", type=int)
    p.add_argument("--as-of")
    p.add_argument("--shape", help="which Fineract to imitate: " + ", ".join(demo_shapes.SHAPES))
    p.set_defaults(func=cmd_demo_sources)
    return dispatch(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
