"""The datatable map (seeds/datatable_indicator_map.csv) is checked before anything is read."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
from project import ROOT

from spm_warehouse.sources import fineract_datatables as datatables

HEADER = "datatable,column_name,entity,indicator_code,value_type\n"


def test_the_shipped_map_names_catalogue_indicators_and_no_personal_data():
    mapped = datatables.read_map()
    assert {(m.datatable, m.column_name) for m in mapped} >= {("client_spm", "household_size")}
    with open(ROOT / "dbt_project/seeds/indicator_catalogue.csv", encoding="utf-8") as fh:
        catalogue = {r["indicator_code"] for r in csv.DictReader(fh)}
    assert {m.indicator_code for m in mapped} <= catalogue
    assert not {m.column_name for m in mapped} & {"firstname", "lastname", "mobile_no", "contact_person"}


@pytest.mark.parametrize("line, phrase", [
    ("client_spm,household_size,group,household_size,numeric",
     "line 2 (client_spm.household_size): entity must be one of client, loan, not 'group'"),
    ("client_spm,household_size,client,household_size,float",
     "line 2 (client_spm.household_size): value_type must be numeric or text, not 'float'"),
    ("client_spm,size; drop table x,client,household_size,numeric",
     "line 2 (client_spm.size; drop table x): datatable and column must be plain SQL names"),
])
def test_a_bad_map_line_is_a_one_line_error_naming_it(tmp_path, line, phrase):
    path = tmp_path / "datatable_indicator_map.csv"
    path.write_text(HEADER + line + "\n")
    with pytest.raises(datatables.DatatableError) as err:
        datatables.read_map(path)
    assert phrase in str(err.value) and "\n" not in str(err.value)


def test_one_datatable_cannot_be_both_client_and_loan(tmp_path):
    path = tmp_path / "datatable_indicator_map.csv"
    path.write_text(HEADER + "spm,a,client,household_size,numeric\nspm,b,loan,household_size,numeric\n")
    with pytest.raises(datatables.DatatableError, match="datatable spm is mapped to both client and loan"):
        datatables.read_map(path)


def test_the_extraction_module_can_import_it_without_an_import_circle():
    """fineract.py may import fineract_datatables at its top: the module must not import fineract at run time."""
    code = ("import sys; import spm_warehouse.sources.fineract_datatables; "
            "print('spm_warehouse.sources.fineract' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "plugins")}, cwd=ROOT)
    assert out.stdout.strip() == "False"
