"""The demo MIS's SPM shape (tools/demo/fineract_spm.py): consistent with the shipped scorecard, deterministic,
overlapping the Kobo demo surveys, and - through the real extraction and dbt build - scored like Kobo answers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import psycopg
import pytest
from surveys_support import expected_likelihood, points_of, project_copy, run_dbt

from spm_warehouse.settings import parse_conn_uri
from spm_warehouse.sources import fineract, fineract_datatables, kobo
from tools.demo import fineract as demo_mis
from tools.demo import fineract_spm
from tools.demo.surveys import generate_surveys

AS_OF = dt.date(2024, 6, 30)
CARD = "DEMO_SYNTH_2024"
CLIENTS = 80


@pytest.fixture
def spm_demo(fresh_database, tmp_path):
    url = fresh_database("spm_demo")
    drop = tmp_path / "drop"
    drop.mkdir()
    with psycopg.connect(url) as conn:
        demo_mis.build_demo_mis(conn, clients=CLIENTS, seed=11, as_of=AS_OF)
        generate_surveys(conn, out_dir=drop, seed=11, as_of=AS_OF)
        counts = fineract_spm.add_mis_surveys(conn, seed=11, as_of=AS_OF, survey_drop_dir=drop)
    return url, drop, counts


def rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def test_the_default_demo_has_no_survey_module(fresh_database):
    url = fresh_database("plain_demo")
    with psycopg.connect(url) as conn:
        demo_mis.build_demo_mis(conn, clients=5, seed=11, as_of=AS_OF)
    assert rows(url, "SELECT to_regclass('m_survey_scorecards'), to_regclass('client_spm')") == [(None, None)]


def test_deterministic_for_a_seed(spm_demo, fresh_database):
    url, drop, counts = spm_demo
    other = fresh_database("spm_demo_again")
    with psycopg.connect(other) as conn:
        demo_mis.build_demo_mis(conn, clients=CLIENTS, seed=11, as_of=AS_OF)
        assert fineract_spm.add_mis_surveys(conn, seed=11, as_of=AS_OF, survey_drop_dir=drop) == counts
    for table in fineract_spm.MODULE_COLUMNS:
        assert rows(url, f"SELECT * FROM {table} ORDER BY 1") == rows(other, f"SELECT * FROM {table} ORDER BY 1"), table
    with psycopg.connect(other) as conn:  # another seed gives other answers
        fineract_spm.add_mis_surveys(conn, seed=12, as_of=AS_OF, survey_drop_dir=drop)
    assert rows(url, "SELECT * FROM m_survey_scorecards ORDER BY 1") != \
        rows(other, "SELECT * FROM m_survey_scorecards ORDER BY 1")


def test_the_ppi_survey_is_the_shipped_scorecard(spm_demo):
    url, _, _ = spm_demo
    points = points_of(CARD)
    got = {(q, r.removeprefix("answer ")): p for q, r, p in rows(url, """
        SELECT q.a_key, r.a_text, r.a_value FROM m_survey_responses r JOIN m_survey_questions q ON q.id = r.question_id
        WHERE q.survey_id = 1""")}
    assert got == points
    lookup = {s: pct for s, pct in rows(url, "SELECT value_from, score FROM m_survey_lookup_tables "
                                             "WHERE survey_id = 1 AND a_key = 'national'")}
    assert len(lookup) == 101
    assert all(lookup[s] == (Decimal(str(expected_likelihood(CARD, s))) * 100) for s in (0, 37, 100))
    assert rows(url, "SELECT registered_table_name, application_table_name FROM x_registered_table") == [
        ("client_spm", "m_client")]


def test_some_kobo_surveyed_clients_have_an_mis_interview_on_the_same_day_and_others_on_another(spm_demo):
    url, drop, _ = spm_demo
    kobo = fineract_spm._kobo_interviews(drop)
    mis = rows(url, """SELECT DISTINCT c.account_no, s.created_on::date FROM m_survey_scorecards s
                       JOIN m_client c ON c.id = s.client_id WHERE s.survey_id = 1""")
    same = {a for a, d in mis if d in kobo.get(a, [])}
    other = {a for a, d in mis if a in kobo and d not in kobo[a]}
    assert same and other


def test_extracted_and_built_the_mis_surveys_score_like_the_scorecard(spm_demo, fresh_database, tmp_path):
    url, drop, _ = spm_demo
    wh = fresh_database("spm_demo_wh")
    info = parse_conn_uri("mis_fineract", url)
    with psycopg.connect(wh) as conn:
        fineract.extract_mis(info, conn, run_id="spm", as_of=AS_OF)
        session = fineract.open_source(info)
        try:
            fineract_datatables.extract_datatables(session, conn, "spm", AS_OF, fineract.source_label(info))
        finally:
            session.close()
        kobo.extract_surveys(None, conn, "spm", drop)
    run = run_dbt(project_copy(tmp_path), wh, ["build", "--select", "+fct_client_indicator",
                                               "+int_mis_surveys__quarantine", "--indirect-selection", "empty"],
                  {"as_of_date": AS_OF.isoformat()})
    assert run.returncode == 0, run.output[-3000:]
    scored = rows(wh, "SELECT ppi_score, poverty_likelihood FROM intermediate.int_mis_surveys__accepted")
    assert len(scored) > 5
    for score, likelihood in scored:
        assert likelihood == Decimal(str(expected_likelihood(CARD, score))), score
    # the one planted fault: a submission that skips q10
    assert rows(wh, "SELECT reason_code FROM intermediate.int_mis_surveys__quarantine") == [
        ("question_not_answered_once",)]
    # the client_spm datatable reaches the indicator fact through the seed's mapping
    by_indicator = dict(rows(wh, """SELECT indicator_code, count(*) FROM analytics_build.fct_client_indicator
                                    WHERE instance_id LIKE 'datatable:client_spm:%' GROUP BY 1"""))
    n = rows(url, "SELECT count(*) FROM client_spm")[0][0]
    assert rows(wh, "SELECT DISTINCT channel FROM analytics_build.fct_client_indicator ORDER BY 1") == [
        ("kobo",), ("mis",)]
    assert by_indicator == {"household_size": n, "monthly_hh_income": n, "household_area": n, "business_type": n}
