"""The XLSForm shipped in the repo: generated from its YAML, with the contract's field names."""

from __future__ import annotations

import csv

from surveys_support import SEEDS

from spm_warehouse.forms import build_xlsform as form

CONTRACT_FIELDS = (
    ["client/account_no", "ppi/scorecard"] + [f"ppi/q{n:02d}" for n in range(1, 11)]
    + ["hh/members", "hh/children_school_age", "hh/children_in_school", "income/monthly_hh_income",
       "loan_use/main_purpose", "satisfaction/nps", "survey/type", "exit/reason"]
)


def test_committed_xlsx_matches_the_yaml_definition():
    assert form.main(["--check"]) == 0


def test_form_has_the_contract_fields_and_choices():
    fields = form.field_paths()
    assert set(CONTRACT_FIELDS) <= set(fields)
    assert {"today", "start"} <= set(fields)
    assert form.choice_names("survey_type") == ["baseline", "followup", "exit"]
    assert form.choice_names("loan_purpose") == ["business", "education", "health", "housing", "consumption", "other"]


def test_xlsx_sheets_are_valid_xlsform_shapes():
    sheets = form.sheet_values(form.XLSFORM)
    assert {"survey", "choices", "settings"} <= set(sheets)
    survey = [dict(zip(sheets["survey"][0], row)) for row in sheets["survey"][1:]]
    begins = [r["name"] for r in survey if r["type"] == "begin_group"]
    ends = [r["name"] for r in survey if r["type"] == "end_group"]
    assert begins == ends
    nps = next(r for r in survey if r["name"] == "nps")
    assert nps["constraint"] == ". >= 0 and . <= 10"
    exit_group = next(r for r in survey if r["type"] == "begin_group" and r["name"] == "exit")
    assert exit_group["relevant"] == "${type} = 'exit'"
    lists = {row[0] for row in sheets["choices"][1:]}
    for r in survey:
        if r["type"].startswith("select_one "):
            assert r["type"].split(" ", 1)[1] in lists, r["name"]
    assert dict(zip(*sheets["settings"]))["form_id"] == "spm_client_monitoring"


def test_field_map_lists_every_form_field_and_maps_only_to_them():
    with open(SEEDS / "survey_field_map.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    own = {r["target_field"] for r in rows if r["form_id"] == "spm_client_monitoring"}
    assert own == set(form.field_paths())
    mapped_targets = {r["target_field"] for r in rows if r["form_id"] not in ("spm_client_monitoring", "*")}
    assert mapped_targets <= own


def test_ppi_choices_are_the_demo_scorecard_answers():
    with open(SEEDS / "ppi_scorecard_points.csv", encoding="utf-8") as fh:
        answers: dict[str, set[str]] = {}
        for r in csv.DictReader(fh):
            if r["scorecard_code"] == "DEMO_SYNTH_2024":
                answers.setdefault(r["question_code"], set()).add(r["answer_code"])
    for q, codes in answers.items():
        assert set(form.choice_names(f"ppi_{q}")) == codes, q
