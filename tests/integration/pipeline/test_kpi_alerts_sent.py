"""The night's new KPI alerts reach the alert targets once (kpi_alerts.py), over real HTTP, from a real PostgreSQL.

The published schema is made by hand here (the columns of analytics.kpi_alerts the sender reads, and
publication_info): the dbt model's breach logic has its own tests (dbt unit test
kpi_alerts_threshold_worsening_and_targets, and tests/e2e/test_dashboard_marts.py on the demo).
"""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from webhook_server import webhook_server

from spm_warehouse import kpi_alerts
from spm_warehouse.kpi_alerts import AlertsNotSent, Targets

AS_OF = dt.date(2024, 6, 30)
RUN = "scheduled__2024-06-30T02:00:00+00:00"

ALERTS = [
    # key, scope, branch, branch name, officer, officer name, indicator, label, kind, value, previous, threshold,
    # direction, worsening periods, latest, new
    ("branch:4:-1:par30_ratio:threshold:2024-06", "branch", 4, "Kisumu Branch", None, None, "par30_ratio", "PAR30",
     "threshold", 0.0662, 0.0341, 0.05, "above", None, True, True),
    ("loan_officer:5:12:par30_ratio:threshold:2024-06", "loan_officer", 5, "Nakuru Branch", 12, "Musa Nyambura",
     "par30_ratio", "PAR30", "threshold", 0.0541, 0.02, 0.05, "above", None, True, True),
    ("branch:6:-1:ppi_coverage:worsening:2024-06", "branch", 6, "Eldoret Branch", None, None, "ppi_coverage",
     "PPI coverage", "worsening", 0.61, 0.64, 0.5, "below", 3, True, True),
    # an ongoing breach (not new) and a breach of an earlier period: never sent
    ("loan_officer:4:7:par30_ratio:threshold:2023-08", "loan_officer", 4, "Kisumu Branch", 7, "Mary Mutua",
     "par30_ratio", "PAR30", "threshold", 0.0803, 0.079, 0.05, "above", None, True, False),
    ("branch:4:-1:par30_ratio:threshold:2024-04", "branch", 4, "Kisumu Branch", None, None, "par30_ratio", "PAR30",
     "threshold", 0.0537, 0.0346, 0.05, "above", None, False, True),
]


@pytest.fixture
def published(fresh_database) -> str:
    url = fresh_database("kpialerts")
    with psycopg.connect(url) as conn:
        conn.execute("CREATE SCHEMA analytics")
        conn.execute("CREATE TABLE analytics.publication_info (run_id text, as_of_date date)")
        conn.execute("INSERT INTO analytics.publication_info VALUES (%s, %s)", (RUN, AS_OF))
        conn.execute("""CREATE TABLE analytics.kpi_alerts (
            alert_key text, scope text, branch_id bigint, branch_name text, region_name text, loan_officer_id bigint,
            loan_officer_name text, indicator text, indicator_label text, alert_kind text, value numeric,
            previous_value numeric, threshold numeric, direction text, worsening_periods int, period_end date,
            is_latest_period boolean, is_new boolean)""")
        conn.cursor().executemany(
            """INSERT INTO analytics.kpi_alerts VALUES (%s, %s, %s, %s, 'Region', %s, %s, %s, %s, %s, %s, %s, %s, %s,
                                                        %s, '2024-06-30', %s, %s)""", ALERTS)
        conn.commit()
    return url


def notify(url: str, targets: Targets, run_id: str = RUN) -> dict:
    with psycopg.connect(url) as conn:
        result = kpi_alerts.notify_new_alerts(conn, run_id, AS_OF, targets, schema="analytics")
        conn.commit()
    return result


def sent_keys(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        if not conn.execute("SELECT to_regclass('meta.kpi_alerts_sent') IS NOT NULL").fetchone()[0]:
            return []  # the failed attempt's transaction, table and all, was rolled back
        return [r[0] for r in conn.execute("SELECT alert_key FROM meta.kpi_alerts_sent ORDER BY 1").fetchall()]


def test_one_message_lists_the_new_alerts_and_a_rerun_sends_nothing(published):
    with webhook_server() as hook:
        first = notify(published, Targets(hook.url, []))
        again = notify(published, Targets(hook.url, []))
    assert len(hook.received) == 1, hook.received
    text = hook.received[0]["json"]["text"]
    assert hook.received[0]["type"] == "application/json"
    lines = text.splitlines()
    assert lines[0] == "[spm-warehouse] 3 new KPI alerts (as of 2024-06-30)"
    assert "- Eldoret Branch (Region): PPI coverage: 61.0%, worse than the period before for 3 periods in a row " \
           "(previous 64.0%)" in lines
    assert "- Kisumu Branch (Region): PAR30: 6.6% vs threshold 5.0% (above)" in lines
    assert "- Nakuru Branch (Region), officer Musa Nyambura: PAR30: 5.4% vs threshold 5.0% (above)" in lines
    assert "Mary Mutua" not in text and text.count("Kisumu") == 1  # ongoing and earlier breaches are not news
    assert first["sent"] == 3 and first["channels"] == ["webhook"]
    assert again == {"new_alerts": 0, "sent": 0}
    assert sent_keys(published) == sorted(a[0] for a in ALERTS[:3])


def test_nothing_is_sent_when_nothing_is_new_or_the_publication_is_another_nights(published):
    with psycopg.connect(published) as conn:
        conn.execute("UPDATE analytics.kpi_alerts SET is_new = false")
        conn.commit()
    with webhook_server() as hook:
        assert notify(published, Targets(hook.url, [])) == {"new_alerts": 0, "sent": 0}
        with psycopg.connect(published) as conn:
            conn.execute("UPDATE analytics.kpi_alerts SET is_new = true")
            conn.commit()
        other = notify(published, Targets(hook.url, []), run_id="manual__blocked_night")
    assert hook.received == []
    assert other["reason"] == "not this night's publication" and other["published_run"] == RUN
    assert sent_keys(published) == []


def test_a_backfill_of_an_earlier_night_sends_nothing(published):
    with psycopg.connect(published) as conn:
        kpi_alerts.ensure_sent_table(conn)
        conn.execute("""INSERT INTO meta.kpi_alerts_sent (as_of_date, alert_key, run_id, channels)
                        VALUES ('2024-07-31', 'branch:4:-1:par30_ratio:threshold:2024-07', 'later night', '{webhook}')""")
        conn.commit()
    with webhook_server() as hook:
        result = notify(published, Targets(hook.url, []))
    assert hook.received == []
    assert result["sent"] == 0 and result["reason"] == "alerts of a later night (2024-07-31) were sent already"


def test_a_refusing_target_fails_the_stage_and_the_alerts_stay_unsent_for_the_retry(published):
    with webhook_server() as hook:
        hook.status = 500
        with pytest.raises(AlertsNotSent, match="3 new KPI alerts of 2024-06-30 could not be sent"):
            notify(published, Targets(hook.url, []))
        assert sent_keys(published) == []
        hook.status = 200
        retried = notify(published, Targets(hook.url, []))
    assert len(hook.received) == 2 and retried["sent"] == 3
    assert len(sent_keys(published)) == 3


def test_without_a_target_the_alerts_are_only_logged_and_not_recorded(published, caplog):
    with caplog.at_level("WARNING", logger="spm_warehouse.kpi_alerts"):
        result = notify(published, Targets("", []))
    assert result == {"new_alerts": 3, "sent": 0, "reason": "no alert target configured"}
    assert "Kisumu Branch (Region): PAR30: 6.6% vs threshold 5.0%" in caplog.text
    assert sent_keys(published) == []
