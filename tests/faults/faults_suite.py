"""`make faults`: faults a night survives (issue 15). Each scenario reports one line in docs/reliability.md.

The world: a demo MIS, a warehouse that published the night before (the base, cloned by
every scenario), one business day simulated in the MIS, and a reference warehouse where
tonight ran without a fault. A scenario breaks tonight on a clone of the base, checks
what the warehouse looks like right after, then reruns the night and compares with the
reference.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from harness import (
    World,
    analytics_print,
    leftover_locks,
    one_line_error,
    published_build,
    raw_digests,
    run_night,
    run_stage,
)
from project import ROOT

from tools.demo import fineract as demo_mis

BASE_AS_OF = dt.date(2024, 6, 30)
TONIGHT = BASE_AS_OF + dt.timedelta(days=1)
CLIENTS = 120
SEED = 17


def scenario(name: str, injected: str, asserted: str):
    def mark(fn):
        fn.scenario = {"name": name, "injected": injected, "asserted": asserted}
        return fn
    return mark


@pytest.fixture(scope="module")
def world(pg_server_url, tmp_path_factory):
    work = tmp_path_factory.mktemp("faults")
    (work / "drop").mkdir()
    w = World(pg_server_url, "", work)
    try:
        _, w.mis_url = w.database("faults_mis")
        with psycopg.connect(w.mis_url) as conn:
            demo_mis.build_demo_mis(conn, clients=CLIENTS, seed=SEED, as_of=BASE_AS_OF)
            conn.commit()
        base, base_url = w.database("faults_base")
        night = run_night(w.env(base_url), "base_night", BASE_AS_OF)
        assert night.ok, night.failed.stderr[-3000:] if night.failed else night
        with psycopg.connect(w.mis_url) as conn:
            demo_mis.simulate_days(conn, start=TONIGHT, days=1, seed=SEED)
        w.base = base
        w.base_print = analytics_print(base_url)
        w.base_raw = raw_digests(base_url)
        w.ref, ref_url = w.database("faults_ref", template=base)
        night = run_night(w.env(ref_url), "tonight", TONIGHT)
        assert night.ok, night.failed.stderr[-3000:] if night.failed else night
        w.ref_url = ref_url
        w.ref_print = analytics_print(ref_url)
        w.ref_raw = raw_digests(ref_url)
        assert w.ref_print != w.base_print and w.ref_raw != w.base_raw, "tonight must change something"
        yield w
    finally:
        w.drop_all()


def clone(world: World, label: str) -> str:
    return world.database(label, template=world.base)[1]


def rerun_matches_reference(world: World, url: str, run_id: str = "tonight") -> None:
    night = run_night(world.env(url), run_id, TONIGHT)
    assert night.ok, (night.failed.stage, night.failed.stderr[-3000:]) if night.failed else night
    assert raw_digests(url) == world.ref_raw
    assert analytics_print(url) == world.ref_print


KILL_POINTS = [
    ("prepare", "prepare"),
    ("extract.copy:m_loan_transaction", "extract_mis"),
    ("extract.merge:m_loan_repayment_schedule", "extract_mis"),
    ("build.dbt", "build"),
    ("gate.checks", "gate"),
    ("publish.swap", "publish"),
]


@pytest.mark.parametrize("point,stage", KILL_POINTS, ids=[p for p, _ in KILL_POINTS])
@scenario("kill -9 in a stage", "SIGKILL of the stage's process at a fault point (see the test id)",
          "analytics is one complete publication (the old one); every raw_mis table is as before or as after "
          "tonight, none half-merged; no lock held; the rerun publishes tables identical to an uninterrupted night")
def test_kill_in_every_stage(world, point, stage, request):
    url = clone(world, "fault_kill")
    night = run_night(world.env(url, SPM_FAULT_POINT=point), "tonight", TONIGHT)
    killed = night.failed
    assert killed is not None and killed.killed and killed.stage == stage, \
        [(s.stage, s.returncode, s.stderr[-500:]) for s in night.stages]
    live, last = published_build(url)
    assert live == last, "analytics is the publication meta.publications names last"
    assert analytics_print(url) == world.base_print, "the old publication, whole"
    raw = raw_digests(url)
    half = [t for t, d in raw.items() if d not in (world.base_raw[t], world.ref_raw[t])]
    assert half == [], f"raw_mis tables neither before nor after tonight: {half}"
    after = sorted(t for t, d in raw.items() if d == world.ref_raw[t] and d != world.base_raw[t])
    assert leftover_locks(url) == []
    t0 = time.monotonic()
    rerun_matches_reference(world, url)
    request.node.figures = f"killed in {stage} after {killed.seconds}s; tables already merged: " \
                           f"{len(after)}; rerun {time.monotonic() - t0:.0f}s"


@pytest.mark.parametrize("how", ["terminated", "statement timeout"])
@scenario("the source goes away during extraction", "pg_terminate_backend of the source session while "
          "m_loan_transaction is being copied, or a 1 s statement timeout while a lock holds that table",
          "the stage fails with one line naming the table, no traceback; the retry succeeds; nothing merged twice; "
          "the night publishes what an uninterrupted one does")
def test_source_goes_away_during_extraction(world, how, request):
    url = clone(world, "fault_source")
    if how == "terminated":
        env = world.env(url, SPM_FAULT_POINT="extract.copy:m_loan_transaction", SPM_FAULT_ACTION="pause",
                        SPM_FAULT_PAUSE_S="4")
    else:
        env = world.env(url, SPM_SOURCE_STATEMENT_TIMEOUT_S="1")
    assert run_stage(env, "prepare", "tonight", TONIGHT).returncode == 0
    stop = threading.Event()

    def break_source():
        with psycopg.connect(world.mis_url, autocommit=True) as conn:
            if how == "terminated":
                time.sleep(2)  # the stage is paused inside the COPY
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE application_name = 'spm_warehouse_extract'")
            else:  # a DBA's long lock on the table: the read waits past the statement timeout
                with conn.transaction():
                    conn.execute("LOCK TABLE m_loan_transaction IN ACCESS EXCLUSIVE MODE")
                    stop.wait(30)

    breaker = threading.Thread(target=break_source)
    breaker.start()
    time.sleep(0.5)
    try:
        run = run_stage(env, "extract_mis", "tonight", TONIGHT)
    finally:
        stop.set()
        breaker.join()
    assert run.returncode != 0, run.stdout[-500:]
    line = one_line_error(run)
    assert "m_loan_transaction" in line and "Nothing of m_loan_transaction was merged" in line, line
    with psycopg.connect(url) as conn:
        merged = dict(conn.execute("SELECT table_name, rows_merged FROM meta.load_manifest "
                                   "WHERE run_id = 'tonight'").fetchall())
    assert "m_loan_transaction" not in merged
    retry = run_stage(world.env(url), "extract_mis", "tonight", TONIGHT)
    assert retry.returncode == 0, retry.stderr[-2000:]
    with psycopg.connect(url) as conn:
        twice = conn.execute("SELECT table_name FROM meta.load_manifest WHERE run_id = 'tonight' AND rows_merged > 0 "
                             "GROUP BY 1 HAVING count(*) > 1").fetchall()
    assert twice == [], f"merged twice: {twice}"
    rerun_matches_reference(world, url)
    request.node.figures = line.replace("|", "/")[:160]


@scenario("two nights at once", "a second night (another run id, as `make run` beside a scheduled night) starts "
          "while the first is in its build stage",
          "the second is refused with one line naming the first; it runs after the first ends and publishes the same")
def test_two_nights_at_once(world, request):
    url = clone(world, "fault_two")
    env = world.env(url)
    assert run_stage(env, "prepare", "night_one", TONIGHT).returncode == 0
    assert run_stage(env, "extract_mis", "night_one", TONIGHT).returncode == 0
    paused = world.env(url, SPM_FAULT_POINT="build.dbt", SPM_FAULT_ACTION="pause", SPM_FAULT_PAUSE_S="8")
    cmd = [sys.executable, "-m", "spm_warehouse.stage", "build", "--run-id", "night_one", "--as-of",
           TONIGHT.isoformat()]
    first = subprocess.Popen(cmd, env=paused, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    time.sleep(4)
    second = run_stage(env, "prepare", "night_two", TONIGHT)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert second.returncode != 0
    line = one_line_error(second)
    assert "run night_one (as of 2024-07-01) is running its build stage" in line, line
    # the first night goes on to its end; then the second runs whole
    built = json.loads([x for x in out.splitlines() if x.startswith("{")][-1])
    judged = run_stage(env, "gate", "night_one", TONIGHT, built)
    assert judged.returncode == 0, judged.stderr[-2000:]
    for stage, given in (("publish", judged.result), ("report", None)):
        run = run_stage(env, stage, "night_one", TONIGHT, given)
        assert run.returncode == 0, run.stderr[-2000:]
    rerun_matches_reference(world, url, run_id="night_two")
    request.node.figures = line.replace("|", "/")[:160]


@scenario("readers during publication", "a loop of BI queries as bi_reader through ten publications and rollbacks",
          "every query sees a complete build (its rows match that build's recorded row count); none fails")
def test_readers_during_publications_and_rollbacks(world, request):
    url = world.ref_url  # two publications there: tonight's and the base's (analytics_prev)
    from spm_warehouse import pipeline
    password = "reader-" + str(SEED)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE bi_reader WITH LOGIN PASSWORD '{password}'")
        counts = {r[0]: r[1] for r in conn.execute(
            "SELECT build_id, (row_counts ->> 'kpi_branch_month')::int FROM meta.publications "
            "WHERE action = 'publish'")}
    reader_url = psycopg.conninfo.make_conninfo(url, user="bi_reader", password=password)
    stop = threading.Event()
    seen: list[tuple] = []
    errors: list[str] = []

    def read():
        with psycopg.connect(reader_url, autocommit=True) as conn:
            while not stop.is_set():
                try:
                    # one statement: one snapshot, every name resolved at once (what a BI query is)
                    build, n = conn.execute("SELECT (SELECT build_id FROM analytics.publication_info), "
                                            "(SELECT count(*) FROM analytics.kpi_branch_month)").fetchone()
                    seen.append((build, n))
                except psycopg.Error as exc:
                    errors.append(str(exc).splitlines()[0])

    reader = threading.Thread(target=read)
    reader.start()
    import os
    saved = dict(os.environ)
    os.environ.update(world.env(url))
    try:
        for _ in range(10):
            pipeline.rollback()
    finally:
        stop.set()
        reader.join()
        os.environ.clear()
        os.environ.update(saved)
    assert errors == []
    assert len({b for b, _ in seen}) == 2, "the reader saw both builds"
    wrong = [(b, n) for b, n in seen if counts.get(b) is not None and n != counts[b]]
    assert wrong == []
    request.node.figures = f"{len(seen)} reader queries, 10 swaps, 0 errors"


@scenario("the warehouse restarts during dbt", "`pg_ctl restart -m fast` of the warehouse's PostgreSQL while dbt "
          "builds tonight's models",
          "the build stage fails with one line saying dbt lost the warehouse, no traceback; analytics is unchanged; "
          "the retry builds and publishes what an uninterrupted night does")
def test_warehouse_restarts_during_dbt(world, request):
    import os

    from spm_warehouse import settings
    from spm_warehouse.embedded_postgres import EmbeddedPostgres

    if os.environ.get("SPM_TEST_DATABASE_URL"):
        pytest.skip("the tests use a server given by SPM_TEST_DATABASE_URL: not ours to restart")
    cluster = EmbeddedPostgres(settings.local_dir() / "pg")
    url = clone(world, "fault_restart")
    env = world.env(url)
    for stage in ("prepare", "extract_mis", "extract_surveys"):
        assert run_stage(env, stage, "tonight", TONIGHT).returncode == 0
    # the fault point only signals (on stderr) that dbt is building models; then the restart
    signal_only = world.env(url, SPM_FAULT_POINT="build.dbt", SPM_FAULT_ACTION="pause", SPM_FAULT_PAUSE_S="1")
    cmd = [sys.executable, "-m", "spm_warehouse.stage", "build", "--run-id", "tonight", "--as-of",
           TONIGHT.isoformat()]
    build = subprocess.Popen(cmd, env=signal_only, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=ROOT)
    early: list[str] = []
    for line in build.stderr:
        early.append(line)
        if "fault point build.dbt" in line:
            break
    assert any("fault point build.dbt" in x for x in early), "".join(early)[-2000:]
    t0 = time.monotonic()
    cluster.stop()
    cluster.start()
    restart_s = time.monotonic() - t0
    out, err = build.communicate(timeout=900)
    err = "".join(early) + err
    assert build.returncode != 0, out[-2000:]
    from harness import StageRun
    line = one_line_error(StageRun("build", build.returncode, out, err, 0))
    assert "dbt lost its connection to the warehouse" in line, line
    assert analytics_print(url) == world.base_print
    rerun_matches_reference(world, url)
    request.node.figures = f"restart took {restart_s:.1f}s; " + line.replace("|", "/")[:120]


@scenario("rollback, then the next night", "`make rollback` after tonight's publication, then the next night",
          "the next night publishes; its tables (incremental facts included) equal a --full-refresh night")
def test_rollback_then_the_next_night(world, request):
    from harness import run_stage as stage_run
    nxt = TONIGHT + dt.timedelta(days=1)
    # copies of the reference (tonight published, the base behind it): one rolled back, one for --full-refresh
    rolled = world.database("fault_rollback", template=world.ref)[1]
    full_url = world.database("fault_fullref", template=world.ref)[1]
    import os
    saved = dict(os.environ)
    os.environ.update(world.env(rolled))
    try:
        from spm_warehouse import pipeline
        back = pipeline.rollback()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert analytics_print(rolled) == world.base_print, back
    night = run_night(world.env(rolled), "next_night", nxt)
    assert night.ok, (night.failed.stage, night.failed.stderr[-3000:]) if night.failed else night
    env = world.env(full_url)
    xcom = {}
    for stage in ("prepare", "extract_mis", "extract_surveys", "build", "gate", "publish", "report"):
        given = xcom.get("build") if stage == "gate" else xcom.get("gate") if stage == "publish" else None
        cmd_full = stage in ("extract_mis", "extract_surveys", "build")
        run = stage_run(env, stage, "next_full", nxt, given, full_refresh=cmd_full)
        assert run.returncode == 0, (stage, run.stderr[-3000:])
        xcom[stage] = run.result
    assert analytics_print(rolled) == analytics_print(full_url)
    request.node.figures = f"next night {sum(s.seconds for s in night.stages):.0f}s"
