"""The one-page run report: what was loaded, every check, quarantine, what was published.

Why a static HTML page per run: the person on call opens one file (no
server, no login, works offline and as an e-mail attachment) and sees, first,
what to look at when the night was blocked. Everything on it is a query on
meta, so the page and the data-health dashboard never disagree.

Layout of the reports folder (settings.reports_dir(), SPM_REPORTS_DIR):

    <reports>/<run>/index.html        this page
    <reports>/<run>/gx_data_docs/     Great Expectations Data Docs (copied by the gate)
    <reports>/<run>/dbt_docs/         dbt docs of this run's build (when generated)
    <reports>/latest -> <run>         the newest report

<run> is the Airflow run id with characters unsafe in file names replaced.
"""

from __future__ import annotations

import html
import json
import logging
import os
import shutil
from datetime import date, datetime, timezone
from pathlib import Path

import psycopg

from spm_warehouse import paths, settings
from spm_warehouse.paths import run_dir_name

log = logging.getLogger(__name__)

DBT_DOC_FILES = ("index.html", "manifest.json", "catalog.json", "run_results.json")

HINTS = {
    "dbt": "Read the failing dbt tests in the dbt docs / target/run_results.json; the build is still in "
           "analytics_build for inspection (e.g. dbt test --select <test name>).",
    "reconciliation": "Compare the listed loan ids between raw_mis.m_loan_transaction and the source MIS: lost or "
                      "partly extracted transactions make the ledger disagree with m_loan.principal_outstanding_derived. "
                      "A full re-extraction (make run RUN_DATE=... FULL_REFRESH=1) repairs a lossy load.",
    "freshness": "Check the extraction task log and meta.watermarks / meta.load_manifest: did the MIS change, is "
                 "the connection pointed at the right database?",
    "volume": "Compare the build (analytics_build.kpi_branch_month) with what is published (analytics): a real "
              "jump (migration, portfolio sale) can be accepted by raising the threshold in gate/thresholds.yml "
              "for one night.",
    "quarantine": "SELECT source, reason, count(*) FROM meta.quarantine WHERE run_id = '<run>' GROUP BY 1, 2.",
    "gx": "Open the Great Expectations Data Docs below: the failed expectations list unexpected values.",
    "pii": "Remove the listed personal-data columns from the dbt marts; nothing personal may reach analytics.",
}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2933;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d9e2ec;padding-bottom:.3rem}
.meta{color:#52606d}.banner{padding:.8rem 1rem;border-radius:6px;font-weight:600;margin:1rem 0}
.ok{background:#e3f9e5;color:#0e5814}.bad{background:#ffe3e3;color:#8a1c1c}.warnb{background:#fff3c4;color:#7c5e10}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e4e7eb;vertical-align:top}
th{background:#f5f7fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#0e5814;font-weight:600}.warn{color:#a27c0f;font-weight:600}.fail{color:#b91c1c;font-weight:700}
details pre{white-space:pre-wrap;font-size:.8rem;background:#f5f7fa;padding:.5rem;margin:.3rem 0}
.look li{margin-bottom:.6rem}code{background:#f0f4f8;padding:0 .2rem}
"""


def _exists(conn: psycopg.Connection, relation: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (relation,)).fetchone()[0]


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _num(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (int,)) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return _e(value)


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td class=\"num\">{c}</td>" if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --------------------------------------------------------------------------- facts from meta


def _loads(conn: psycopg.Connection, run_id: str) -> list[tuple]:
    if not _exists(conn, "meta.load_manifest"):
        return []
    return conn.execute(
        """SELECT table_name, mode, rows_read, rows_merged, rows_deleted, seconds, watermark_to
           FROM meta.load_manifest WHERE run_id = %s ORDER BY started_at, table_name""", (run_id,)).fetchall()


def _source_profiles(conn: psycopg.Connection, run_id: str) -> list[tuple]:
    if not _exists(conn, "meta.source_profiles"):
        return []
    return conn.execute(
        """SELECT DISTINCT ON (source) source, version, table_modes FROM meta.source_profiles
           WHERE run_id = %s ORDER BY source, detected_at DESC""", (run_id,)).fetchall()


def _survey_loads(conn: psycopg.Connection, run_id: str) -> list[tuple]:
    if not _exists(conn, "raw_kobo.submissions"):
        return []
    return conn.execute(
        """SELECT split_part(source, ':', 1) AS channel, count(*) FROM raw_kobo.submissions
           WHERE run_id = %s GROUP BY 1 ORDER BY 1""", (run_id,)).fetchall()


def _drift(conn: psycopg.Connection, run_id: str) -> list[tuple]:
    if not _exists(conn, "meta.schema_drift"):
        return []
    return conn.execute(
        """SELECT table_name, column_name, change, data_type FROM meta.schema_drift
           WHERE run_id = %s ORDER BY 1, 2""", (run_id,)).fetchall()


def _checks(conn: psycopg.Connection, run_id: str) -> list[tuple]:
    if not _exists(conn, "meta.check_results"):
        return []
    return conn.execute(
        """SELECT check_name, kind, status, blocking, numbers, message FROM meta.check_results
           WHERE run_id = %s ORDER BY position, check_name""", (run_id,)).fetchall()


def _gate_run(conn: psycopg.Connection, run_id: str) -> tuple | None:
    if not _exists(conn, "meta.gate_runs"):
        return None
    return conn.execute(
        """SELECT passed, checks_passed, checks_warned, checks_failed, finished_at, summary, watermarks
           FROM meta.gate_runs WHERE run_id = %s""", (run_id,)).fetchone()


def _quarantine(conn: psycopg.Connection, run_id: str) -> list[tuple]:
    if not _exists(conn, "meta.quarantine"):
        return []
    return conn.execute(
        """SELECT coalesce(source, 'unknown'), split_part(coalesce(reason, ''), ':', 1), count(*),
                  (array_agg(source_key ORDER BY id))[1:3]
           FROM meta.quarantine WHERE run_id = %s GROUP BY 1, 2 ORDER BY 1, 3 DESC""", (run_id,)).fetchall()


def _publications(conn: psycopg.Connection, run_id: str) -> tuple[list[tuple], tuple | None]:
    if not _exists(conn, "meta.publications"):
        return [], None
    mine = conn.execute(
        """SELECT build_id, published_at, row_counts, check_summary, replaced_build_id
           FROM meta.publications WHERE run_id = %s AND action = 'publish' ORDER BY published_at""",
        (run_id,)).fetchall()
    live = conn.execute(
        """SELECT build_id, action, as_of_date, published_at, run_id FROM meta.publications
           ORDER BY published_at DESC, publication_id DESC LIMIT 1""").fetchone()
    return mine, live


# --------------------------------------------------------------------------- docs


def _copy_dbt_docs(run_id: str, run_dir: Path) -> Path | None:
    """Copy this run's dbt docs (index.html + JSON artifacts) when the build generated them."""
    base = paths.dbt_target_dir(run_id)
    for candidate in (base / "docs", base / "target"):
        if (candidate / "index.html").exists():
            out = run_dir / "dbt_docs"
            out.mkdir(parents=True, exist_ok=True)
            for name in DBT_DOC_FILES:
                source = candidate / name
                if not source.exists() and (base / "target" / name).exists():
                    source = base / "target" / name
                if source.exists():
                    shutil.copyfile(source, out / name)
            return out / "index.html"
    return None


def _point_latest(out_dir: Path, run_dir: Path) -> None:
    """<reports>/latest -> <run> (replaced atomically; a redirect page where symlinks are not possible)."""
    latest = out_dir / "latest"
    tmp = out_dir / f".latest.{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        if latest.exists() and not latest.is_symlink():
            shutil.rmtree(latest)
        os.replace(tmp, latest)
    except OSError:
        if latest.is_symlink():
            latest.unlink()
        latest.mkdir(exist_ok=True)
        (latest / "index.html").write_text(
            f'<!doctype html><meta http-equiv="refresh" content="0; url=../{html.escape(run_dir.name)}/index.html">'
            f'<a href="../{html.escape(run_dir.name)}/index.html">latest run report</a>')


# --------------------------------------------------------------------------- the page


def write_run_report(wh_conn: psycopg.Connection, run_id: str, as_of: date, out_dir: Path) -> Path:
    """Write <out_dir>/<run>/index.html and point <out_dir>/latest at it; return the page's path."""
    out_dir = Path(out_dir)
    run_dir = out_dir / run_dir_name(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    if wh_conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
        wh_conn.rollback()

    loads = _loads(wh_conn, run_id)
    profiles = _source_profiles(wh_conn, run_id)
    surveys = _survey_loads(wh_conn, run_id)
    drift = _drift(wh_conn, run_id)
    checks = _checks(wh_conn, run_id)
    gate = _gate_run(wh_conn, run_id)
    quarantine = _quarantine(wh_conn, run_id)
    published, live = _publications(wh_conn, run_id)
    dbt_docs = _copy_dbt_docs(run_id, run_dir)
    gx_docs = run_dir / "gx_data_docs" / "index.html"

    if published:
        banner = ("ok", f"PUBLISHED: build {published[-1][0]} is what BI reads (as of {as_of}).")
    elif gate is not None and not gate[0]:
        banner = ("bad", f"BLOCKED by the quality gate: {gate[3]} blocking check(s) failed. analytics was left "
                         "unchanged; see 'What to look at' below.")
    elif gate is not None:
        banner = ("warnb", "NOT PUBLISHED: the gate passed but the publish step did not complete - see the "
                           "publish task log in Airflow. analytics was left unchanged.")
    else:
        banner = ("bad", "NOT JUDGED: the run stopped before the quality gate (extraction or dbt build failed) - "
                         "see the Airflow task logs. analytics was left unchanged.")

    parts: list[str] = [
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>Run report {_e(run_id)}</title><style>{CSS}</style></head><body>",
        f"<h1>Nightly run report</h1><div class=\"meta\">run <code>{_e(run_id)}</code> &middot; as of "
        f"<strong>{_e(as_of)}</strong> &middot; written {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}</div>",
        f"<div class=\"banner {banner[0]}\">{_e(banner[1])}</div>",
    ]
    if live:
        parts.append(f"<p class=\"meta\">BI currently reads build <code>{_e(live[0])}</code> (as of {_e(live[2])}, "
                     f"{'restored by rollback' if live[1] == 'rollback' else 'published'} "
                     f"{live[3]:%Y-%m-%d %H:%M %Z}).</p>")

    failed = [c for c in checks if c[2] == "fail" and c[3]]
    if failed:
        items = []
        for name, kind, _status, _blocking, numbers, message in failed:
            hint = HINTS.get(kind, "").replace("<run>", run_id)
            items.append(
                f"<li><strong>{_e(name)}</strong>: {_e(message)}"
                f"<details><summary>numbers</summary><pre>{_e(json.dumps(numbers, indent=2, default=str))}</pre></details>"
                + (f"<div class=\"meta\">{_e(hint)}</div>" if hint else "") + "</li>")
        parts.append("<h2>What to look at</h2><ol class=\"look\">" + "".join(items) + "</ol>")

    # What was loaded
    parts.append("<h2>What was loaded</h2>")
    for source, version, modes in profiles:
        by_mode = {m: sorted(t for t, mm in modes.items() if mm == m) for m in ("cursor", "hash")}
        how = []
        if by_mode["cursor"]:
            how.append("by audit column (last_modified_on_utc; rows where it is NULL by row hash): "
                       + ", ".join(f"<code>{_e(t)}</code>" for t in by_mode["cursor"]))
        if by_mode["hash"]:
            how.append("by row hash (no audit column in this version): "
                       + ", ".join(f"<code>{_e(t)}</code>" for t in by_mode["hash"]))
        parts.append(f"<p>Source <code>{_e(source)}</code>: <strong>{_e(version)}</strong>. Read incrementally "
                     + "; ".join(how) + "; reference tables whole.</p>")
    if loads:
        rows = [[_e(t), _e(m), _num(r), _num(mg), _num(d), _num(float(s) if s is not None else None),
                 _e(f"{w:%Y-%m-%d %H:%M}" if isinstance(w, datetime) else w)]
                for t, m, r, mg, d, s, w in loads]
        parts.append(_table(["table", "mode", "rows read", "rows merged", "rows deleted", "seconds", "watermark"],
                            rows, {2, 3, 4, 5}))
        absent = [t for t, m, *_ in loads if m == "absent"]
        if absent:
            parts.append("<p>The source has no " + ", ".join(f"<code>{_e(t)}</code>" for t in absent)
                         + " (optional tables, e.g. a partial replica): nothing was read from them, and the marts "
                         "were built as if they were empty.</p>")
    else:
        parts.append("<p>No MIS load recorded for this run (meta.load_manifest).</p>")
    if surveys:
        parts.append("<p>Survey submissions new in this run: "
                     + ", ".join(f"{_e(ch)} {_num(n)}" for ch, n in surveys) + ".</p>")
    if drift:
        parts.append("<p><strong>Source schema changes:</strong></p>" + _table(
            ["table", "column", "change", "type"], [[_e(a), _e(b), _e(c), _e(d)] for a, b, c, d in drift]))
    if gate and gate[6]:
        wm = gate[6]
        parts.append(f"<p class=\"meta\">MIS data up to {_e(wm.get('mis'))}; newest survey {_e(wm.get('surveys'))}.</p>")

    # Every check
    parts.append("<h2>Quality gate</h2>")
    if gate:
        parts.append(f"<p>{_num(gate[1])} passed, {_num(gate[2])} warned, {_num(gate[3])} failed "
                     f"(judged {gate[4]:%Y-%m-%d %H:%M %Z}).</p>")
    if checks:
        rows = []
        for name, kind, status, blocking, numbers, message in checks:
            rows.append([f"<span class=\"{_e(status)}\">{_e(status.upper())}</span>", _e(name),
                         "blocking" if blocking else "reported",
                         _e(message) + f"<details><summary>numbers</summary><pre>"
                         f"{_e(json.dumps(numbers, indent=2, default=str))}</pre></details>"])
        parts.append(_table(["result", "check", "kind", "what was found"], rows))
    else:
        parts.append("<p>The gate did not run for this run.</p>")

    # Quarantine
    parts.append("<h2>Quarantine</h2>")
    if quarantine:
        parts.append(_table(["source", "reason", "rows", "first keys"],
                            [[_e(s), _e(r), _num(n), _e(", ".join(str(k) for k in (keys or []) if k))]
                             for s, r, n, keys in quarantine], {2}))
        parts.append(f"<p class=\"meta\">All rows: <code>SELECT * FROM meta.quarantine WHERE run_id = "
                     f"'{_e(run_id)}'</code></p>")
    else:
        parts.append("<p>Nothing quarantined in this run.</p>")

    # What was published
    parts.append("<h2>What was published</h2>")
    if published:
        build_id, at, counts, summary, replaced = published[-1]
        parts.append(f"<p>Build <code>{_e(build_id)}</code> published {at:%Y-%m-%d %H:%M:%S %Z}"
                     + (f", replacing <code>{_e(replaced)}</code> (kept in analytics_prev for <code>make rollback</code>)"
                        if replaced else "") + f". Checks: {_e(summary)}.</p>")
        parts.append(_table(["table", "rows"], [[_e(t), _num(n)] for t, n in sorted((counts or {}).items())], {1}))
    else:
        parts.append("<p>Nothing was published by this run.</p>")

    # Docs
    links = []
    if gx_docs.exists():
        links.append('<li><a href="gx_data_docs/index.html">Great Expectations Data Docs</a></li>')
    if dbt_docs:
        links.append('<li><a href="dbt_docs/index.html">dbt docs of this build</a></li>')
    elif (settings.reports_dir() / "docs" / "dbt" / "index.html").exists():
        links.append('<li><a href="../docs/dbt/index.html">dbt docs (latest published build)</a></li>')
    parts.append("<h2>Documentation</h2>" + ("<ul>" + "".join(links) + "</ul>" if links
                                              else "<p>No docs were generated for this run.</p>"))
    parts.append("</body></html>")

    page = run_dir / "index.html"
    tmp = run_dir / ".index.html.tmp"
    tmp.write_text("".join(parts), encoding="utf-8")
    os.replace(tmp, page)
    _point_latest(out_dir, run_dir)
    if wh_conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
        wh_conn.rollback()  # the report only reads
    return page
