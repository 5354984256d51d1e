"""`make faults`: faults a night survives (issue 15). Each scenario reports one line in docs/reliability.md.

The world: a demo MIS, a warehouse that published the night before (the base, cloned by
every scenario), one business day simulated in the MIS, and a reference warehouse where
tonight ran without a fault. A scenario breaks tonight on a clone of the base, checks
what the warehouse looks like right after, then reruns the night and compares with the
reference.

The Kobo faults (test_kobo_faults, one case per fault) need none of that world: each runs
the extract_surveys stage in its own process against a fresh warehouse and the replay
server, whose scripted faults (KoboReplayServer.inject) break the API's answers.
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
    StageRun,
    World,
    analytics_print,
    leftover_locks,
    one_line_error,
    published_build,
    raw_digests,
    run_night,
    run_stage,
    server_in_use,
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
        with server_in_use(exclusive=False):  # not while another worker's scenario restarts the server
            _build(w)
        yield w
    finally:
        w.drop_all()


def _build(w: World) -> None:
    """The demo MIS, the base (published the night before), one day simulated, tonight's reference."""
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

    def lock_source_table():  # a DBA's long lock on the table: the read waits past the statement timeout
        with psycopg.connect(world.mis_url, autocommit=True) as conn, conn.transaction():
            conn.execute("LOCK TABLE m_loan_transaction IN ACCESS EXCLUSIVE MODE")
            stop.wait(30)

    if how == "terminated":
        cmd = [sys.executable, "-m", "spm_warehouse.stage", "extract_mis", "--run-id", "tonight", "--as-of",
               TONIGHT.isoformat()]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        early: list[str] = []
        for text in proc.stderr:  # the stage says when it is paused inside the COPY of m_loan_transaction
            early.append(text)
            if "fault point extract.copy:m_loan_transaction" in text:
                break
        with psycopg.connect(world.mis_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = 'spm_warehouse_extract'")
        out, err = proc.communicate(timeout=600)
        run = StageRun("extract_mis", proc.returncode, out, "".join(early) + err, 0)
    else:
        locker = threading.Thread(target=lock_source_table)
        locker.start()
        time.sleep(1)
        try:
            run = run_stage(env, "extract_mis", "tonight", TONIGHT)
        finally:
            stop.set()
            locker.join()
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
    paused = world.env(url, SPM_FAULT_POINT="build.dbt", SPM_FAULT_ACTION="pause", SPM_FAULT_PAUSE_S="20")
    cmd = [sys.executable, "-m", "spm_warehouse.stage", "build", "--run-id", "night_one", "--as-of",
           TONIGHT.isoformat()]
    first = subprocess.Popen(cmd, env=paused, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    for text in first.stderr:  # the first night's dbt is building (and paused there) now
        if "fault point build.dbt" in text:
            break
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
    import os

    from spm_warehouse import pipeline
    # bi_reader is a role of the whole server: with the password every night sets (SPM_BI_READER_PASSWORD),
    # a scenario running beside this one (make faults runs two at once) cannot change it under the reader
    password = os.environ.get("SPM_BI_READER_PASSWORD") or "reader-" + str(SEED)
    with psycopg.connect(url, autocommit=True) as conn:
        if not os.environ.get("SPM_BI_READER_PASSWORD"):
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
@pytest.mark.restarts_server
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


# ---- Kobo faults: fast, no night needed (the extract_surveys stage in its own process, a fresh warehouse,
# ---- the KoboToolbox replay server); the two that end in dbt's quarantine build the survey models only.

KOBO_ASSET = "aKoboFaults"
KOBO_TOKEN = "kobo-faults-token"
KOBO_T0 = dt.datetime(2024, 6, 1, 8, 0, tzinfo=dt.timezone.utc)

KOBO_FAULTS = {
    "html_page": (
        "the API answers page 2 with nginx's HTML error page, as 502 and then as 200; later the same page "
        "every time",
        "retried (2 backoffs) and all 7 submissions stored; when it never stops, the stage fails with one line "
        "naming the HTML page and no traceback, the watermark stays, the drop files still load, and the retry "
        "stores the 3 new submissions"),
    "truncated_json": (
        "page 2 is half its JSON (matching Content-Length); page 3's connection closes half-way through the body",
        "both retried; all 7 submissions stored once, the watermark at the newest"),
    "retry_after_429": (
        "HTTP 429 with Retry-After: 1 twice; then Retry-After: 3600",
        "the stage waits what the server asks (>= 2 s) and stores everything; a wait beyond the 300 s cap is "
        "not taken: one line at once, the watermark stays, the retry stores the rest"),
    "repeated_page": (
        "page 2 carries the submissions of page 1 again (a cache ignoring the query string)",
        "the stage stops with one line naming the repeated page (no loop: 2 requests), page 1 stays stored, the "
        "watermark stays; the retry stores all 7, none twice"),
    "invalid_utf8_file": (
        "a JSON export in the drop folder with Latin-1 bytes late in the file, next to a good CSV export",
        "the bad file is rejected whole (nothing of it stored) and kept in rejected/ with its .reason.txt, "
        "raw_kobo.loaded_files and meta.quarantine; the good file loads; the stage succeeds"),
    "unknown_form_version": (
        "a submission of form version v9, whose PPI and household questions were renamed (ppi2/*, hh2/*)",
        "stored verbatim; dbt quarantines it with a reason (missing_ppi_answer: every PPI question), the gate's "
        "copy puts that row in meta.quarantine, and int_surveys__unknown_fields lists each unread field of v9; "
        "the 7 v1 submissions are accepted"),
    "answer_10mb": (
        "a 10 MB answer (a free-text note) in one submission from the API, and one in a CSV export",
        "each submission is stored with a marker in that answer's place (raw payload < 10 kB), the whole answer "
        "in meta.quarantine (oversized_answer, once even when pulled again); the CSV file is loaded, not "
        "rejected; dbt builds and accepts their other answers"),
}


def kobo_submission(n: int, version: str = "v1", **answers) -> dict:
    from surveys_support import answer_codes
    codes = answer_codes("DEMO_SYNTH_2024")
    when = KOBO_T0 + dt.timedelta(minutes=n)
    payload = {
        "_id": 5000 + n, "meta/instanceID": f"uuid:kobo-fault-{n:04d}", "_xform_id_string": KOBO_ASSET,
        "__version__": version, "_submission_time": when.strftime("%Y-%m-%dT%H:%M:%S"),
        "today": when.date().isoformat(), "survey/type": "baseline", "client/account_no": "000000001",
        "ppi/scorecard": "DEMO_SYNTH_2024", "hh/members": "5",
        **{f"ppi/{q}": c[0] for q, c in codes.items()},
    }
    payload.update(answers)
    return payload


class KoboWorld:
    """A fresh warehouse, a drop folder and a replay server; `stage()` runs extract_surveys in a process."""

    def __init__(self, url: str, server, work) -> None:
        self.url, self.server, self.work = url, server, work
        self.drop = work / "drop"
        self.drop.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict:
        from databases import conn_uri_for
        env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("SPM_FAULT", "AIRFLOW_CONN_"))}
        env.update({
            "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}", "AIRFLOW_CONN_WAREHOUSE": conn_uri_for(self.url),
            "AIRFLOW_CONN_KOBOTOOLBOX": json.dumps({"conn_type": "http", "host": self.server.url,
                                                    "password": KOBO_TOKEN, "extra": {
                                                        "asset_uids": [KOBO_ASSET], "page_size": 3,
                                                        "max_attempts": 3, "backoff_s": 0.2}}),
            "SPM_SURVEY_DROP_DIR": str(self.drop), "SPM_LOCAL_DIR": str(self.work / "local"),
        })
        return env

    def stage(self, run_id: str = "kobo_night"):
        """The stage of one night (its retries keep the run id: the night lease stays theirs)."""
        return run_stage(self.env(), "extract_surveys", run_id, BASE_AS_OF, timeout=300)

    def query(self, text: str, *params) -> list[tuple]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(text, params).fetchall()

    def stored(self) -> int:
        return self.query("SELECT count(*) FROM raw_kobo.submissions")[0][0]

    def watermark(self):
        rows = self.query("SELECT watermark FROM meta.watermarks WHERE table_name = %s", f"kobo:{KOBO_ASSET}")
        return rows[0][0] if rows else None


def kobo_ok(run) -> dict:
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    return run.result


def kobo_html_page(k: KoboWorld) -> str:
    k.server.inject("html", start=3, status=502).inject("html", start=3, status=200)
    first = kobo_ok(k.stage())
    assert k.server.served_faults == ["html", "html"]
    assert first["api_rows_new"] == 7 and k.stored() == 7
    assert k.watermark() == KOBO_T0 + dt.timedelta(minutes=6)
    k.server.add_submissions(KOBO_ASSET, [kobo_submission(n) for n in range(7, 10)])
    k.server.inject("html", times=99, status=200)
    (k.drop / "late_export.json").write_text(json.dumps([kobo_submission(50)]))
    failed = k.stage()
    assert failed.returncode == 2
    line = one_line_error(failed)
    assert "still failing after 3 attempts" in line and "an HTML page ('502 Bad Gateway') instead of JSON" in line
    assert k.watermark() == KOBO_T0 + dt.timedelta(minutes=6), "the watermark stays"
    assert (k.drop / "loaded" / "late_export.json").exists() and k.stored() == 8
    k.server.faults.clear()
    retry = kobo_ok(k.stage())
    assert retry["api_rows_new"] == 3 and k.stored() == 11
    return line.replace("|", "/")[:150]


def kobo_truncated_json(k: KoboWorld) -> str:
    k.server.inject("truncated", start=3).inject("cut", start=6)
    result = kobo_ok(k.stage())
    assert k.server.served_faults == ["truncated", "cut"]
    assert result["api_rows_received"] == 7 and result["api_rows_new"] == 7 and k.stored() == 7
    assert k.watermark() == KOBO_T0 + dt.timedelta(minutes=6)
    data = [r for r in k.server.requests if r["path"].endswith("/data/")]
    return f"{len(data)} requests for 3 pages; 7 of 7 stored"


def kobo_retry_after_429(k: KoboWorld) -> str:
    k.server.inject("throttle", times=2, retry_after="1")
    run = kobo_ok(k.stage())
    assert run["api_rows_new"] == 7 and k.server.served_faults == ["throttle", "throttle"]
    waited = k_last_seconds(k)
    assert waited >= 2.0, f"the pull took {waited}s: it did not wait for Retry-After"
    k.server.add_submissions(KOBO_ASSET, [kobo_submission(n) for n in range(7, 10)])
    k.server.inject("throttle", times=99, retry_after="3600")
    t0 = time.monotonic()
    stopped = k.stage()
    took = time.monotonic() - t0
    line = one_line_error(stopped)
    assert "asking to retry after 3600s, longer than this run waits (300s)" in line, line
    assert took < 60 and k.watermark() == KOBO_T0 + dt.timedelta(minutes=6)
    k.server.faults.clear()
    assert kobo_ok(k.stage())["api_rows_new"] == 3 and k.stored() == 10
    return f"waited {waited:.1f}s for Retry-After 1+1; a 3600 s ask stopped in {took:.1f}s"


def k_last_seconds(k: KoboWorld) -> float:
    return float(k.query("SELECT seconds FROM meta.load_manifest ORDER BY id DESC LIMIT 1")[0][0])


def kobo_repeated_page(k: KoboWorld) -> str:
    k.server.inject("repeat", start=3)
    failed = k.stage()
    assert failed.returncode == 2
    line = one_line_error(failed)
    assert "page 2 (start=3, limit=3) repeats page 1 (the same 3 submissions)" in line, line
    assert len([r for r in k.server.requests if r["path"].endswith("/data/")]) == 2, "no loop"
    assert k.stored() == 3 and k.watermark() is None
    retry = kobo_ok(k.stage())
    assert retry["api_rows_new"] == 4 and k.stored() == 7
    assert k.query("SELECT count(*) FROM raw_kobo.submissions GROUP BY instance_id HAVING count(*) > 1") == []
    return line.replace("|", "/")[:150]


def kobo_invalid_utf8_file(k: KoboWorld) -> str:
    good = [kobo_submission(n) for n in range(20, 23)]
    text = json.dumps([kobo_submission(n, note="x" * 2000) for n in range(30, 700)]).encode()
    bad = text[:-300] + "José".encode("latin-1") + text[-300:]  # invalid UTF-8 after the first MB
    (k.drop / "field_export.json").write_bytes(bad)
    header = sorted(good[0])
    lines = [";".join(header)] + [";".join(str(s[h]) for h in header) for s in good]
    (k.drop / f"{KOBO_ASSET}__export.csv").write_text("\n".join(lines) + "\n")
    result = kobo_ok(k.stage())
    assert result["files_rejected"] == 1 and result["files_loaded"] == 1
    assert (k.drop / "rejected" / "field_export.json").read_bytes() == bad
    reason = (k.drop / "rejected" / "field_export.json.reason.txt").read_text().strip()
    offset = len(text) - 300 + 3  # "Jos" then the Latin-1 é
    assert reason == f"not UTF-8 text (invalid continuation byte at byte {offset}, line 1): export it again as UTF-8", \
        reason
    assert k.query("SELECT status, reason FROM raw_kobo.loaded_files WHERE filename = 'field_export.json'") == \
        [("rejected", reason)]
    assert k.query("SELECT reason FROM meta.quarantine WHERE source = 'file:field_export.json'") == \
        [(f"bad_export_file: {reason}",)]
    assert k.stored() == 3 + 7, "the good file and the API, nothing of the bad file"
    return f"{len(bad) / 1e6:.1f} MB file rejected: {reason}"


def kobo_dbt_build(k: KoboWorld, tmp_path):
    from surveys_support import build_surveys, create_raw_mis, project_copy
    with psycopg.connect(k.url) as conn:
        create_raw_mis(conn, {"m_office": [{"id": 1, "name": "North"}],
                              "m_client": [{"id": 1, "account_no": "000000001", "status_enum": 300, "office_id": 1,
                                            "activation_date": dt.date(2023, 1, 5)}]})
    run = build_surveys(project_copy(tmp_path), k.url, as_of=BASE_AS_OF.isoformat())
    errors = {n: r["status"] for n, r in run.results.items() if r["status"] in ("error", "fail")}
    assert errors == {}, run.output[-3000:]
    return run


def kobo_unknown_form_version(k: KoboWorld, tmp_path) -> str:
    v9 = kobo_submission(7, version="v9")
    v9 = {("ppi2/" + key[4:] if key.startswith("ppi/q") else "hh2/members" if key == "hh/members" else key): v
          for key, v in v9.items()}
    k.server.add_submissions(KOBO_ASSET, [v9])
    assert kobo_ok(k.stage())["api_rows_new"] == 8
    kobo_dbt_build(k, tmp_path)
    reasons = k.query("SELECT source_key, reason FROM intermediate.int_surveys__quarantine")
    missing = ", ".join(f"ppi/q{n:02d}" for n in range(1, 11))
    assert reasons == [("uuid:kobo-fault-0007", f"missing_ppi_answer: {missing} empty")], reasons
    drift = k.query("SELECT field_name FROM intermediate.int_surveys__unknown_fields "
                    "WHERE asset_uid = %s AND form_version = 'v9' ORDER BY 1", KOBO_ASSET)
    assert [d[0] for d in drift] == ["hh2/members"] + [f"ppi2/q{n:02d}" for n in range(1, 11)]
    accepted = k.query("SELECT count(*) FROM intermediate.int_surveys__accepted")[0][0]
    assert accepted == 7
    from spm_warehouse.gate.quarantine import copy_dbt_quarantine
    with psycopg.connect(k.url) as conn:  # what the gate does: dbt's quarantine into meta.quarantine
        copy_dbt_quarantine(conn, "kobo_night")
    assert k.query("SELECT source, source_key, reason FROM meta.quarantine WHERE run_id = 'kobo_night'") == \
        [(f"kobo:{KOBO_ASSET}", "uuid:kobo-fault-0007", reasons[0][1])]
    return f"1 quarantined (missing_ppi_answer), {len(drift)} unread fields of v9 listed, {accepted} accepted"


def kobo_answer_10mb(k: KoboWorld, tmp_path) -> str:
    big = "Lorem ipsum dolor sit amet. " * (10_485_760 // 28 + 1)
    k.server.add_submissions(KOBO_ASSET, [kobo_submission(7, **{"notes/comment": big})])
    in_file = kobo_submission(8, **{"notes/comment": big})
    header = sorted(in_file)
    (k.drop / f"{KOBO_ASSET}__export.csv").write_text(
        ";".join(header) + "\n" + ";".join(str(in_file[h]) for h in header) + "\n")
    result = kobo_ok(k.stage())
    assert result["api_rows_new"] == 8 and result["assets"][KOBO_ASSET]["oversized"] == 1
    assert result["files_loaded"] == 1 and result["file_rows_oversized"] == 1
    payload, size = k.query("SELECT payload, octet_length(payload::text) FROM raw_kobo.submissions "
                            "WHERE instance_id = 'uuid:kobo-fault-0007'")[0]
    assert payload["notes/comment"].startswith(f"[oversized answer: {len(big)} bytes")
    assert payload["_spm_oversized"] == {"notes/comment": len(big)} and size < 10_000
    kobo_ok(k.stage())  # the same submission pulled again (lookback): no second quarantine row
    rows = k.query("SELECT source, source_key, split_part(reason, ':', 1), length(payload -> 'answers' ->> "
                   "'notes/comment') FROM meta.quarantine ORDER BY source_key")
    assert rows == [(f"kobo:{KOBO_ASSET}", f"uuid:kobo-fault-000{n}", "oversized_answer", len(big)) for n in (7, 8)]
    kobo_dbt_build(k, tmp_path)
    accepted = k.query("SELECT count(*) FROM intermediate.int_surveys__accepted WHERE instance_id IN (%s, %s)",
                       "uuid:kobo-fault-0007", "uuid:kobo-fault-0008")[0][0]
    assert accepted == 2
    return f"{len(big) / 1e6:.1f} MB answers (API, CSV): stored rows {size / 1e3:.1f} kB, whole answers in meta.quarantine"


KOBO_CASES = {
    "html_page": kobo_html_page, "truncated_json": kobo_truncated_json, "retry_after_429": kobo_retry_after_429,
    "repeated_page": kobo_repeated_page, "invalid_utf8_file": kobo_invalid_utf8_file,
    "unknown_form_version": kobo_unknown_form_version, "answer_10mb": kobo_answer_10mb,
}


@pytest.mark.parametrize("fault", list(KOBO_FAULTS))
@scenario("Kobo faults", {k: v[0] for k, v in KOBO_FAULTS.items()}, {k: v[1] for k, v in KOBO_FAULTS.items()})
def test_kobo_faults(fault, fresh_database, tmp_path, request):
    from tools.demo.kobo_replay import KoboReplayServer
    with KoboReplayServer(token=KOBO_TOKEN, page_size=3) as server:
        server.add_submissions(KOBO_ASSET, [kobo_submission(n) for n in range(7)])
        k = KoboWorld(fresh_database("kobo_faults"), server, tmp_path)
        case = KOBO_CASES[fault]
        needs_dbt = fault in ("unknown_form_version", "answer_10mb")
        request.node.figures = case(k, tmp_path / "dbt") if needs_dbt else case(k)
