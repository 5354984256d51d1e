"""One night at a time per warehouse: a lease in meta, and a lock held by every running stage.

Why: Airflow's max_active_runs covers one deployment's scheduler only. `make run`
(airflow dags test) beside a scheduled night, or two deployments pointed at one
warehouse, would otherwise extract into the same raw tables and build into the same
build schema at the same time, interleaving two nights. So:

- the first stage of a night takes the **lease** (one row in meta.night_lease:
  run id, as-of date, holder, heartbeat), and the night's last stage (report, which
  runs whatever happened) gives it back;
- every stage holds a **shared advisory lock** while it runs (two stages of one night
  may run side by side: the MIS and survey extractions);
- another night's stage finding the lease taken refuses with one line naming the
  night that holds it. Airflow retries the task later, so a scheduled night waits for
  a `make run` to finish. A lease whose night is dead (no stage holds the lock and
  its heartbeat is older than SPM_NIGHT_LEASE_STALE_MINUTES) is taken over, with a
  warning; `make unlock` gives back a lease at once when no stage runs.
The same run (an Airflow retry, a cleared task) always gets its own lease back.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from contextlib import contextmanager
from typing import Iterator

import psycopg

from spm_warehouse import settings
from spm_warehouse.db import connect

log = logging.getLogger(__name__)

STAGE_LOCK = "hashtext('spm_warehouse.night')"
LEASE_LOCK = "hashtext('spm_warehouse.night_lease')"
DDL = """CREATE TABLE IF NOT EXISTS meta.night_lease (
    id int PRIMARY KEY CHECK (id = 1),
    run_id text NOT NULL,
    as_of date,
    holder text,
    stage text,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    released_at timestamptz
)"""


class NightBusy(RuntimeError):
    """Another night holds the warehouse; the message names it and says what to do."""


def _holder() -> str:
    return f"{socket.gethostname()} pid {os.getpid()}"


def ensure_lease_table(conn: psycopg.Connection) -> None:
    conn.execute("CREATE SCHEMA IF NOT EXISTS meta")
    conn.execute(DDL)


def _stage_running_elsewhere(conn: psycopg.Connection) -> bool:
    """True when another session holds the stage lock (a stage of some night is running now)."""
    if conn.execute(f"SELECT pg_try_advisory_lock({STAGE_LOCK})").fetchone()[0]:
        conn.execute(f"SELECT pg_advisory_unlock({STAGE_LOCK})")
        return False
    return True


def claim(conn: psycopg.Connection, run_id: str, as_of: dt.date | None, stage: str) -> dict:
    """Take or renew the lease for run_id (one transaction); NightBusy when another live night has it.

    The caller's session already holds the shared stage lock, so "a stage runs elsewhere"
    means another session's stage.
    """
    stale = dt.timedelta(minutes=settings.get_int("SPM_NIGHT_LEASE_STALE_MINUTES"))
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('spm_warehouse.meta'))")
        ensure_lease_table(conn)
        conn.execute(f"SELECT pg_advisory_xact_lock({LEASE_LOCK})")
        row = conn.execute("SELECT run_id, as_of, holder, stage, acquired_at, heartbeat_at, released_at, now() "
                           "FROM meta.night_lease WHERE id = 1").fetchone()
        taken_over = None
        if row is not None and row[6] is None and row[0] != run_id:
            other, other_as_of, holder, other_stage, acquired, beat, _released, now = row
            running_now = _stage_running_elsewhere(conn)
            if running_now or now - beat < stale:
                running = "is running its" if running_now else "last ran its"
                raise NightBusy(
                    f"another night holds the warehouse: run {other} (as of {other_as_of}) {running} "
                    f"{other_stage} stage (on {holder}, started {acquired:%Y-%m-%d %H:%M} UTC, last seen "
                    f"{int((now - beat).total_seconds() // 60)} min ago). This night ({run_id}, stage {stage}) "
                    "did not start; it runs once that night ends (Airflow retries the task), or run "
                    "`make unlock` if that night is dead")
            taken_over = other
            log.warning("taking over the lease of night %s (as of %s): no stage of it runs and it was last seen "
                        "%s ago (SPM_NIGHT_LEASE_STALE_MINUTES)", other, other_as_of, now - beat)
        if row is not None and row[0] == run_id and row[6] is None:
            conn.execute("UPDATE meta.night_lease SET heartbeat_at = now(), stage = %s, holder = %s WHERE id = 1",
                         (stage, _holder()))
        else:
            conn.execute(
                "INSERT INTO meta.night_lease (id, run_id, as_of, holder, stage) VALUES (1, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET run_id = EXCLUDED.run_id, as_of = EXCLUDED.as_of, "
                "holder = EXCLUDED.holder, stage = EXCLUDED.stage, acquired_at = now(), heartbeat_at = now(), "
                "released_at = NULL", (run_id, as_of, _holder(), stage))
    return {"run_id": run_id, "taken_over_from": taken_over}


@contextmanager
def stage(run_id: str, as_of: dt.date | None, name: str, release: bool = False) -> Iterator[dict]:
    """Run a stage of night run_id under the lease; release=True gives the lease back at the end.

    The lock connection is separate from the stage's own: it lives exactly as long as the
    stage, and a killed stage lets go of the lock with its session.
    """
    with connect(autocommit=True, application_name=f"spm_warehouse night lock ({name})") as conn:
        conn.execute(f"SELECT pg_advisory_lock_shared({STAGE_LOCK})")
        lease = claim(conn, run_id, as_of, name)
        try:
            yield lease
        finally:
            try:
                conn.execute("UPDATE meta.night_lease SET heartbeat_at = now() "
                             "WHERE id = 1 AND run_id = %s AND released_at IS NULL", (run_id,))
                if release:
                    conn.execute("UPDATE meta.night_lease SET released_at = now() WHERE id = 1 AND run_id = %s",
                                 (run_id,))
            except psycopg.OperationalError as exc:
                # the warehouse went away during the stage: the stage's own error says so; the lease
                # stays with this night, whose retry renews it
                log.warning("night lease of %s not updated (warehouse connection lost: %s)", run_id,
                            str(exc).strip().splitlines()[0] if str(exc).strip() else exc)


def unlock(conn: psycopg.Connection) -> str:
    """Give back the lease of a night that died (only when none of its stages runs)."""
    with conn.transaction():
        ensure_lease_table(conn)
        row = conn.execute("SELECT run_id, as_of, released_at FROM meta.night_lease WHERE id = 1 FOR UPDATE"
                           ).fetchone()
        if row is None or row[2] is not None:
            return "no night holds the warehouse"
        if _stage_running_elsewhere(conn):
            raise NightBusy(f"night {row[0]} (as of {row[1]}) is running a stage right now: not unlocked")
        conn.execute("UPDATE meta.night_lease SET released_at = now() WHERE id = 1")
    return f"released the lease of night {row[0]} (as of {row[1]})"
