"""One night at a time per warehouse (issue 15): the lease in meta, the lock every running stage holds."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time

import psycopg
import pytest
from databases import conn_uri_for
from project import ROOT

from spm_warehouse import night_lock, pipeline
from spm_warehouse.night_lock import NightBusy

AS_OF = dt.date(2024, 6, 30)


@pytest.fixture
def warehouse(fresh_database, monkeypatch) -> str:
    url = fresh_database("nightlock")
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", conn_uri_for(url))
    return url


def lease(url: str) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT run_id, stage, released_at IS NOT NULL FROM meta.night_lease").fetchone()


def test_a_second_night_is_refused_naming_the_first_until_the_first_ends(warehouse):
    pipeline.prepare_warehouse("night_a", AS_OF)
    with night_lock.stage("night_a", AS_OF, "extract_mis"):  # the same night comes back (retries, parallel stages)
        pass
    with pytest.raises(NightBusy) as err:
        pipeline.prepare_warehouse("night_b", AS_OF + dt.timedelta(days=1))
    message = str(err.value)
    assert "run night_a (as of 2024-06-30) last ran its extract_mis stage" in message
    assert "night_b" in message and "make unlock" in message and "\n" not in message
    assert lease(warehouse) == ("night_a", "extract_mis", False)
    with night_lock.stage("night_a", AS_OF, "report", release=True):
        pass
    assert lease(warehouse) == ("night_a", "report", True)
    assert pipeline.prepare_warehouse("night_b", AS_OF)["taken_over_from"] is None
    assert lease(warehouse) == ("night_b", "prepare", False)


def _hold_in_another_process(url: str, seconds: float) -> subprocess.Popen:
    code = ("import os, sys, time, datetime as dt\n"
            "from spm_warehouse import night_lock\n"
            "with night_lock.stage('night_a', dt.date(2024, 6, 30), 'build'):\n"
            "    print('holding', flush=True)\n"
            f"    time.sleep({seconds})\n")
    env = {**__import__("os").environ, "AIRFLOW_CONN_WAREHOUSE": conn_uri_for(url),
           "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_a_running_stage_of_another_night_is_never_taken_over(warehouse, monkeypatch):
    monkeypatch.setenv("SPM_NIGHT_LEASE_STALE_MINUTES", "0")  # even a lease that looks stale
    monkeypatch.setenv("AIRFLOW_CONN_MIS_FINERACT", conn_uri_for(warehouse))  # refused before it is read
    proc = _hold_in_another_process(warehouse, 30)
    try:
        with pytest.raises(NightBusy, match=r"run night_a \(as of 2024-06-30\) is running its build stage"):
            pipeline.extract_mis("night_b", AS_OF)
        with psycopg.connect(warehouse, autocommit=True) as conn, \
                pytest.raises(NightBusy, match="is running a stage right now: not unlocked"):
            night_lock.unlock(conn)
    finally:
        proc.kill()
        proc.wait()
    # killed mid-stage: its session and lock die with it; with no stage running the stale lease is taken over
    deadline = time.monotonic() + 10
    while True:
        try:
            got = pipeline.prepare_warehouse("night_b", AS_OF)
            break
        except NightBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # the server notices the dead client's connection
    assert got["taken_over_from"] == "night_a"


def test_a_dead_night_waits_for_the_stale_time_or_make_unlock(warehouse):
    pipeline.prepare_warehouse("night_a", AS_OF)  # then the scheduler dies: no report gives the lease back
    with pytest.raises(NightBusy, match="last ran its prepare stage"):
        pipeline.prepare_warehouse("night_b", AS_OF)
    with psycopg.connect(warehouse, autocommit=True) as conn:
        assert night_lock.unlock(conn) == "released the lease of night night_a (as of 2024-06-30)"
        assert night_lock.unlock(conn) == "no night holds the warehouse"
    assert pipeline.prepare_warehouse("night_b", AS_OF)["run_id"] == "night_b"


def test_make_unlock_prints_one_line(warehouse):
    pipeline.prepare_warehouse("night_a", AS_OF)
    env = {**__import__("os").environ, "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}"}
    out = subprocess.run([sys.executable, "-m", "spm_warehouse.cli", "unlock"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "released the lease of night night_a (as of 2024-06-30)"
