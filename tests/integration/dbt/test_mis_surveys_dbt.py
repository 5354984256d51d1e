"""Surveys kept in the MIS (Fineract's survey module) and mapped datatables, through a real `dbt build`.

A small hand-made world: PPI surveys of the MIS with their own lookup tables
(one with a gap, one with an overlap, one survey that is not a PPI), MIS
submissions that break each quarantine rule, Kobo submissions of the same
clients on the same and other dates, and mapped client datatable values.
Expected values are worked out here from the rows below (docs/kpi-contract.md,
"Surveys kept in the MIS"), not read back from the models.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

import psycopg
import pytest
from databases import TempDatabase
from surveys_support import (
    SEEDS,
    SURVEY_SELECTION,
    answer_codes,
    create_raw_mis,
    expected_likelihood,
    project_copy,
    run_dbt,
)

from spm_warehouse.sources import fineract_datatables, kobo

AS_OF = "2024-06-30"
ASSET = "aTestClientMonitoring"
CARD = "DEMO_SYNTH_2024"
POOREST = {q: codes[0] for q, codes in answer_codes(CARD).items()}  # Kobo PPI score 0
KOBO_POOREST = Decimal(str(expected_likelihood(CARD, 0)))

SELECTION = [*SURVEY_SELECTION, "+path:models/intermediate/mis_surveys", "+kpi_branch_month"]

# ---- the survey module ---------------------------------------------------------------------------
# PPI survey 1 (and 5, a second PPI survey with the same questions' points): questions a, b, c, each with
# responses worth 0 / 5 / 10 points. Lookup for 'national': 0-10 -> 80 %, 11-20 -> 50 %, 21-30 -> 20 %.
# Survey 2 has lookup rows for another line only (not a PPI survey at var ppi_poverty_line).
# Survey 3's national lookup has a gap (11-19), survey 4's an overlap (0-15 and 15-30).
SURVEYS = [1, 2, 3, 4, 5]
QUESTIONS = {s: {k: s * 100 + i for i, k in enumerate("abc", start=1)} for s in SURVEYS}   # survey -> key -> id
RESPONSES = {qid: {p: qid * 10 + n for n, p in enumerate((0, 5, 10))}                   # question -> points -> id
             for s in SURVEYS for qid in QUESTIONS[s].values()}
LOOKUPS = {
    1: [("national", 0, 10, 80), ("national", 11, 20, 50), ("national", 21, 30, 20), ("extreme", 0, 30, 10)],
    2: [("extreme", 0, 30, 10)],
    3: [("national", 0, 10, 80), ("national", 20, 30, 20)],
    4: [("national", 0, 15, 80), ("national", 15, 30, 20)],
    5: [("national", 0, 10, 70), ("national", 11, 20, 40), ("national", 21, 30, 10)],
}

_ids = iter(range(1, 100_000))
SCORECARDS: list[dict] = []


def answer(survey: int, client: int, created: str | None, points: dict[str, int], *, extra: list | None = None,
           wrong_response: str | None = None) -> str:
    """Rows of one MIS submission; returns its submission_key. wrong_response: that question gets a response of
    question 'a' (or 'b' when it is 'a')."""
    created_on = datetime.fromisoformat(created) if created else None
    rows = [(k, QUESTIONS[survey][k], RESPONSES[QUESTIONS[survey][k]][p], p) for k, p in points.items()]
    rows += extra or []
    for key, qid, rid, p in rows:
        if key == wrong_response:
            other = QUESTIONS[survey]["b" if key == "a" else "a"]
            rid = RESPONSES[other][p]
        SCORECARDS.append({"id": next(_ids), "survey_id": survey, "question_id": qid, "response_id": rid,
                           "client_id": client, "created_on": created_on, "a_value": p})
    return f"mis:{survey}:{client}:{created_on:%Y-%m-%dT%H:%M:%S.%f}" if created_on else f"mis:{survey}:{client}:null"


ALL5 = {"a": 5, "b": 5, "c": 5}            # 15 -> 50 % in survey 1, 40 % in survey 5
OK1 = answer(1, 1, "2024-03-10 09:00:00", ALL5)
MISSING = answer(1, 2, "2024-02-01 10:00:00", {"a": 5, "b": 5})
TWICE = answer(1, 2, "2024-02-02 10:00:00", ALL5, extra=[("c", QUESTIONS[1]["c"], RESPONSES[QUESTIONS[1]["c"]][0], 0)])
OTHER_RESPONSE = answer(1, 2, "2024-02-03 10:00:00", ALL5, wrong_response="c")
GAP = answer(3, 3, "2024-02-04 10:00:00", ALL5)
NOT_PPI = answer(2, 3, "2024-02-05 10:00:00", {"a": 0, "b": 0, "c": 0})
# client 4: Kobo and MIS on the same interview date; the MIS one counts as later although entered earlier
SAME_DAY_MIS = answer(1, 4, "2024-04-01 08:00:00", {"a": 10, "b": 10, "c": 5})  # 25 -> 20 %
# client 5: three MIS submissions of one date: same created_on -> higher survey_id; earlier created_on loses
C5_S1 = answer(1, 5, "2024-04-02 11:00:00", {"a": 10, "b": 10, "c": 10})         # 30 -> 20 %
C5_S5 = answer(5, 5, "2024-04-02 11:00:00", ALL5)                                 # 15 -> 40 % (the latest)
C5_EARLY = answer(5, 5, "2024-04-02 09:00:00", {"a": 0, "b": 0, "c": 0})         # 0 -> 70 %
# client 6: MIS on an earlier date than Kobo: Kobo is the latest
C6_MIS = answer(1, 6, "2024-04-30 18:00:00", ALL5)
OVERLAP = answer(4, 3, "2024-02-06 10:00:00", ALL5)  # 15 falls in both bands of survey 4
NO_DATE = answer(1, 7, None, ALL5)                     # created_on empty: no interview date

# A late entry, added before the second build: client 1 interviewed on 2024-01-05 (80 %)
LATE = {"survey": 1, "client": 1, "created": "2024-01-05 15:00:00", "points": {"a": 0, "b": 5, "c": 0}}


def mis_rows() -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {
        "m_office": [{"id": 1, "name": "North"}],
        "m_loan": [{"id": 11, "client_id": 1, "loan_status_id": 300}],
        "m_client": [{"id": c, "account_no": f"{c:09d}", "status_enum": 300, "office_id": 1,
                      "activation_date": date(2023, 1, 1)} for c in range(1, 8)],
        "m_surveys": [{"id": s, "a_key": f"PPI_T{s}" if s != 2 else "SATISFACTION", "a_name": f"Survey {s}",
                       "country_code": "KE"} for s in SURVEYS],
        "m_survey_questions": [{"id": qid, "survey_id": s, "a_key": k, "a_text": f"Question {k}", "sequence_no": i}
                               for s in SURVEYS for i, (k, qid) in enumerate(QUESTIONS[s].items())],
        "m_survey_responses": [{"id": rid, "question_id": qid, "a_text": f"{p} points", "a_value": p,
                                "sequence_no": p} for qid, by_points in RESPONSES.items()
                               for p, rid in by_points.items()],
        "m_survey_lookup_tables": [{"id": s * 100 + n, "survey_id": s, "a_key": line, "value_from": lo,
                                    "value_to": hi, "score": Decimal(pct)}
                                   for s, rows_ in LOOKUPS.items() for n, (line, lo, hi, pct) in enumerate(rows_)],
        "m_survey_scorecards": SCORECARDS,
    }
    return rows


def kobo_sub(iid: str, account: str, today: str, kobo_id: int, submitted: str) -> dict:
    return {"_id": kobo_id, "_xform_id_string": ASSET, "__version__": "v1", "start": f"{today}T10:00:00.000+03:00",
            "today": today, "survey/type": "followup", "ppi/scorecard": CARD,
            **{f"ppi/{q}": a for q, a in POOREST.items()}, "hh/members": "4", "client/account_no": account,
            "meta/instanceID": iid, "_submission_time": submitted}


KOBO = [
    kobo_sub("uuid:k4", "000000004", "2024-04-01", 41, "2024-04-01T12:00:00"),   # same day as SAME_DAY_MIS
    kobo_sub("uuid:k6", "000000006", "2024-05-01", 61, "2024-05-01T12:00:00"),   # after C6_MIS
]

DATATABLE_VALUES = [  # as fineract_datatables lands them (client_spm is mapped in the shipped seed)
    ("client_spm", "client", 1, "1", "household_size", "6"),
    ("client_spm", "client", 1, "1", "area", " Rural "),
    ("client_spm", "client", 1, "1", "business_type", "Trade"),
    ("client_spm", "client", 1, "1", "monthly_income", "n/a"),        # not a number: no row
    ("client_spm", "client", 2, "2", "household_size", "3"),
    ("not_mapped", "client", 2, "2", "secret", "x"),                  # not in the seed: ignored
    ("loan_spm", "loan", 11, "5", "purpose", "Business"),             # a loan datatable: the loan's client (1)
]
# the shipped map plus a loan datatable column
MAP_SEED = (SEEDS / "datatable_indicator_map.csv").read_text() + "loan_spm,purpose,loan,loan_main_purpose,text\n"


def build(project, url):
    return run_dbt(project, url, ["build", "--select", *SELECTION, "--indirect-selection", "empty"],
                   {"as_of_date": AS_OF})


@pytest.fixture(scope="module")
def world(pg_server_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mis_surveys_dbt")
    db = TempDatabase(pg_server_url, "mis_surveys_dbt")
    try:
        drop = tmp / "drop"
        drop.mkdir()
        (drop / f"{ASSET}__export.json").write_text(json.dumps(KOBO))
        with psycopg.connect(db.url) as conn:
            create_raw_mis(conn, mis_rows())
            fineract_datatables.ensure_raw_table(conn)
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO raw_mis.datatable_values (datatable, entity, entity_id, row_id, "
                                "column_name, value_text) VALUES (%s, %s, %s, %s, %s, %s)", DATATABLE_VALUES)
            conn.commit()
            assert kobo.extract_surveys(None, conn, "test-run", drop)["files_loaded"] == 1
        project = project_copy(tmp, seeds={"datatable_indicator_map.csv": MAP_SEED})
        run = build(project, db.url)
        with psycopg.connect(db.url, autocommit=True) as conn:
            yield run, conn, project, db.url
    finally:
        db.close()


def q(conn, text: str, *params) -> list[tuple]:
    return conn.execute(text, params).fetchall()


def test_the_build_passes(world):
    run, *_ = world
    bad = {n: r["status"] for n, r in run.results.items() if r["status"] not in ("success", "pass")}
    assert run.returncode == 0 and not bad, (bad, run.output[-3000:])


def test_scores_and_likelihoods_come_from_the_surveys_own_lookup_table(world):
    _, conn, *_ = world
    got = {k: (s, lk) for k, s, lk in q(conn, "SELECT instance_id, ppi_score, poverty_likelihood "
                                              "FROM intermediate.int_surveys__ppi_assessments WHERE channel = 'mis'")}
    assert got == {
        OK1: (15, Decimal("0.5")), SAME_DAY_MIS: (25, Decimal("0.2")), C5_S1: (30, Decimal("0.2")),
        C5_S5: (15, Decimal("0.4")), C5_EARLY: (0, Decimal("0.7")), C6_MIS: (15, Decimal("0.5")),
    }


def test_each_quarantine_reason(world):
    _, conn, *_ = world
    got = dict(q(conn, "SELECT source_key, reason FROM intermediate.int_mis_surveys__quarantine"))
    assert got == {
        MISSING: "question_not_answered_once: survey PPI_T1: c answered 0 times",
        TWICE: "question_not_answered_once: survey PPI_T1: c answered 2 times",
        OTHER_RESPONSE: f"response_of_other_question: survey PPI_T1: response {RESPONSES[101][5]} given to "
                        f"question 103 belongs to question 101",
        GAP: "no_single_lookup_row: score 15 of survey PPI_T3 is in no band of m_survey_lookup_tables for "
             "'national' (a gap)",
        OVERLAP: "no_single_lookup_row: score 15 of survey PPI_T4 is in 2 bands (0-15, 15-30) of "
                 "m_survey_lookup_tables for 'national' (an overlap)",
        NO_DATE: "missing_created_on: survey PPI_T1 answers of client 7 have no created_on",
    }
    codes = dict(q(conn, "SELECT source_key, reason_code FROM intermediate.int_mis_surveys__quarantine"))
    assert codes == {MISSING: "question_not_answered_once", TWICE: "question_not_answered_once",
                     OTHER_RESPONSE: "response_of_other_question", GAP: "no_single_lookup_row",
                     OVERLAP: "no_single_lookup_row", NO_DATE: "missing_created_on"}
    assert NOT_PPI not in got  # a survey that is not a PPI survey is never quarantined
    assert q(conn, "SELECT DISTINCT source, channel FROM intermediate.int_mis_surveys__quarantine") == [
        ("fineract:m_survey_scorecards", "mis")]
    # quarantined and non-PPI submissions count for no KPI
    assessed = {r[0] for r in q(conn, "SELECT instance_id FROM intermediate.int_client__ppi_assessments")}
    assert not assessed & {MISSING, TWICE, OTHER_RESPONSE, GAP, OVERLAP, NOT_PPI, NO_DATE}


def latest_span(conn, client: int) -> tuple:
    return q(conn, "SELECT channel, kobo_id, mis_survey_id, poverty_likelihood FROM intermediate.int_client__ppi_spans "
                   "WHERE client_id = %s AND covered_until IS NULL", client)[0]


def test_latest_survey_across_channels_follows_the_tie_rule(world):
    _, conn, *_ = world
    # same interview date: MIS counts as later than Kobo, though created earlier that day
    assert latest_span(conn, 4) == ("mis", None, 1, Decimal("0.2"))
    # MIS of one date: the later created_on, then the higher survey_id
    assert latest_span(conn, 5) == ("mis", None, 5, Decimal("0.4"))
    # a later interview date wins whatever the channel
    assert latest_span(conn, 6) == ("kobo", 61, None, KOBO_POOREST)
    # an assessment overtaken on its own interview day covers nothing
    spans4 = q(conn, "SELECT channel FROM intermediate.int_client__ppi_spans WHERE client_id = 4")
    assert spans4 == [("mis",)]


def test_channel_column_and_both_channels_in_the_indicator_fact(world):
    _, conn, *_ = world
    rows = q(conn, """SELECT client_id, channel, instance_id, survey_sequence, value_numeric, scorecard_code
                      FROM analytics_build.fct_client_indicator WHERE indicator_code = 'poverty_likelihood'
                      ORDER BY client_id, survey_sequence""")
    assert [r for r in rows if r[0] == 4] == [(4, "kobo", "uuid:k4", 1, KOBO_POOREST, CARD),
                                              (4, "mis", SAME_DAY_MIS, 2, Decimal("0.2"), "PPI_T1")]
    assert [r[1:4] for r in rows if r[0] == 5] == [("mis", C5_EARLY, 1), ("mis", C5_S1, 2), ("mis", C5_S5, 3)]
    assert q(conn, "SELECT DISTINCT channel FROM intermediate.int_surveys__ppi_assessments ORDER BY 1") == [
        ("kobo",), ("mis",)]


def test_mapped_datatable_columns_reach_the_indicator_fact(world):
    _, conn, *_ = world
    rows = q(conn, """SELECT client_id, indicator_code, channel, instance_id, survey_sequence, interview_date,
                             value_numeric, value_text
                      FROM analytics_build.fct_client_indicator WHERE instance_id LIKE 'datatable:%%'
                      ORDER BY client_id, indicator_code""")
    as_of = date.fromisoformat(AS_OF)
    assert rows == [
        (1, "business_type", "mis", "datatable:client_spm:1", 0, as_of, None, "trade"),
        (1, "household_area", "mis", "datatable:client_spm:1", 0, as_of, None, "rural"),
        (1, "household_size", "mis", "datatable:client_spm:1", 0, as_of, Decimal("6"), None),
        (1, "loan_main_purpose", "mis", "datatable:loan_spm:5", 0, as_of, None, "business"),
        (2, "household_size", "mis", "datatable:client_spm:2", 0, as_of, Decimal("3"), None),
    ]


def kpi_ppi(conn) -> dict:
    return {(p, n): (c, lk) for p, n, c, lk in q(
        conn, """SELECT period_month, branch_id, ppi_assessed_clients, round(avg_poverty_likelihood, 6)
                 FROM analytics_build.kpi_branch_month WHERE branch_id = 1 ORDER BY 1""")}


def test_mis_surveys_feed_the_branch_ppi_kpis_and_a_late_entry_restates_the_months_since(world):
    _, conn, project, url = world
    before = kpi_ppi(conn)
    jan, feb, mar = date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)
    # before the late entry: client 1's first PPI is OK1 of 2024-03-10; nobody is assessed in January
    assert before[(jan, 1)][0] == 0 and before[(feb, 1)][0] == 0
    assert before[(mar, 1)] == (1, Decimal("0.500000"))
    # June: clients 1 (0.5), 4 (0.2), 5 (0.4), 6 (Kobo) are assessed and active
    june = before[(date(2024, 6, 1), 1)]
    assert june == (4, round((Decimal("0.5") + Decimal("0.2") + Decimal("0.4") + KOBO_POOREST) / 4, 6))

    key = answer(LATE["survey"], LATE["client"], LATE["created"], LATE["points"])
    late_rows = [r for r in SCORECARDS if r["created_on"] == datetime.fromisoformat(LATE["created"])]
    with conn.cursor() as cur:
        for r in late_rows:
            cur.execute("INSERT INTO raw_mis.m_survey_scorecards (id, survey_id, question_id, response_id, client_id, "
                        "created_on, a_value) VALUES (%(id)s, %(survey_id)s, %(question_id)s, %(response_id)s, "
                        "%(client_id)s, %(created_on)s, %(a_value)s)", r)
    run = build(project, url)
    assert run.returncode == 0, run.output[-3000:]
    after = kpi_ppi(conn)
    assert key in {r[0] for r in q(conn, "SELECT instance_id FROM intermediate.int_client__ppi_assessments")}
    # January and February are restated with the late interview (80 %); from March on OK1 is the latest again
    assert after[(jan, 1)] == (1, Decimal("0.800000")) and after[(feb, 1)] == (1, Decimal("0.800000"))
    assert after[(mar, 1)] == before[(mar, 1)]
    assert after[(date(2024, 6, 1), 1)] == june
