"""The survey rules of the KPI contract, end to end through the loader and a real `dbt build`.

One small hand-made world (six MIS clients, about thirty submissions) is
loaded from drop files and built once per module; each test checks one rule
against values worked out here by hand from the seed files, not read back
from the models.
"""

from __future__ import annotations

import csv
import json
from datetime import date
from decimal import Decimal

import psycopg
import pytest
from databases import TempDatabase
from surveys_support import (
    answer_codes,
    build_surveys,
    create_raw_mis,
    expected_likelihood,
    expected_score,
    project_copy,
    read_seed,
)

from spm_warehouse.sources import kobo

ASSET = "aTestClientMonitoring"
NEW, OLD = "DEMO_SYNTH_2024", "DEMO_SYNTH_2011"
CODES = answer_codes(NEW)
ALL_POOREST = {q: codes[0] for q, codes in CODES.items()}                 # score 0
MIXED = {q: codes[min(1, len(codes) - 1)] for q, codes in CODES.items()}  # second answer everywhere
RICHER = {q: codes[-1] if q in ("q01", "q08", "q09") else codes[1] for q, codes in CODES.items()}


def ppi(answers: dict[str, str]) -> dict[str, str]:
    return {f"ppi/{q}": a for q, a in answers.items()}


_ids = iter(range(100, 10_000))


def sub(iid: str | None, account: str | None, survey_type: str, today: str | None, *, card: str | None = NEW,
        answers: dict | None = None, income: str = "1000", members: str = "5", school_age: str = "2",
        in_school: str = "1", kobo_id: int | None = None, submitted: str | None = None,
        start: str | None = None, asset: str = ASSET, **extra) -> dict:
    day = today or (start or "")[:10]
    payload = {
        "_id": kobo_id or next(_ids),
        "_xform_id_string": asset,
        "__version__": "v1",
        "start": start or f"{day}T10:00:00.000+03:00",
        "survey/type": survey_type,
        "ppi/scorecard": card if card is not None else "",
        **ppi(answers or MIXED),
        "hh/members": members,
        "hh/children_school_age": school_age,
        "hh/children_in_school": in_school,
        "income/monthly_hh_income": income,
        "_submission_time": submitted or f"{day}T12:00:00",
    }
    if today:
        payload["today"] = today
    if account is not None:
        payload["client/account_no"] = account
    if iid is not None:
        payload["meta/instanceID"] = iid
    payload.update(extra)
    return payload


def without(payload: dict, *keys: str) -> dict:
    return {k: v for k, v in payload.items() if k not in keys}


def legacy(payload: dict) -> dict:
    """The same submission as the example legacy form of seeds/survey_field_map.csv names it."""
    rename = {r["target_field"]: r["source_field"] for r in read_seed("survey_field_map.csv")
              if r["form_id"] == "aDemoLegacyForm"}
    return {rename.get(k, k): v for k, v in payload.items()} | {"_xform_id_string": "aDemoLegacyForm"}


# ---- the world -----------------------------------------------------------------------------

B1 = sub("uuid:b1", "000000001", "baseline", "2023-01-10", answers=ALL_POOREST, income="1000", in_school="1",
         __version__="v2", **{"hh/new_question": "yes"})
F1A = sub("uuid:f1a", "000000001", "followup", "2023-12-01", income="1200")
F1B = sub("uuid:f1b", "000000001", "followup", "2024-05-01", income="1500", kobo_id=50,
          submitted="2024-05-02T10:00:00", **{"satisfaction/nps": "9", "loan_use/main_purpose": "business"})
F1C = sub("uuid:f1c", "000000001", "followup", "2024-05-01", answers=RICHER, income="1800", in_school="2",
          kobo_id=60, submitted="2024-05-02T10:00:00", **{"loan_use/main_purpose": "education"})
F1_FUTURE = sub("uuid:f1future", "000000001", "followup", "2024-08-01", income="9999")  # after as_of
B2 = sub("uuid:b2", "000000002", "baseline", None, card=OLD, answers=MIXED,
         start="2022-03-10T01:30:00.000+03:00", submitted="2022-03-09T23:00:00")  # UTC date is the 9th
F2 = sub("uuid:f2", "000000002", "followup", "2023-03-15", card="", answers=RICHER)
L3 = legacy(sub("uuid:l3", "000000003", "baseline", "2023-02-10", answers=MIXED, income="700"))
B4 = sub("uuid:b4", "000000004", "baseline", "2024-05-20", answers=ALL_POOREST)  # before activation 2024-06-01
B5 = sub("uuid:b5", "000000005", "baseline", "2021-01-10")
X5 = sub("uuid:x5", "000000005", "exit", "2024-02-15", **{"exit/reason": "business_closed"})
X5B = sub("uuid:x5b", "000000005", "exit", "2024-03-01")  # no reason given
E6A = sub("uuid:e6a", "000000006", "baseline", "2023-06-01", income="100", kobo_id=70)
E6B = dict(E6A, **{"meta/instanceID": "uuid:e6b", "meta/deprecatedID": "uuid:e6a", "income/monthly_hh_income": "200"})
E6C = dict(E6A, **{"meta/instanceID": "uuid:e6c", "meta/deprecatedID": "uuid:e6b", "income/monthly_hh_income": "300"})
G6 = sub("uuid:g6", "000000006", "followup", "2024-06-01", kobo_id=80)
G6_EDIT = dict(G6, **{"meta/instanceID": "uuid:g6edit", "meta/deprecatedID": "uuid:g6", "ppi/scorecard": "XX_PPI"})
U1 = sub("uuid:u1", "999999999", "baseline", "2024-01-01")
U2 = sub("uuid:u2", None, "baseline", "2024-01-01")
P1 = sub("uuid:p1", "000000002", "followup", "2024-01-01", **{"ppi/q04": "z"})
P2 = without(sub("uuid:p2", "000000002", "followup", "2024-01-02"), "ppi/q07")
P3 = sub("uuid:p3", "000000002", "followup", "2024-01-03", card="XX_PPI")
P4 = sub("uuid:p4", "000000002", "followup", "2024-01-04", card="XX_PPI", **{"ppi/q02": ""})
P5 = sub("uuid:p5", "000000002", "followup", "2024-01-06", **{"ppi/q05": MIXED["q05"].upper()})  # codes are exact
N1 = sub(None, "000000002", "followup", "2024-01-05")

JSON_EXPORT = [B1, F1A, F1B, F1C, F1_FUTURE, B2, F2, B4, B5, X5, X5B, E6A, E6B, G6, G6_EDIT, U1, U2, P1, P2, P3, P4, P5, N1]
CSV_EXPORT = [F2, E6C]  # F2 again (duplicate); the second edit of E6 only in the CSV
LEGACY_EXPORT = [L3]

MIS = {
    "m_office": [{"id": 1, "name": "North"}, {"id": 2, "name": "South"}],
    "m_code": [{"id": 4, "code_name": "Gender"}],
    "m_code_value": [{"id": 21, "code_id": 4, "code_value": "Female"}, {"id": 22, "code_id": 4, "code_value": "MALE"}],
    "m_client": [
        {"id": 1, "account_no": "000000001", "status_enum": 300, "office_id": 1, "gender_cv_id": 21, "activation_date": date(2023, 1, 5)},
        {"id": 2, "account_no": "000000002", "status_enum": 300, "office_id": 1, "gender_cv_id": 22, "activation_date": date(2022, 3, 1)},
        {"id": 3, "account_no": "000000003", "status_enum": 300, "office_id": 2, "gender_cv_id": 21, "activation_date": date(2023, 2, 1)},
        {"id": 4, "account_no": "000000004", "status_enum": 300, "office_id": 2, "gender_cv_id": None, "activation_date": date(2024, 6, 1)},
        {"id": 5, "account_no": "000000005", "status_enum": 600, "office_id": 2, "gender_cv_id": 22, "activation_date": date(2021, 1, 1), "closedon_date": date(2024, 2, 10)},
        {"id": 6, "account_no": "000000006", "status_enum": 300, "office_id": 1, "gender_cv_id": 21, "activation_date": date(2023, 5, 1)},
    ],
    "m_product_loan": [{"id": 1, "name": "Group loan", "short_name": "GL"}, {"id": 2, "name": "SME loan", "short_name": "SME"}],
    "m_loan": [
        {"id": 11, "client_id": 1, "product_id": 1, "loan_status_id": 600, "disbursedon_date": date(2023, 1, 10)},
        {"id": 12, "client_id": 1, "product_id": 2, "loan_status_id": 300, "disbursedon_date": date(2024, 1, 10)},
        {"id": 13, "client_id": 1, "product_id": 1, "loan_status_id": 100, "submittedon_date": date(2024, 6, 1)},
        {"id": 21, "client_id": 2, "product_id": 1, "loan_status_id": 300, "disbursedon_date": date(2022, 3, 5)},
    ],
}


def write_csv(path, subs):
    header = sorted({k for s in subs for k in s})
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter=";")
        w.writerow(header)
        for s in subs:
            w.writerow([s.get(h, "") for h in header])


@pytest.fixture(scope="module")
def world(pg_server_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("surveys_dbt")
    db = TempDatabase(pg_server_url, "surveys_dbt")
    try:
        drop = tmp / "drop"
        drop.mkdir()
        (drop / f"{ASSET}__export.json").write_text(json.dumps(JSON_EXPORT))
        write_csv(drop / f"{ASSET}__older_export.csv", CSV_EXPORT)
        (drop / "aDemoLegacyForm__export.json").write_text(json.dumps(LEGACY_EXPORT))
        with psycopg.connect(db.url) as conn:
            create_raw_mis(conn, MIS)
            counts = kobo.extract_surveys(None, conn, "test-run", drop)
            assert counts["files_loaded"] == 3 and counts["files_rejected"] == 0
        run = build_surveys(project_copy(tmp), db.url)
        with psycopg.connect(db.url) as conn:
            yield run, conn
    finally:
        db.close()


def band_of(likelihood: float) -> str:
    for r in read_seed("poverty_likelihood_bands.csv"):
        if r["likelihood_from"] and float(r["likelihood_from"]) <= likelihood < float(r["likelihood_to"]):
            return r["band_code"]
    raise AssertionError(likelihood)


def query(conn, text: str, *params) -> list[tuple]:
    return conn.execute(text, params).fetchall()


def test_build_passes_except_the_drift_warning(world):
    run, _ = world
    bad = {n: r["status"] for n, r in run.results.items() if r["status"] not in ("success", "pass")}
    assert bad == {"surveys__unknown_fields": "warn"}, run.output[-3000:]


def test_the_survey_marts_unit_tests_run_and_pass_in_make_test(world):
    """The nightly build leaves dbt unit tests out (build.nightly_build_args): this build runs them."""
    run, _ = world
    unit = {n: r["status"] for n, r in run.results.items() if r["unique_id"].startswith("unit_test.")}
    assert unit == {"kpi_exit_reasons_every_mis_exit_appears": "pass",
                    "kpi_client_outcomes_small_samples_units_and_labels": "pass"}, run.output[-3000:]


def test_quarantine_reasons_one_row_per_submission(world):
    _, conn = world
    got = dict(query(conn, "SELECT source_key, reason FROM intermediate.int_surveys__quarantine"))
    content_key = next(k for k in got if k.startswith("content:"))
    assert got == {
        "uuid:u1": "unknown_client: account_no '999999999' not in m_client",
        "uuid:u2": "unknown_client: client/account_no is empty",
        "uuid:p1": "answer_not_in_scorecard: ppi/q04='z' not in scorecard DEMO_SYNTH_2024",
        "uuid:p2": "missing_ppi_answer: ppi/q07 empty",
        "uuid:p3": "unknown_scorecard: scorecard 'XX_PPI' not in ppi_scorecard_points",
        "uuid:p4": "unknown_scorecard: scorecard 'XX_PPI' not in ppi_scorecard_points; missing_ppi_answer: ppi/q02 empty",
        "uuid:g6edit": "unknown_scorecard: scorecard 'XX_PPI' not in ppi_scorecard_points",
        "uuid:p5": f"answer_not_in_scorecard: ppi/q05='{MIXED['q05'].upper()}' not in scorecard DEMO_SYNTH_2024",
        content_key: "missing_instance_id: no meta/instanceID or _uuid",
    }
    codes = dict(query(conn, "SELECT source_key, reason_code FROM intermediate.int_surveys__quarantine"))
    assert codes["uuid:p4"] == "unknown_scorecard"
    assert query(conn, "SELECT DISTINCT source FROM intermediate.int_surveys__quarantine") == [(f"kobo:{ASSET}",)]


def test_edits_replace_originals_even_when_the_edit_is_quarantined(world):
    _, conn = world
    accepted = {r[0] for r in query(conn, "SELECT instance_id FROM intermediate.int_surveys__accepted")}
    assert "uuid:e6c" in accepted
    assert not accepted & {"uuid:e6a", "uuid:e6b", "uuid:g6", "uuid:g6edit"}
    income = query(conn, "SELECT monthly_hh_income FROM intermediate.int_surveys__accepted WHERE client_id = 6")
    assert income == [(Decimal("300"),)]


def test_duplicates_count_once(world):
    _, conn = world
    rows = query(conn, "SELECT count(*), max(copies_seen) FROM intermediate.int_surveys__accepted WHERE instance_id = 'uuid:f2'")
    assert rows == [(1, 2)]
    # every accepted instance appears once in the PPI assessments the branch KPIs use
    assert query(conn, "SELECT count(*) = count(DISTINCT instance_id) FROM intermediate.int_surveys__ppi_assessments") == [(True,)]


def test_exactly_the_expected_submissions_are_accepted(world):
    _, conn = world
    accepted = {r[0] for r in query(conn, "SELECT instance_id FROM intermediate.int_surveys__accepted")}
    assert accepted == {"uuid:b1", "uuid:f1a", "uuid:f1b", "uuid:f1c", "uuid:f1future", "uuid:b2", "uuid:f2",
                        "uuid:l3", "uuid:b4", "uuid:b5", "uuid:x5", "uuid:x5b", "uuid:e6c"}


def test_interview_date_is_today_else_start_as_written(world):
    _, conn = world
    dates = dict(query(conn, "SELECT instance_id, interview_date FROM intermediate.int_surveys__accepted"))
    assert dates["uuid:b1"] == date(2023, 1, 10)
    assert dates["uuid:b2"] == date(2022, 3, 10)  # start 01:30+03:00 -> the 10th, though UTC says the 9th


def test_ppi_scores_and_likelihoods_per_score_and_banded(world):
    _, conn = world
    got = {r[0]: r[1:] for r in query(conn, "SELECT instance_id, scorecard_code, ppi_score, poverty_likelihood "
                                            "FROM intermediate.int_surveys__ppi_assessments")}
    for iid, card, answers in [("uuid:b1", NEW, ALL_POOREST), ("uuid:f1c", NEW, RICHER), ("uuid:b2", OLD, MIXED),
                               ("uuid:f2", NEW, RICHER), ("uuid:l3", NEW, MIXED)]:
        score = expected_score(card, answers)
        assert got[iid][:2] == (card, score), iid
        assert float(got[iid][2]) == pytest.approx(expected_likelihood(card, score)), iid
    assert got["uuid:b1"][1] == 0
    # DEMO_SYNTH_2011's table is banded: b2's score is looked up inside a band, not on its own row
    band = [r for r in read_seed("ppi_scorecard_likelihoods.csv") if r["scorecard_code"] == OLD
            and r["poverty_line"] == "national" and int(r["score_from"]) <= got["uuid:b2"][1] <= int(r["score_to"])]
    assert len(band) == 1 and band[0]["score_from"] != band[0]["score_to"]


def test_empty_scorecard_uses_the_default(world):
    _, conn = world
    rows = query(conn, "SELECT scorecard_code, scorecard_defaulted FROM intermediate.int_surveys__accepted "
                       "WHERE instance_id = 'uuid:f2'")
    assert rows == [(NEW, True)]


def test_other_forms_are_mapped_to_our_fields(world):
    _, conn = world
    rows = query(conn, "SELECT asset_uid, client_id, survey_type, monthly_hh_income, hh_members "
                       "FROM intermediate.int_surveys__accepted WHERE instance_id = 'uuid:l3'")
    assert rows == [("aDemoLegacyForm", 3, "baseline", Decimal("700"), 5)]


def test_version_drift_unknown_fields_reported_and_missing_optional_fields_null(world):
    _, conn = world
    drift = query(conn, "SELECT asset_uid, form_version, field_name, submissions FROM intermediate.int_surveys__unknown_fields")
    assert drift == [(ASSET, "v2", "hh/new_question", 1)]
    nps = dict(query(conn, "SELECT instance_id, nps FROM intermediate.int_surveys__accepted WHERE client_id = 1"))
    assert nps["uuid:f1a"] is None and nps["uuid:f1b"] == 9
    raw = query(conn, "SELECT payload ->> 'hh/new_question' FROM raw_kobo.submissions WHERE instance_id = 'uuid:b1'")
    assert raw == [("yes",)]  # kept in raw


def test_survey_before_activation_is_kept_for_the_kpis(world):
    _, conn = world
    rows = query(conn, "SELECT client_id, interview_date FROM intermediate.int_surveys__ppi_assessments WHERE instance_id = 'uuid:b4'")
    assert rows == [(4, date(2024, 5, 20))]


def test_wave_change_uses_baseline_and_latest_followup_with_id_tiebreak(world):
    _, conn = world
    rows = {r[0]: r[1:] for r in query(conn, """
        SELECT indicator_code, baseline_instance_id, followup_instance_id, baseline_value, followup_value, change,
               direction_of_change
        FROM intermediate.int_surveys__client_wave_change WHERE client_id = 1""")}
    # f1b and f1c share interview date and submission time: the higher _id (f1c) is the latest;
    # f1future is after as_of_date and does not count
    assert rows["monthly_hh_income"][:6] == ("uuid:b1", "uuid:f1c", Decimal("1000"), Decimal("1800"), Decimal("800"), "improved")
    assert rows["school_enrolment_rate"][2:6] == (Decimal("0.5"), Decimal("1"), Decimal("0.5"), "improved")
    base = expected_likelihood(NEW, 0)
    latest = expected_likelihood(NEW, expected_score(NEW, RICHER))
    assert float(rows["poverty_likelihood"][2]) == pytest.approx(base)
    assert float(rows["poverty_likelihood"][3]) == pytest.approx(latest)
    assert rows["poverty_likelihood"][5] == ("improved" if latest < base else "worsened")


def test_client_outcomes_sliced_by_gender_branch_product_and_band(world):
    _, conn = world
    rows = query(conn, """
        SELECT branch_id, gender, product_id, product_name, poverty_band_at_entry, clients, change_sum, clients_improved
        FROM analytics_build.kpi_client_outcomes WHERE indicator_code = 'monthly_hh_income' ORDER BY branch_id, gender""")
    # gender and entry band are dim_client's (band of the first PPI assessment: b1 scores 0 -> likelihood ~1)
    b2_band = band_of(expected_likelihood(OLD, expected_score(OLD, MIXED)))
    assert rows == [
        (1, "female", 2, "SME loan", "q4_75_100", 1, Decimal("800"), 1),  # client 1: latest loan is product 2
        (1, "male", 1, "Group loan", b2_band, 1, Decimal("0"), 0),        # client 2 (MALE upper case), 1000 -> 1000
    ]
    assert query(conn, "SELECT count(*) FROM analytics_build.kpi_client_outcomes WHERE gender = 'unknown'") == [(0,)]


def test_exit_reasons_by_branch_and_month(world):
    _, conn = world
    rows = query(conn, """SELECT branch_id, branch_name, period_start, period_end, exit_reason, exit_interviews,
                                 share_of_branch_exits
                          FROM analytics_build.kpi_exit_reasons_branch_month ORDER BY period_start""")
    assert rows == [
        (2, "South", date(2024, 2, 1), date(2024, 2, 29), "business_closed", 1, Decimal("1")),
        (2, "South", date(2024, 3, 1), date(2024, 3, 31), "not_stated", 1, Decimal("1")),
    ]


def test_fact_has_one_row_per_client_indicator_and_survey(world):
    _, conn = world
    keys = query(conn, """SELECT DISTINCT f.client_id, f.client_sk = d.client_sk FROM analytics_build.fct_client_indicator f
                          JOIN analytics_build.dim_client d ON d.client_id = f.client_id AND d.is_current ORDER BY 1""")
    assert keys == [(1, True), (2, True), (3, True), (4, True), (5, True), (6, True)]
    b1 = dict(query(conn, "SELECT indicator_code, value_numeric FROM analytics_build.fct_client_indicator WHERE instance_id = 'uuid:b1'"))
    assert b1 == {
        "poverty_likelihood": pytest.approx(Decimal(str(expected_likelihood(NEW, 0)))),
        "ppi_score": Decimal("0"),
        "household_size": Decimal("5"),
        "school_age_children": Decimal("2"),
        "school_enrolment_rate": Decimal("0.5"),
        "monthly_hh_income": Decimal("1000"),
    }
    f1b = dict(query(conn, "SELECT indicator_code, coalesce(value_text, value_numeric::text) FROM analytics_build.fct_client_indicator "
                           "WHERE instance_id = 'uuid:f1b' AND indicator_code IN ('nps', 'loan_use_business', 'loan_main_purpose')"))
    assert f1b == {"nps": "9", "loan_use_business": "1", "loan_main_purpose": "business"}
    assert query(conn, "SELECT count(*) FROM analytics_build.fct_client_indicator WHERE instance_id IN ('uuid:f1future', 'uuid:u1', 'uuid:e6a')") == [(0,)]
    seq = query(conn, "SELECT DISTINCT instance_id, survey_sequence FROM analytics_build.fct_client_indicator WHERE client_id = 1 ORDER BY 2")
    assert [s[0] for s in seq] == ["uuid:b1", "uuid:f1a", "uuid:f1b", "uuid:f1c"]


def test_dim_indicator_covers_the_issue_list(world):
    _, conn = world
    dims = dict(query(conn, "SELECT indicator_code, spm_dimension FROM analytics_build.dim_indicator"))
    for code in ("poverty_likelihood", "ppi_score", "household_size", "school_enrolment_rate", "monthly_hh_income",
                 "loan_use_business", "nps", "exit_reason"):
        assert code in dims
    assert set(dims.values()) == {"outreach", "client needs", "client benefits", "client protection"}


def test_two_nights_of_loads_give_what_one_load_gives(world, pg_server_url, tmp_path):
    """Edits and copies that arrive a night later: the incremental build equals a build of everything at once."""
    later = [E6B, G6_EDIT, F1C, X5B]
    db = TempDatabase(pg_server_url, "surveys_two_nights")
    try:
        project = project_copy(tmp_path)
        with psycopg.connect(db.url) as conn:
            create_raw_mis(conn, MIS)
            night1 = tmp_path / "drop1"
            night1.mkdir()
            (night1 / f"{ASSET}__export.json").write_text(json.dumps([s for s in JSON_EXPORT if s not in later]))
            (night1 / "aDemoLegacyForm__export.json").write_text(json.dumps(LEGACY_EXPORT))
            kobo.extract_surveys(None, conn, "night-1", night1)
        run = build_surveys(project, db.url)
        assert run.returncode == 0, run.output[-3000:]
        with psycopg.connect(db.url) as conn:
            night2 = tmp_path / "drop2"
            night2.mkdir()
            (night2 / f"{ASSET}__later.json").write_text(json.dumps(later))
            write_csv(night2 / f"{ASSET}__older_export.csv", CSV_EXPORT)
            kobo.extract_surveys(None, conn, "night-2", night2)
            first_state = conn.execute("SELECT min(_loaded_until) FROM intermediate.int_surveys__submissions").fetchone()[0]
        run = build_surveys(project, db.url)
        assert run.returncode == 0, run.output[-3000:]
        _, world_conn = world
        tables = ("intermediate.int_surveys__submissions", "intermediate.int_surveys__ppi_scored",
                  "intermediate.int_surveys__accepted",
                  "intermediate.int_surveys__quarantine", "intermediate.int_surveys__unknown_fields",
                  "analytics_build.fct_client_indicator")
        with psycopg.connect(db.url) as conn:
            kept = conn.execute("SELECT count(*) FROM intermediate.int_surveys__submissions WHERE _loaded_until = %s",
                                (first_state,)).fetchone()[0]
            assert kept > 0, "night 2 rebuilt every submission instead of the keys it touched"
            scored_kept = conn.execute("SELECT count(*) FROM intermediate.int_surveys__ppi_scored "
                                       "WHERE _loaded_until = %s", (first_state,)).fetchone()[0]
            assert scored_kept > 0, "night 2 rescored every submission instead of the keys it touched"
            # the fact rewrote the clients whose surveys changed (1, 2, 5, 6), not clients 3 and 4
            written = dict(conn.execute("""SELECT client_id, bool_or(_inputs_changed_at = (
                                                  SELECT max(_inputs_changed_at) FROM analytics_build.fct_client_indicator))
                                           FROM analytics_build.fct_client_indicator GROUP BY 1""").fetchall())
            assert {c for c, tonight in written.items() if tonight} == {1, 2, 5, 6}, written
            for table in tables:
                assert content(conn, table) == content(world_conn, table), table
            # the drift counts: night 2 read only the rows loaded since night 1 (one row per run records how far)
            runs = conn.execute("SELECT _loaded_until FROM intermediate.int_surveys__unknown_field_counts "
                                "WHERE field_name IS NULL ORDER BY 1").fetchall()
            assert len(runs) == 2 and runs[0] < runs[1], runs
            fact_rows = conn.execute("SELECT t::text FROM analytics_build.fct_client_indicator t ORDER BY 1").fetchall()
        # a night without new submissions counts nothing again, and a rerun writes the same fact, bookkeeping and all
        run = build_surveys(project, db.url)
        assert run.returncode == 0, run.output[-3000:]
        with psycopg.connect(db.url) as conn:
            assert content(conn, "intermediate.int_surveys__unknown_fields") == \
                content(world_conn, "intermediate.int_surveys__unknown_fields")
            assert conn.execute("SELECT count(*) FROM intermediate.int_surveys__unknown_field_counts "
                                "WHERE field_name IS NULL").fetchone()[0] == 3
            assert conn.execute("SELECT t::text FROM analytics_build.fct_client_indicator t ORDER BY 1").fetchall() \
                == fact_rows
    finally:
        db.close()


def content(conn, table: str) -> list[str]:
    """Rows as text without bookkeeping columns (_*) or load provenance (which file, when, which run)."""
    schema, name = table.split(".")
    skip = {"load_source", "loaded_at", "load_run_id", "content_hash"}
    cols = [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position", (schema, name)) if not r[0].startswith("_") and r[0] not in skip]
    query = "SELECT row(" + ", ".join(f'"{c}"' for c in cols) + f")::text FROM {schema}.{name} ORDER BY 1"
    return [r[0] for r in conn.execute(query)]
