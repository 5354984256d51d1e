"""The one-page run report: loaded, checks, quarantine, published; what to look at when blocked."""

from __future__ import annotations

import html

import psycopg
import pytest
from gate_tiny_warehouse import AS_OF, RUN_ID, build_marts, build_raw, passing_dbt

from spm_warehouse import gate, report
from spm_warehouse import publication as publish
from spm_warehouse.paths import dbt_target_dir

CHEAP = ["dbt", "quarantine", "volume", "pii"]


@pytest.fixture
def wh(fresh_database, tmp_path, monkeypatch):
    monkeypatch.setenv("SPM_LOCAL_DIR", str(tmp_path / "local"))
    monkeypatch.setenv("SPM_REPORTS_DIR", str(tmp_path / "reports"))
    url = fresh_database("report")
    with psycopg.connect(url) as conn:
        conn.rows = build_raw(conn)  # type: ignore[attr-defined]
        build_marts(conn, conn.rows)
        conn.execute("INSERT INTO meta.quarantine (source, source_key, reason, run_id) VALUES "
                     "('kobo:aFORM', 'uuid:1', 'unknown_client: account_no ''999'' not in m_client', %s), "
                     "('kobo:aFORM', 'uuid:2', 'unknown_client: account_no ''998'' not in m_client', %s)",
                     (RUN_ID, RUN_ID))
        conn.commit()
        yield conn


def read(page) -> str:
    return page.read_text(encoding="utf-8")


def test_report_of_a_published_run(wh, tmp_path):
    verdict = gate.run_gate(wh, None, RUN_ID, AS_OF, passing_dbt(), only=CHEAP)
    assert verdict.passed, verdict.summary()
    published = publish.publish(wh, RUN_ID, AS_OF)
    page = report.write_run_report(wh, RUN_ID, AS_OF, tmp_path / "reports")
    assert page == tmp_path / "reports" / "manual__2024-06-30T02_00_00_00_00" / "index.html"
    text = read(page)
    assert f"PUBLISHED: build {published['build_id']}" in text
    assert "m_loan" in text and "incremental" in text                     # what was loaded
    for check in verdict.checks:                                           # every check with its result
        assert html.escape(check.name) in text
    assert text.count(">PASS<") == sum(c.status == "pass" for c in verdict.checks)
    assert "kobo:aFORM" in text and "unknown_client" in text               # quarantine counts
    assert "fct_portfolio_month" in text and ">16<" in text                # what was published, row counts
    assert "What to look at" not in text
    latest = tmp_path / "reports" / "latest"
    assert (latest / "index.html").read_text(encoding="utf-8") == text


def test_report_of_a_blocked_run_says_what_to_look_at(wh, tmp_path):
    verdict = gate.run_gate(wh, None, "run-good", AS_OF, passing_dbt(), only=CHEAP)
    publish.publish(wh, "run-good", AS_OF, verdict)
    build_marts(wh, wh.rows, scale=3.0)  # tonight's portfolio triples
    wh.commit()
    blocked = gate.run_gate(wh, None, RUN_ID, AS_OF, passing_dbt(), only=CHEAP)
    assert not blocked.passed
    with pytest.raises(publish.PublishBlocked):
        publish.publish(wh, RUN_ID, AS_OF)
    text = read(report.write_run_report(wh, RUN_ID, AS_OF, tmp_path / "reports"))
    assert "BLOCKED by the quality gate" in text
    look = text[text.index("What to look at"):text.index("What was loaded")]
    assert "volume.gross_loan_portfolio" in look
    assert "&quot;relative_change&quot;: 2.0" in look                     # the numbers
    assert "gate/thresholds.yml" in look                                   # the hint
    assert "Nothing was published by this run" in text
    live = wh.execute("SELECT build_id FROM meta.publications").fetchone()[0]
    assert f"BI currently reads build <code>{live}</code>" in text


def test_report_of_a_run_that_stopped_before_the_gate(wh, tmp_path):
    text = read(report.write_run_report(wh, RUN_ID, AS_OF, tmp_path / "reports"))
    assert "NOT JUDGED" in text and "The gate did not run for this run" in text
    assert "m_loan" in text  # the load it did record


def test_report_escapes_and_links_docs_and_moves_latest(wh, tmp_path):

    docs = dbt_target_dir("run-a") / "docs"
    docs.mkdir(parents=True)
    (docs / "index.html").write_text("<html>dbt docs</html>")
    (docs / "manifest.json").write_text("{}")
    gate.ensure_gate_tables(wh)
    wh.execute("""INSERT INTO meta.check_results (run_id, check_name, kind, status, blocking, numbers, message)
                  VALUES ('run-a', 'gx.evil', 'gx', 'fail', true, '{}', '<script>alert(1)</script>')""")
    wh.commit()
    out = tmp_path / "reports"
    (out / "run-a" / "gx_data_docs").mkdir(parents=True)
    (out / "run-a" / "gx_data_docs" / "index.html").write_text("<html>gx</html>")
    text = read(report.write_run_report(wh, "run-a", AS_OF, out))
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;" in text
    assert 'href="gx_data_docs/index.html"' in text and 'href="dbt_docs/index.html"' in text
    assert (out / "run-a" / "dbt_docs" / "manifest.json").exists()
    assert (out / "latest").resolve() == (out / "run-a").resolve()
    report.write_run_report(wh, "run-b", AS_OF, out)
    assert (out / "latest").resolve() == (out / "run-b").resolve()
