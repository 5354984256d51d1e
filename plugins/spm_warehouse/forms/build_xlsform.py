"""Build the XLSForm (.xlsx) from its readable YAML definition.

Why generate instead of editing the spreadsheet: a YAML file diffs and reviews
well, and the warehouse (seeds, demo generator, tests) reads the same field
names from it, so the form and the pipeline cannot drift apart unnoticed.

    PYTHONPATH=plugins .venv/bin/python -m spm_warehouse.forms.build_xlsform [--check]

`--check` exits 1 when the committed .xlsx differs from what the YAML gives.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

import yaml
from openpyxl import Workbook, load_workbook

FORMS_DIR = Path(__file__).resolve().parent
DEFINITION = FORMS_DIR / "spm_client_monitoring.yaml"
XLSFORM = FORMS_DIR / "spm_client_monitoring.xlsx"

SURVEY_COLUMNS = ["type", "name", "label", "required", "relevant", "constraint",
                  "constraint_message", "default", "calculation", "hint"]
CHOICE_COLUMNS = ["list_name", "name", "label"]


def load_definition(path: Path = DEFINITION) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def field_paths(definition: dict | None = None) -> list[str]:
    """The form's answer fields as Kobo names them in data (`group/question`)."""
    definition = definition or load_definition()
    paths = [q["name"] for q in definition.get("metadata", [])]
    for group in definition["groups"]:
        paths += [f"{group['name']}/{q['name']}" for q in group["questions"]]
    return paths


def choice_names(list_name: str, definition: dict | None = None) -> list[str]:
    definition = definition or load_definition()
    return [c["name"] for c in definition["choices"][list_name]]


def survey_rows(definition: dict) -> list[dict]:
    """Rows of the `survey` sheet, in XLSForm order."""
    rows: list[dict] = [dict(m) for m in definition.get("metadata", [])]
    for group in definition["groups"]:
        rows.append({"type": "begin_group", "name": group["name"], "label": group["label"],
                     "relevant": group.get("relevant", "")})
        for question in group["questions"]:
            row = dict(question)
            if row.get("required") is True:
                row["required"] = "yes"
            rows.append(row)
        rows.append({"type": "end_group", "name": group["name"]})
    return rows


def build_workbook(definition: dict) -> Workbook:
    wb = Workbook()
    survey = wb.active
    survey.title = "survey"
    survey.append(SURVEY_COLUMNS)
    for row in survey_rows(definition):
        unknown = set(row) - set(SURVEY_COLUMNS)
        if unknown:
            raise ValueError(f"survey row {row.get('name')!r}: unsupported columns {sorted(unknown)}")
        survey.append([_cell(row.get(col)) for col in SURVEY_COLUMNS])

    choices = wb.create_sheet("choices")
    choices.append(CHOICE_COLUMNS)
    for list_name, items in definition["choices"].items():
        for item in items:
            choices.append([list_name, str(item["name"]), item["label"]])

    settings_sheet = wb.create_sheet("settings")
    keys = list(definition["settings"])
    settings_sheet.append(keys)
    settings_sheet.append([str(definition["settings"][k]) for k in keys])

    # Fixed document dates so regenerating an unchanged form gives the same content.
    wb.properties.created = datetime(2024, 1, 1)
    wb.properties.modified = datetime(2024, 1, 1)
    wb.properties.creator = "spm_warehouse.forms.build_xlsform"
    return wb


def _cell(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value) if value != "" else None


def sheet_values(path: Path) -> dict[str, list[tuple]]:
    """Cell values per sheet: what --check compares (file bytes carry zip timestamps)."""
    wb = load_workbook(path, read_only=True)
    try:
        return {ws.title: [tuple(r) for r in ws.iter_rows(values_only=True)] for ws in wb.worksheets}
    finally:
        wb.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the .xlsx is out of date")
    parser.add_argument("--out", type=Path, default=XLSFORM)
    args = parser.parse_args(argv)
    wb = build_workbook(load_definition())
    if args.check:
        tmp = args.out.with_suffix(".check.xlsx")
        wb.save(tmp)
        try:
            same = args.out.exists() and sheet_values(tmp) == sheet_values(args.out)
        finally:
            tmp.unlink()
        if not same:
            print(f"{args.out} is out of date: run python -m spm_warehouse.forms.build_xlsform", file=sys.stderr)
            return 1
        print(f"{args.out} matches {DEFINITION.name}")
        return 0
    wb.save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
