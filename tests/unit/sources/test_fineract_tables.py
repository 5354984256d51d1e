"""The raw_mis contract is written once: dbt's sources YAML agrees with the table specs."""

from __future__ import annotations

import yaml
from project import ROOT

from spm_warehouse.load import BOOKKEEPING
from spm_warehouse.sources.fineract_tables import PII_COLUMNS, TABLES

SOURCES_YAML = ROOT / "dbt_project/models/staging/fineract/_fineract__sources.yml"


def _source_tables() -> dict[str, list[str]]:
    doc = yaml.safe_load(SOURCES_YAML.read_text())
    (fineract,) = [s for s in doc["sources"] if s["name"] == "fineract"]
    return {t["name"]: [c["name"] for c in t.get("columns") or []] for t in fineract["tables"]}


def test_the_sources_yaml_lists_exactly_the_extracted_tables_and_columns():
    declared = _source_tables()
    assert sorted(declared) == sorted(t.name for t in TABLES)
    for spec in TABLES:
        assert declared[spec.name] == spec.column_names + [c for c, _ in BOOKKEEPING], spec.name


def test_no_personal_data_column_is_part_of_the_contract():
    for table, columns in PII_COLUMNS.items():
        spec_columns = {c for t in TABLES if t.name == table for c in t.column_names}
        assert not spec_columns & set(columns), table
