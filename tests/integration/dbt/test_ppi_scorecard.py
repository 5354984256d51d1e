"""A loaded PPI scorecard is checked before use; a bad one fails the build with a clear message.

One dbt build on a copy of the project whose seed files hold the shipped
demo scorecards plus one broken scorecard per defect. Each check must fail,
name the broken scorecard in a readable `problem`, leave the good scorecard
alone, and the scoring models must not be built on top of it.
"""

from __future__ import annotations

import csv
import io

import psycopg
import pytest
from databases import TempDatabase
from surveys_support import SEEDS, create_raw_mis, project_copy, run_dbt

from spm_warehouse.sources import kobo

GOOD = "DEMO_SYNTH_2024"


def good_points(code: str, drop_question: str | None = None) -> list[list]:
    rows = []
    with open(SEEDS / "ppi_scorecard_points.csv", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r["scorecard_code"] == GOOD and r["question_code"] != drop_question:
                rows.append([code, r["question_code"], r["answer_code"], int(r["points"])])
    return rows


def per_score(code: str, line: str = "national", rise_at: int | None = None) -> list[list]:
    rows = []
    for s in range(0, 101):
        value = round(1 - s / 100, 4)
        if rise_at is not None and s == rise_at:
            value = 0.99
        rows.append([code, s, s, line, value])
    return rows


def bands(code: str, edges: list[tuple[int, int]]) -> list[list]:
    return [[code, lo, hi, "national", round(1 - hi / 100, 4)] for lo, hi in edges]


def csv_text(header: list[str], rows: list[list]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return out.getvalue()


def bad_seeds() -> dict[str, str]:
    points = good_points(GOOD)
    points += good_points("BAD_NINE", drop_question="q10")                     # nine questions, max 84
    dup = good_points("BAD_DUP")
    dup.append(["BAD_DUP", "q03", "b", 2])                                     # answer b listed twice
    points += dup
    neg = good_points("BAD_NEG")
    neg[0][3] = -5                                                             # q01 a: -5 points
    points += neg
    low = good_points("BAD_MAX")
    low = [r if not (r[1] == "q10" and r[2] == "c") else [r[0], r[1], r[2], 6] for r in low]  # q10 best is now b (8): max 92
    points += low
    for code in ("BAD_PCT", "BAD_RISE", "BAD_GAP", "BAD_OVERLAP", "BAD_END", "BAD_NOLINE", "BAD_NOLIK"):
        points += good_points(code)

    likelihoods = [r for r in per_score(GOOD)]
    for code in ("BAD_NINE", "BAD_DUP", "BAD_NEG", "BAD_MAX"):
        likelihoods += per_score(code)
    pct = per_score("BAD_PCT")
    pct[10][4] = 95.5                                                          # a percentage
    likelihoods += pct
    likelihoods += per_score("BAD_RISE", rise_at=40)
    likelihoods += bands("BAD_GAP", [(0, 49), (51, 100)])
    likelihoods += bands("BAD_OVERLAP", [(0, 50), (50, 100)])
    likelihoods += bands("BAD_END", [(0, 44), (45, 90)])
    likelihoods += per_score("BAD_NOLINE", line="extreme")
    likelihoods += per_score("BAD_ORPHAN")                                     # likelihoods without points
    return {
        "ppi_scorecard_points.csv": csv_text(["scorecard_code", "question_code", "answer_code", "points"], points),
        "ppi_scorecard_likelihoods.csv": csv_text(
            ["scorecard_code", "score_from", "score_to", "poverty_line", "likelihood"], likelihoods),
    }


EXPECTED = {
    "ppi_scorecard__ten_questions": {"BAD_NINE": "has 9 questions"},
    "ppi_scorecard__points_per_answer": {"BAD_DUP": "answer b is listed 2 times",
                                         "BAD_NEG": "points missing or negative (-5)"},
    "ppi_scorecard__max_score_100": {"BAD_NINE": "highest possible score is 84",
                                     "BAD_MAX": "highest possible score is 92",
                                     "BAD_NEG": "the lowest -5"},
    "ppi_scorecard__likelihood_between_0_and_1": {"BAD_PCT": "(percentages? divide by 100)"},
    "ppi_scorecard__likelihood_non_increasing": {"BAD_RISE": "to 0.99"},
    "ppi_scorecard__bands_cover_0_100": {"BAD_GAP": "gap: band 51-100 starts after a band ending at 49",
                                         "BAD_OVERLAP": "overlap: band 50-100 starts after a band ending at 50",
                                         "BAD_END": "the last band ends at 90, not 100"},
    "ppi_scorecard__lookup_complete": {"BAD_NOLINE": "no likelihoods for poverty line national",
                                       "BAD_NOLIK": "has points but no likelihood table",
                                       "BAD_ORPHAN": "has likelihoods but no points"},
}


@pytest.fixture(scope="module")
def bad_build(pg_server_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ppi_bad")
    db = TempDatabase(pg_server_url, "ppi_bad")
    try:
        with psycopg.connect(db.url) as conn:
            create_raw_mis(conn, {})

            kobo.ensure_raw_kobo_schema(conn)
        project = project_copy(tmp, seeds=bad_seeds())
        run = run_dbt(project, db.url, ["build", "--select", "+tag:ppi_scorecard int_surveys__ppi_scored"],
                      {"as_of_date": "2024-06-30"})
        with psycopg.connect(db.url) as conn:
            yield run, conn
    finally:
        db.close()


@pytest.mark.parametrize("check", sorted(EXPECTED))
def test_each_check_fails_naming_the_bad_scorecard(bad_build, check):
    run, conn = bad_build
    assert run.status(check) == "fail", run.output[-2000:]
    problems = conn.execute(f"SELECT scorecard_code, problem FROM dbt_test__audit.{check}").fetchall()
    by_card: dict[str, list[str]] = {}
    for card, problem in problems:
        by_card.setdefault(card, []).append(problem)
    for card, phrase in EXPECTED[check].items():
        assert any(phrase in p and card in p for p in by_card.get(card, [])), (check, card, by_card)
    assert GOOD not in by_card


def test_a_bad_scorecard_stops_scoring_and_fails_the_build(bad_build):
    run, _ = bad_build
    assert run.returncode != 0
    assert run.status("int_surveys__ppi_scored") == "skipped"
    assert "ppi_scorecard__bands_cover_0_100" in run.output


def test_shipped_demo_scorecards_pass_every_check(pg_server_url, tmp_path):
    db = TempDatabase(pg_server_url, "ppi_good")
    try:
        run = run_dbt(project_copy(tmp_path), db.url, ["build", "--select", "+tag:ppi_scorecard"],
                      {"as_of_date": "2024-06-30"})
    finally:
        db.close()
    checks = {n: r["status"] for n, r in run.results.items() if n.startswith("ppi_scorecard__")}
    assert checks == {name: "pass" for name in EXPECTED}, run.output[-2000:]


def test_shipped_scorecards_are_labelled_synthetic():
    with open(SEEDS / "ppi_scorecard_points.csv", encoding="utf-8") as fh:
        codes = {r["scorecard_code"] for r in csv.DictReader(fh)}
    assert codes and all(code.startswith("DEMO_SYNTH_") for code in codes)
    with open(SEEDS / "ppi_scorecard_likelihoods.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    per_score_cards = {r["scorecard_code"] for r in rows if r["score_from"] == r["score_to"]}
    banded_cards = {r["scorecard_code"] for r in rows if r["score_from"] != r["score_to"]}
    assert per_score_cards and banded_cards and not per_score_cards & banded_cards  # both lookup styles shipped
