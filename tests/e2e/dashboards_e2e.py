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
- numbers shown equal the same KPIs queried from analytics, amounts with the
  reporting currency, tiles with their month;
- no chart shows an error or "No results" with the default filters, with a
  year picked in the Period filter, or with a region picked;
- with a year picked, every chart's query applied the Period filter (except the
  charts documented as period-independent), and the "last period" tables show
  December of that year; with a region picked, every chart whose dataset has a
  region applied it, and the tiles show that region's numbers;
- percentage axes end at 100% and legends are not paged (the ECharts options
  Superset rendered);
- the "Needs attention" table lists every branch whose PAR30 is above target
  at the latest period in kpi_alerts (the demo seeds one such breach);
- the Branch filter offers only branches with clients; the native Branch and
  Loan officer filters, picked in the filter bar, narrow the charts;
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
from dashboards_assets import PERIOD_INDEPENDENT
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


def kpis(conn: psycopg.Connection, branch_id: int | None = None, region: str | None = None) -> dict:
    """The figures the big numbers must show, straight from analytics (latest period), amounts with the currency."""
    where = "" if branch_id is None else "AND branch_id = %(b)s"
    where += "" if region is None else " AND region_name = %(r)s"
    row = conn.execute(
        f"""SELECT sum(active_clients), sum(gross_loan_portfolio), sum(par30_principal)
            FROM analytics.kpi_branch_month
            WHERE period_end = (SELECT max(period_end) FROM analytics.kpi_branch_month) {where}""",
        {"b": branch_id, "r": region},
    ).fetchone()
    clients, glp, par = row
    return {
        "Active clients": f"{int(clients):,d}",
        "Gross loan portfolio": f"{currency(conn)} {Decimal(glp):,.0f}",
        "PAR30 ratio": f"{Decimal(par) / Decimal(glp):.2%}" if glp else None,
    }


def currency(conn: psycopg.Connection) -> str:
    """The one currency of the loan products (what the import fills in)."""
    (code,) = conn.execute("""SELECT DISTINCT currency_code FROM analytics.dim_product
                              WHERE coalesce(currency_code, '') <> ''""").fetchall()
    return code[0]


def as_of_month(conn: psycopg.Connection) -> str:
    """How the tiles name the latest month, e.g. "Jun 2024"."""
    return conn.execute("SELECT to_char(max(period_end), 'Mon YYYY') FROM analytics.kpi_branch_month").fetchone()[0]


def pick_region(conn: psycopg.Connection) -> str:
    """A region with branches, not all of them (so that picking it must change the numbers)."""
    rows = conn.execute("""SELECT region_name, count(DISTINCT branch_id) FROM analytics.kpi_branch_month
                           WHERE branch_id > 0 GROUP BY 1 ORDER BY 2 DESC, 1""").fetchall()
    assert len(rows) >= 2, f"need two regions to test the Region filter, got {rows}"
    return rows[0][0]


def year_end_clients(conn: psycopg.Connection, year: int) -> dict[str, str]:
    """Active clients per branch at December of `year` (what the "last period" table must show)."""
    return {name: f"{n:,d}" for name, n in conn.execute(
        """SELECT branch_name, active_clients FROM analytics.kpi_branch_month
           WHERE period_end = make_date(%s, 12, 31)""", (year,))}


def rison(value) -> str:
    """Superset's URL encoding of native filter values (rison), for the few types we send."""
    if isinstance(value, dict):
        return "(" + ",".join(f"{rison(k)}:{rison(v)}" for k, v in value.items()) + ")"
    if isinstance(value, list):
        return "!(" + ",".join(rison(v) for v in value) + ")"
    if isinstance(value, bool):
        return "!t" if value else "!f"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("!", "!!").replace("'", "!'") + "'"


def preselect(dashboard: dict, name: str, extra: dict, value) -> str:
    """native_filters URL value that sets the filter `name` of `dashboard` (committed YAML)."""
    (flt,) = [f for f in dashboard["metadata"]["native_filter_configuration"] if f["name"] == name]
    return rison({flt["id"]: {"id": flt["id"], "extraFormData": extra, "filterState": {"value": value}}})


def committed_dashboards() -> dict[str, dict]:
    return {d["slug"]: d for d in (yaml.safe_load(p.read_text()) for p in (config.ASSETS_DIR / "dashboards").glob("*.yaml"))}


def chart_facts() -> dict[str, dict]:
    """chart name -> its params and its dataset's columns (committed YAML)."""
    datasets = {d["uuid"]: d for d in (yaml.safe_load(p.read_text())
                                       for p in (config.ASSETS_DIR / "datasets").rglob("*.yaml"))}
    out = {}
    for path in (config.ASSETS_DIR / "charts").glob("*.yaml"):
        ch = yaml.safe_load(path.read_text())
        ds = datasets[ch["dataset_uuid"]]
        out[ch["slice_name"]] = {"params": ch["params"], "columns": {c["column_name"] for c in ds["columns"]},
                                 "dttm": [f["subject"] for f in ch["params"].get("adhoc_filters") or []
                                          if f.get("operator") == "TEMPORAL_RANGE"]}
    return out


# Tables where "No results" is the good news: no alert for this branch / period.
EMPTY_MEANS_NONE = {"Needs attention"}


def assert_readable(dash: dict, who: str) -> None:
    """What a manager notices: errors, "No results", axes past 100%, paged legends."""
    facts = chart_facts()
    empty = [c["name"] for c in dash["charts"] if c["no_results"] and c["name"] not in EMPTY_MEANS_NONE]
    assert not empty, f"{who}: charts show no results: {empty}"
    for c in dash["charts"]:
        params, shown = facts[c["name"]]["params"], c.get("echarts")
        if not shown:
            continue
        if c["viz"].startswith("echarts_timeseries") and "%" in (params.get("y_axis_format") or "") \
                and not shown["horizontal"]:
            # a bound Superset set, or no bound and data ECharts rounds up to at most 100% (max <= 80%)
            assert shown["y_max"] and all(m <= 1 if m is not None else shown["data_max"] <= 0.8
                                          for m in shown["y_max"]), (who, c["name"], shown)
        if shown["legend_show"] and shown["series"] > 1:
            assert shown["legend_type"] == "plain", f"{who}: {c['name']}: legend {shown['legend_type']} (paged)"


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


def lines(text: str) -> list[str]:
    """A chart's visible text as lines, non-breaking spaces (currency formatting) made plain."""
    return [line.replace("\xa0", " ").strip() for line in text.splitlines() if line.strip()]


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
        assert_readable(dash, f"{who} {slug}")
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
        region = pick_region(conn)
        want_region = kpis(conn, region=region)
        month = as_of_month(conn)
        year = int(conn.execute("SELECT extract(year FROM max(period_end))::int - 1 FROM analytics.kpi_branch_month")
                   .fetchone()[0])
        year_end = year_end_clients(conn, year)
        branches_with_clients = sorted(r[0] for r in conn.execute(
            "SELECT DISTINCT branch_name FROM analytics.kpi_branch_month WHERE branch_id > 0"))
        par_breaches = sorted(r[0] for r in conn.execute(
            """SELECT DISTINCT branch_name FROM analytics.kpi_alerts
               WHERE is_latest_period AND scope = 'branch' AND indicator = 'par30_ratio'"""))
    committed = committed_dashboards()
    url_checks = []
    for slug, dash in sorted(committed.items()):
        names = {f["name"] for f in dash["metadata"]["native_filter_configuration"]}
        # KPI pages: the last full year; Data health: the year of the as-of date (the runs are recent)
        picked = year + 1 if slug == "spm-data-health" else year
        year_range = f"{picked}-01-01 : {picked + 1}-01-01"
        if "Period" in names:
            url_checks.append({"label": f"{slug}-year", "dashboard": slug, "native_filters": preselect(
                dash, "Period", {"time_range": year_range}, year_range)})
        if "Region" in names:
            url_checks.append({"label": f"{slug}-region", "dashboard": slug, "native_filters": preselect(
                dash, "Region", {"filters": [{"col": "region_name", "op": "IN", "val": [region]}]}, [region])})

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
                     {"dashboard": "spm-outreach", "filter": "Branch", "value": None},
                 ],
                 "url_checks": url_checks},
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
    for dash, name in ((outreach, "Active clients"), (portfolio, "Gross loan portfolio"), (portfolio, "PAR30 ratio")):
        tile = lines(chart(dash, name)["text"])
        assert want_all[name] in tile and month in tile, (name, tile, want_all[name], month)
        assert any("a year earlier" in line for line in tile), (name, tile)
    amounts = [c for c in portfolio["charts"] if c["name"].startswith(("Gross loan portfolio", "PAR30 amount"))
               and c["viz"] in ("big_number", "table")]
    code = want_all["Gross loan portfolio"].split()[0]
    assert amounts and all(code in c["text"] for c in amounts), [(c["name"], c["text"][:80]) for c in amounts]

    attention = chart(portfolio, "Needs attention")["text"]
    assert par_breaches and all(name in attention for name in par_breaches), (par_breaches, attention[:500])

    facts = chart_facts()
    checks = sessions["admin"]["url_checks"]
    for check_label, dash in checks.items():
        broken = [(c["name"], c["state"], c["error"]) for c in dash["charts"] if c["state"] != "ok"]
        assert not broken and not failed_chart_queries(dash), f"{check_label}: {broken} {dash['http_errors']}"
        assert_readable(dash, check_label)
        if check_label.endswith("-year"):
            ignored = [c["name"] for c in dash["charts"] if c["name"] not in PERIOD_INDEPENDENT
                       and not set(facts[c["name"]]["dttm"]) <= set(c["applied_filters"])]
            assert not ignored, f"{check_label}: charts ignore the Period filter: {ignored}"
        else:
            ignored = [c["name"] for c in dash["charts"] if "region_name" in facts[c["name"]]["columns"]
                       and "region_name" not in c["applied_filters"]]
            assert not ignored, f"{check_label}: charts ignore the Region filter: {ignored}"
    year_table = lines(chart(checks["spm-outreach-year"], "Branches, last period of the range")["text"])
    assert all(name in year_table for name in year_end), (year_end, year_table)
    assert all(n in year_table for n in year_end.values()), (year_end, year_table)
    region_tile = lines(chart(checks["spm-outreach-region"], "Active clients")["text"])
    assert want_region["Active clients"] in region_tile and want_region != want_all, (want_region, region_tile)

    by_branch, by_officer, branch_options = sessions["admin"]["filter_checks"]
    assert sorted(branch_options["options"]) == branches_with_clients, branch_options
    for check in (by_branch, by_officer):
        assert check["error"] is None, check
        assert not [c["name"] for c in check["charts"] if c["state"] != "ok"], check
    assert want_branch["Active clients"] in lines(chart(by_branch, "Active clients")["text"])
    assert not [n for n in other_branches if n in chart(by_branch, "Branches, last period of the range")["text"]]
    officer_table = chart(by_officer, "Loan officers, last period of the range")["text"]
    assert officer in officer_table and not [n for n in other_officers if n in officer_table]

    assert_all_rendered(sessions["branch_manager"], "branch manager")
    bm_outreach = sessions["branch_manager"]["dashboards"]["spm-outreach"]
    assert want_branch["Active clients"] in lines(chart(bm_outreach, "Active clients")["text"])
    assert want_branch["Active clients"] != want_all["Active clients"]
    table_text = chart(bm_outreach, "Branches, last period of the range")["text"]
    assert branch_name in table_text
    leaked = [name for name in other_branches if name in table_text]
    assert not leaked, f"branch manager of {branch_name} sees {leaked}"
    (bm_branch_filter,) = sessions["branch_manager"]["filter_checks"]
    assert bm_branch_filter["options"] == [branch_name], bm_branch_filter
    bm_officers = chart(sessions["branch_manager"]["dashboards"]["spm-portfolio-quality"],
                        "Loan officers, last period of the range")
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
