"""End-to-end test of the Superset dashboards (`make test-dashboards`).

Not collected by `make test` (the file name does not start with test_):
installing Superset and driving a browser is slow. Run it explicitly:
    PYTHONPATH=plugins:. .venv/bin/python -m pytest tests/e2e/dashboards_e2e.py

What it proves, for each warehouse (the real demo build, and the small
contract fixture of tests/fixtures/dashboards_fake_warehouse.py):
- the Superset venv installs from the lock and Chromium is present;
- set-up (metadata, admin, import, branch roles) works, and running it again
  changes nothing (same dashboards, charts, datasets, filters, ids);
- Superset starts on a free 127.0.0.1 port and answers /health;
- the admin logs in through the real login form; every dashboard opens in
  headless Chromium with every chart rendered and no failed chart query;
- numbers shown equal the same KPIs queried from analytics;
- the native Branch and Loan officer filters, picked in the filter bar, narrow
  the charts to that branch / officer;
- a branch manager sees only their branch (numbers, tables, the Branch
  filter's options); a wrong password does not log in;
- screenshots are saved under <reports>/dashboards_e2e/<warehouse>/.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path

import dashboards_fake_warehouse as fake  # tests/fixtures is on sys.path (pyproject.toml)
import psycopg
import pytest
import yaml
from project import FIXTURES

from dashboards import config, install, provision, server
from spm_warehouse import settings

pytestmark = pytest.mark.e2e

BROWSER_SCRIPT = FIXTURES / "dashboards_browser.py"
SLUGS = sorted(p.stem for p in (config.ASSETS_DIR / "dashboards").glob("*.yaml"))
METADATA_TABLES = ("dashboards", "slices", "tables", "table_columns", "sql_metrics", "dbs",
                   "dashboard_slices", "row_level_security_filters", "rls_filter_tables", "ab_role", "ab_user")


class Stopwatch:
    """Phase durations, printed with the result (not asserted)."""

    def __init__(self) -> None:
        self.start = self.last = time.monotonic()
        self.laps: list[str] = []

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps.append(f"{name} {now - self.last:.0f}s")
        self.last = now

    def __str__(self) -> str:
        return ", ".join(self.laps) + f" (total {time.monotonic() - self.start:.0f}s)"


def expected_dashboards() -> dict[str, dict]:
    """slug -> {"charts": n, "filters": {names}} from the committed YAML."""
    out = {}
    for path in (config.ASSETS_DIR / "dashboards").glob("*.yaml"):
        dash = yaml.safe_load(path.read_text())
        charts = [v for v in dash["position"].values() if isinstance(v, dict) and v.get("type") == "CHART"]
        filters = {f["name"] for f in dash["metadata"]["native_filter_configuration"]}
        out[dash["slug"]] = {"charts": len(charts), "filters": filters, "title": dash["dashboard_title"]}
    return out


def metadata_snapshot(db_path: Path) -> dict:
    """Row counts and id lists of Superset's metadata: equal before and after a re-import."""
    with sqlite3.connect(db_path) as conn:
        snap = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in METADATA_TABLES}
        snap["dashboard_ids"] = conn.execute("SELECT id, uuid FROM dashboards ORDER BY id").fetchall()
        snap["slice_ids"] = conn.execute("SELECT id, uuid FROM slices ORDER BY id").fetchall()
        snap["dataset_ids"] = conn.execute("SELECT id, uuid FROM tables ORDER BY id").fetchall()
        snap["rls"] = conn.execute("SELECT name, clause FROM row_level_security_filters ORDER BY name").fetchall()
    return snap


def kpis(conn: psycopg.Connection, branch_id: int | None = None) -> dict:
    """The figures the big numbers must show, straight from analytics (latest period)."""
    where = "" if branch_id is None else "AND branch_id = %(b)s"
    row = conn.execute(
        f"""SELECT sum(active_clients), sum(gross_loan_portfolio), sum(par30_principal)
            FROM analytics.kpi_branch_month
            WHERE period_end = (SELECT max(period_end) FROM analytics.kpi_branch_month) {where}""",
        {"b": branch_id},
    ).fetchone()
    clients, glp, par = row
    return {
        "Active clients": f"{int(clients):,d}",
        "Gross loan portfolio": f"{Decimal(glp):,.0f}",
        "PAR30 ratio": f"{Decimal(par) / Decimal(glp):.2%}" if glp else None,
    }


def pick_branch(conn: psycopg.Connection) -> tuple[int, str, list[str]]:
    """The branch of our test branch manager (most active clients), and the other branches' names."""
    rows = conn.execute(
        """SELECT branch_id, branch_name, active_clients FROM analytics.kpi_branch_month
           WHERE period_end = (SELECT max(period_end) FROM analytics.kpi_branch_month)
           ORDER BY active_clients DESC, branch_id"""
    ).fetchall()
    with_clients = [r for r in rows if r[2] > 0]
    assert len(with_clients) >= 2, f"need two branches with active clients to test branch security, got {rows}"
    return int(with_clients[0][0]), with_clients[0][1], [r[1] for r in rows if r[0] != with_clients[0][0]]


def pick_officer(conn: psycopg.Connection) -> tuple[str, list[str]]:
    """A loan officer with a portfolio at the latest period, and the other officers listed then."""
    rows = conn.execute(
        """SELECT DISTINCT loan_officer_name, gross_loan_portfolio > 0 FROM analytics.kpi_loan_officer_month
           WHERE is_latest_period ORDER BY 2 DESC, 1"""
    ).fetchall()
    assert rows and rows[0][1], f"no loan officer with a portfolio at the latest period: {rows}"
    return rows[0][0], [r[0] for r in rows[1:] if r[0] != rows[0][0]]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def anonymous_log_beacon(base_url: str) -> tuple[int, list[str]]:
    """POST /superset/log/ as the login page does while it unloads: status and Set-Cookie headers.

    Why: without our FLASK_APP_MUTATOR, Superset answers 302 with a new anonymous
    session cookie, which can overwrite the cookie of a login that just succeeded.
    """
    opener = urllib.request.build_opener(NoRedirect)
    with opener.open(base_url + "/login/", timeout=30) as page:
        cookie = "; ".join(h.split(";", 1)[0] for h in page.headers.get_all("Set-Cookie") or [])
    assert cookie.startswith("session="), f"the login page set no session cookie: {cookie!r}"
    beacon = urllib.request.Request(base_url + "/superset/log/?explode=events", method="POST",
                                    data=b'{"events": []}', headers={"Cookie": cookie,
                                                                     "Content-Type": "text/plain"})
    try:
        with opener.open(beacon, timeout=30) as resp:
            return resp.status, resp.headers.get_all("Set-Cookie") or []
    except urllib.error.HTTPError as err:  # 3xx/4xx land here with NoRedirect
        return err.code, err.headers.get_all("Set-Cookie") or []


def run_browser(p: config.SupersetPaths, request: dict) -> dict:
    proc = subprocess.run([str(p.python), str(BROWSER_SCRIPT)], input=json.dumps(request), capture_output=True,
                          text=True, timeout=1800, env=server.process_env(p))
    for line in proc.stdout.splitlines():
        if line.startswith("SPM_BROWSER "):
            return json.loads(line[len("SPM_BROWSER "):])
    raise AssertionError(f"browser script failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")


def chart(dashboard: dict, name: str) -> dict:
    found = [c for c in dashboard["charts"] if c["name"] == name]
    assert found, f"chart {name!r} not on {dashboard.get('title', dashboard.get('dashboard'))}: {[c['name'] for c in dashboard['charts']]}"
    return found[0]


def failed_chart_queries(dashboard: dict) -> list[dict]:
    # /colors is the frontend saving label colours; viewers may not write dashboards (403): not a chart.
    return [e for e in dashboard["http_errors"] if "/api/v1/chart/data" in e["url"]]


def assert_all_rendered(session: dict, who: str) -> None:
    expected = expected_dashboards()
    assert session["login_ok"], (
        f"{who} could not log in (landed on {session['landing_url']}; the page said: "
        f"{session.get('login_message')!r}; server log with requests: <reports>/dashboards_e2e/*/gunicorn.log)")
    assert sorted(session["dashboards"]) == SLUGS
    for slug, dash in session["dashboards"].items():
        want = expected[slug]
        assert dash["title"] == want["title"]
        assert len(dash["charts"]) == want["charts"], f"{who} {slug}: {len(dash['charts'])} charts shown"
        broken = [(c["name"], c["state"], c["error"]) for c in dash["charts"] if c["state"] != "ok"]
        assert not broken, f"{who} {slug}: charts not rendered: {broken}"
        assert not failed_chart_queries(dash), f"{who} {slug}: failed chart queries {dash['http_errors']}"
        assert set(dash["filters"]) == want["filters"], f"{who} {slug}: native filters {dash['filters']}"
        shot = Path(dash["screenshot"])
        assert shot.is_file() and shot.stat().st_size > 10_000, f"no screenshot {shot}"


@pytest.fixture(scope="module")
def superset_template(tmp_path_factory) -> Path:
    """Superset installed (venv, Chromium) and one freshly initialised metadata DB to copy.

    `superset db upgrade` + `init` take minutes; every scenario starts from a copy.
    """
    install.ensure_venv(config.paths())
    install.ensure_browser()
    template = config.SupersetPaths(venv=config.paths().venv, home=tmp_path_factory.mktemp("superset_template"))
    server.migrate_and_init(template)
    return template.home


def dashboards_end_to_end(warehouse_url: str, label: str, tmp_path: Path, monkeypatch, template: Path) -> dict:
    """The whole scenario on one warehouse; returns the browser's findings for extra checks."""
    artifacts = settings.reports_dir() / "dashboards_e2e" / label
    shutil.rmtree(artifacts, ignore_errors=True)
    with psycopg.connect(warehouse_url) as conn:
        branch_id, branch_name, other_branches = pick_branch(conn)
        officer, other_officers = pick_officer(conn)
        want_all, want_branch = kpis(conn), kpis(conn, branch_id)

    role = f"Branch manager: {branch_name}"[:64]
    access_file = tmp_path / "branch_access.yaml"
    access_file.write_text(yaml.safe_dump({"branch_roles": [{"name": role, "branch_ids": [branch_id]}]}))
    admin_pw, bm_pw = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", "postgres://" + warehouse_url.split("://", 1)[1])
    monkeypatch.setenv("SPM_SUPERSET_HOME", str(tmp_path / "superset"))
    monkeypatch.setenv("SPM_SUPERSET_ADMIN_PASSWORD", admin_pw)
    monkeypatch.setenv("SPM_SUPERSET_WORKERS", "2")
    p = config.paths()

    clock = Stopwatch()
    p.home.mkdir(parents=True)
    for name in (p.metadata_db.name, server.INIT_STAMP):
        shutil.copy2(template / name, p.home / name)
    manager = provision.NewUser(username="bm_e2e", password=bm_pw, roles=[role])
    first = provision.provision(p, access_file=access_file, users=[manager])
    clock.lap("first set-up")
    assert first["preflight"] == {"ok": True}, first
    assert first["imported"]["dashboards"] == len(SLUGS)
    before = metadata_snapshot(p.metadata_db)
    again = provision.provision(p, access_file=access_file, users=[manager])
    clock.lap("re-import")
    assert again["users"] == {"bm_e2e": "unchanged"} and again["admin"] == "unchanged"
    assert metadata_snapshot(p.metadata_db) == before, "re-importing the dashboards changed Superset's metadata"

    with server.running(p, log_path=tmp_path / "gunicorn.log") as url:
        beacon_status, beacon_cookies = anonymous_log_beacon(url)
        result = run_browser(p, {
            "base_url": url, "screenshots_dir": str(artifacts), "timeout_s": 120,
            "sessions": [
                {"label": "admin", "username": config.admin_user(), "password": admin_pw, "dashboards": SLUGS,
                 "filter_checks": [
                     {"dashboard": "spm-outreach", "filter": "Branch", "value": branch_name},
                     {"dashboard": "spm-portfolio-quality", "filter": "Loan officer", "value": officer},
                 ]},
                {"label": "branch_manager", "username": "bm_e2e", "password": bm_pw, "dashboards": SLUGS,
                 "filter_checks": [{"dashboard": "spm-outreach", "filter": "Branch", "value": None}]},
                {"label": "wrong_password", "username": "bm_e2e", "password": bm_pw + "x", "dashboards": []},
            ],
        })
    clock.lap("server + browser")
    artifacts.mkdir(parents=True, exist_ok=True)
    shutil.copy2(tmp_path / "gunicorn.log", artifacts / "gunicorn.log")  # with the access log, for diagnosis
    assert (beacon_status, beacon_cookies) == (204, []), (
        "an anonymous event-log beacon must not set a session cookie (it can undo a login)")
    (artifacts / "browser_result.json").write_text(json.dumps(result, indent=2))
    sessions = result["sessions"]

    assert_all_rendered(sessions["admin"], "admin")
    outreach = sessions["admin"]["dashboards"]["spm-outreach"]
    portfolio = sessions["admin"]["dashboards"]["spm-portfolio-quality"]
    assert chart(outreach, "Active clients")["text"].strip() == want_all["Active clients"]
    assert chart(portfolio, "Gross loan portfolio")["text"].strip() == want_all["Gross loan portfolio"]
    assert chart(portfolio, "PAR30 ratio")["text"].strip() == want_all["PAR30 ratio"]

    by_branch, by_officer = sessions["admin"]["filter_checks"]
    for check in (by_branch, by_officer):
        assert check["error"] is None, check
        assert not [c["name"] for c in check["charts"] if c["state"] != "ok"], check
    assert chart(by_branch, "Active clients")["text"].strip() == want_branch["Active clients"]
    assert not [n for n in other_branches if n in chart(by_branch, "Branches, latest period")["text"]]
    officer_table = chart(by_officer, "Loan officers, latest period")["text"]
    assert officer in officer_table and not [n for n in other_officers if n in officer_table]

    assert_all_rendered(sessions["branch_manager"], "branch manager")
    bm_outreach = sessions["branch_manager"]["dashboards"]["spm-outreach"]
    assert chart(bm_outreach, "Active clients")["text"].strip() == want_branch["Active clients"]
    assert want_branch["Active clients"] != want_all["Active clients"]
    table_text = chart(bm_outreach, "Branches, latest period")["text"]
    assert branch_name in table_text
    leaked = [name for name in other_branches if name in table_text]
    assert not leaked, f"branch manager of {branch_name} sees {leaked}"
    (bm_branch_filter,) = sessions["branch_manager"]["filter_checks"]
    assert bm_branch_filter["options"] == [branch_name], bm_branch_filter
    bm_officers = chart(sessions["branch_manager"]["dashboards"]["spm-portfolio-quality"], "Loan officers, latest period")
    assert not [name for name in other_branches if name in bm_officers["text"]]

    assert sessions["wrong_password"]["login_ok"] is False
    print(f"\n{label}: {clock}; screenshots: {artifacts}")
    return result


def test_dashboards_on_contract_fixture(fresh_database, tmp_path, monkeypatch, superset_template):
    """The dashboards against the small contract schema (independent of the pipeline's state)."""
    url = fresh_database("dashboards_contract")
    with psycopg.connect(url) as conn:
        fake.create_fake_analytics(conn)
        fake.grant_bi_reader(conn)
    dashboards_end_to_end(url, "contract_fixture", tmp_path, monkeypatch, superset_template)


def test_dashboards_on_demo_warehouse(demo_warehouse, tmp_path, monkeypatch, superset_template):
    """The dashboards on the real demo build of the nightly DAG."""
    assert demo_warehouse.returncode == 0, (
        f"the demo warehouse build failed; see {demo_warehouse.local_dir / 'first_run.log'}:\n"
        + demo_warehouse.log[-3000:]
    )
    dashboards_end_to_end(demo_warehouse.warehouse_url, "demo_warehouse", tmp_path, monkeypatch, superset_template)
