"""The hand-made KPI series of the dbt unit test kpi_alerts_threshold_worsening_and_targets
(models/marts/alerts/_alerts__models.yml) give exactly the expected alerts, and the test catches a broken rule.

The series: a branch crossing PAR30 5% and staying above (periods_in_breach 1, 2, 3, is_new on the
first only), a PPI coverage falling three periods in a row (worsening), a share of women borrowers
below its target (below-threshold), a branch's own target, a breach that recovers and starts again,
an officer's breach and the "no loan officer" member. Run on the star world's warehouse (dbt needs the
input relations' column types); the unit test writes nothing.
"""

from __future__ import annotations

import re

from surveys_support import project_copy, run_dbt

SELECT = ["test", "--select", "kpi_alerts,test_type:unit"]


def unit_results(run) -> dict[str, str]:
    return {name: r["status"] for name, r in run.results.items() if r["unique_id"].startswith("unit_test.")}


def test_the_alert_rules_give_the_hand_made_expectations(star_world, tmp_path):
    run = run_dbt(project_copy(tmp_path), star_world.url, SELECT, {"as_of_date": "2024-06-30"})
    assert run.returncode == 0, run.output[-4000:]
    assert unit_results(run) == {"kpi_alerts_threshold_worsening_and_targets": "pass"}


def test_a_breach_counted_at_the_threshold_itself_is_caught(star_world, tmp_path):
    """'above' means strictly above: counting 5.0% as a breach of a 5% target fails the unit test."""
    project = project_copy(tmp_path)
    model = project / "models" / "marts" / "alerts" / "kpi_alerts.sql"
    text = model.read_text()
    assert "when 'above' then a.value > a.threshold" in text
    model.write_text(text.replace("when 'above' then a.value > a.threshold", "when 'above' then a.value >= a.threshold"))
    run = run_dbt(project, star_world.url, SELECT, {"as_of_date": "2024-06-30"})
    assert run.returncode != 0
    assert unit_results(run) == {"kpi_alerts_threshold_worsening_and_targets": "fail"}
    output = re.sub(r"\x1b\[[0-9;]*m", "", run.output)  # dbt colours its diff
    assert "actual differs from expected" in output
    assert "Branch Forty" in output  # the branch sitting exactly at 5% is the row that appeared
