"""The night's new KPI alerts, sent once to the alert targets after publication.

Why here and not in Superset: a branch whose PAR30 crossed its target tonight
should reach the operations manager in the morning without anybody opening a
dashboard. dbt decides what is a breach (marts/alerts/kpi_alerts.sql, targets
in seeds/kpi_targets.csv); this module only tells: after publish, the rows of
the published kpi_alerts at the latest period whose breach started in it
(is_latest_period and is_new) go, in one message, to the targets of the failure
alerts (SPM_ALERT_WEBHOOK_URL, SPM_ALERT_EMAIL; alerts.py sends).

Each alert is sent once: meta.kpi_alerts_sent records (as-of date, alert_key)
of what was sent, and an alert whose key was sent already (a rerun of the
night, or the next night of the same month, when the breach is still 'new' in
its period) is not sent again. Nothing is sent when there is nothing new, and
nothing is recorded when no target is configured or every target failed (a
rerun then sends). The published build must be this night's: a night whose
publication was blocked sends nothing; nor does a backfill of a night earlier
than one whose alerts were sent (its breaches are history by then).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from spm_warehouse import alerts, settings

log = logging.getLogger(__name__)

SENT_DDL = (
    "CREATE SCHEMA IF NOT EXISTS meta",
    """CREATE TABLE IF NOT EXISTS meta.kpi_alerts_sent (
        as_of_date  date NOT NULL,
        alert_key   text NOT NULL,
        run_id      text NOT NULL,
        scope       text,
        branch_id   bigint,
        loan_officer_id bigint,
        indicator   text,
        alert_kind  text,
        value       numeric,
        threshold   numeric,
        channels    text[] NOT NULL,
        sent_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (as_of_date, alert_key)
    )""",
    "CREATE INDEX IF NOT EXISTS kpi_alerts_sent_key_idx ON meta.kpi_alerts_sent (alert_key)",
    """COMMENT ON TABLE meta.kpi_alerts_sent IS
        'KPI alerts (analytics.kpi_alerts) sent to SPM_ALERT_WEBHOOK_URL / SPM_ALERT_EMAIL: an alert_key sent once '
        'is never sent again (kpi_alerts.py).'""",
)


@dataclass
class Targets:
    webhook: str
    emails: list[str]

    @property
    def any(self) -> bool:
        return bool(self.webhook or self.emails)


def configured_targets() -> Targets:
    """The failure alerts' targets (settings), read when sending."""
    return Targets(settings.get("SPM_ALERT_WEBHOOK_URL").strip(),
                   [e.strip() for e in settings.get("SPM_ALERT_EMAIL").split(",") if e.strip()])


def ensure_sent_table(conn: psycopg.Connection) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('spm_warehouse.meta'))")
        for stmt in SENT_DDL:
            cur.execute(stmt)


def published_run(conn: psycopg.Connection, schema: str) -> tuple[str | None, date | None]:
    """(run id, as-of date) of the build BI reads now; (None, None) when nothing is published."""
    if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".publication_info',)).fetchone()[0]:
        return None, None
    row = conn.execute(sql.SQL("SELECT run_id, as_of_date FROM {} LIMIT 1").format(
        sql.Identifier(schema, "publication_info"))).fetchone()
    return (row[0], row[1]) if row else (None, None)


def unsent_new_alerts(conn: psycopg.Connection, schema: str) -> list[dict]:
    """The published alerts of the latest period whose breach started in it, minus the keys sent already."""
    if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".kpi_alerts',)).fetchone()[0]:
        return []
    query = sql.SQL(
        """SELECT a.alert_key, a.scope, a.branch_id, a.branch_name, a.region_name, a.loan_officer_id,
                  a.loan_officer_name, a.indicator, a.indicator_label, a.alert_kind, a.value, a.previous_value,
                  a.threshold, a.direction, a.worsening_periods, a.period_end
           FROM {alerts} a
           WHERE a.is_latest_period AND a.is_new
             AND NOT EXISTS (SELECT 1 FROM meta.kpi_alerts_sent s WHERE s.alert_key = a.alert_key)
           ORDER BY a.branch_name, a.branch_id, a.scope, a.loan_officer_name NULLS FIRST, a.indicator, a.alert_kind"""
    ).format(alerts=sql.Identifier(schema, "kpi_alerts"))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query).fetchall()


def _share(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{float(value) * 100:.1f}%"


def alert_line(a: dict) -> str:
    """One line per alert: where, who, what, value against the threshold."""
    where = a["branch_name"] or f"branch {a['branch_id']}"
    if a.get("region_name"):
        where += f" ({a['region_name']})"
    if a["scope"] == "loan_officer":
        where += f", officer {a['loan_officer_name'] or a['loan_officer_id']}"
    what = a["indicator_label"] or a["indicator"]
    if a["alert_kind"] == "worsening":
        how = (f"{_share(a['value'])}, worse than the period before for {a['worsening_periods']} periods in a row"
               f" (previous {_share(a['previous_value'])})")
    else:
        how = f"{_share(a['value'])} vs threshold {_share(a['threshold'])} ({a['direction']})"
    return f"- {where}: {what}: {how}"


def alert_message(new: list[dict], as_of: date) -> tuple[str, str]:
    """(subject, text) of the one message that lists the night's new alerts."""
    subject = f"[spm-warehouse] {len(new)} new KPI alert{'s' if len(new) != 1 else ''} (as of {as_of.isoformat()})"
    lines = [subject, "", *(alert_line(a) for a in new), "",
             "Targets: dbt_project/seeds/kpi_targets.csv. Every alert and its history: analytics.kpi_alerts; "
             "the loans in arrears: analytics.kpi_at_risk_loans."]
    return subject, "\n".join(lines)


def send(targets: Targets, subject: str, text: str) -> list[str]:
    """Send to every configured target; returns those that took it (failures are logged)."""
    sent = []
    if targets.webhook:
        try:
            alerts.post_webhook(targets.webhook, text)
            sent.append("webhook")
        except RuntimeError as exc:
            log.error("KPI alerts not sent to the chat webhook: %s", exc)
    if targets.emails:
        try:
            alerts.send_alert_email(targets.emails, subject, text)
            sent.append("e-mail")
        except Exception as exc:  # noqa: BLE001 - SMTP errors come in many types; logged, and the alerts stay unsent
            log.error("KPI alerts e-mail to %s not sent: %s", ", ".join(targets.emails), exc)
    return sent


def record_sent(conn: psycopg.Connection, new: list[dict], as_of: date, run_id: str, channels: list[str]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO meta.kpi_alerts_sent (as_of_date, alert_key, run_id, scope, branch_id, loan_officer_id,
                                                indicator, alert_kind, value, threshold, channels)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (as_of_date, alert_key) DO NOTHING""",
            [(as_of, a["alert_key"], run_id, a["scope"], a["branch_id"], a["loan_officer_id"], a["indicator"],
              a["alert_kind"], a["value"], a["threshold"], channels) for a in new])


class AlertsNotSent(RuntimeError):
    """Every configured target refused the night's new alerts (they stay unsent: a rerun sends them)."""


def notify_new_alerts(conn: psycopg.Connection, run_id: str, as_of: date, targets: Targets | None = None,
                      schema: str | None = None) -> dict:
    """Send the published build's new alerts once; the caller commits (the record of what was sent).

    Raises AlertsNotSent when targets are configured but none took the message.
    """
    schema = schema or settings.analytics_schema()
    targets = targets or configured_targets()
    ensure_sent_table(conn)
    # one sender at a time: two reruns of a night must not both send
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('spm_warehouse.kpi_alerts_sent'))")
    published, published_as_of = published_run(conn, schema)
    if published != run_id:
        log.info("KPI alerts: the published build is run %s, not %s: nothing sent", published, run_id)
        return {"new_alerts": 0, "sent": 0, "reason": "not this night's publication", "published_run": published}
    later = conn.execute("SELECT max(as_of_date) FROM meta.kpi_alerts_sent WHERE as_of_date > %s",
                         (published_as_of or as_of,)).fetchone()[0]
    if later is not None:
        # a backfill of an earlier night: its breaches are history, not news
        log.info("KPI alerts: alerts of a later night (%s) were sent already: nothing sent for %s", later,
                 published_as_of)
        return {"new_alerts": 0, "sent": 0, "reason": f"alerts of a later night ({later}) were sent already"}
    new = unsent_new_alerts(conn, schema)
    if not new:
        log.info("KPI alerts: nothing new at %s", published_as_of)
        return {"new_alerts": 0, "sent": 0}
    subject, text = alert_message(new, published_as_of or as_of)
    if not targets.any:
        log.warning("KPI alerts: %d new, no alert target configured (SPM_ALERT_WEBHOOK_URL, SPM_ALERT_EMAIL):\n%s",
                    len(new), text)
        return {"new_alerts": len(new), "sent": 0, "reason": "no alert target configured"}
    channels = send(targets, subject, text)
    if not channels:
        raise AlertsNotSent(f"{len(new)} new KPI alerts of {published_as_of} could not be sent to any configured "
                            "target (see the log above); they stay unsent and go with the next run of this stage")
    record_sent(conn, new, published_as_of or as_of, run_id, channels)
    log.info("KPI alerts: %d new sent (%s): %s", len(new), ", ".join(channels), subject)
    return {"new_alerts": len(new), "sent": len(new), "channels": channels,
            "alert_keys": [a["alert_key"] for a in new]}
