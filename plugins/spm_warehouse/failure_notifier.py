"""The Airflow notifier of failure alerts, set once in the DAG defaults (dag_defaults.py).

Why a module of its own: it is the only part of the alerts that needs Airflow. The stage
processes (`python -m spm_warehouse.stage`, `make run`) import alerts.py for the KPI alerts
and would otherwise pay Airflow's import (about 2 s) in every stage of every night.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseNotifier

from spm_warehouse import alerts, settings

log = logging.getLogger(__name__)


class FailureNotifier(BaseNotifier):
    """Sends a failure alert to the configured webhook and/or e-mail addresses.

    webhook_url / emails override the settings (tests, or a DAG that alerts
    elsewhere); by default they are read when the alert is sent, so a changed
    setting needs no DAG re-parse.
    """

    template_fields = ()

    def __init__(self, webhook_url: str | None = None, emails: list[str] | None = None):
        super().__init__()
        self.webhook_url = webhook_url
        self.emails = emails

    def _targets(self) -> tuple[str, list[str]]:
        webhook = self.webhook_url if self.webhook_url is not None else settings.get("SPM_ALERT_WEBHOOK_URL")
        emails = self.emails if self.emails is not None else [
            e.strip() for e in settings.get("SPM_ALERT_EMAIL").split(",") if e.strip()]
        return webhook.strip(), emails

    def notify(self, context: Any) -> None:
        subject, text = alerts.failure_message(context)
        webhook, emails = self._targets()
        sent: list[str] = []
        if webhook:
            try:
                alerts.post_webhook(webhook, text)
                sent.append("webhook")
            except RuntimeError as exc:
                log.error("failure alert not sent to the chat webhook: %s", exc)
        if emails:
            try:
                alerts.send_alert_email(emails, subject, text)
                sent.append("e-mail")
            except Exception as exc:  # noqa: BLE001 - SMTP errors come in many types; log, never mask the failure
                log.error("failure alert e-mail to %s not sent: %s", ", ".join(emails), exc)
        if not webhook and not emails:
            log.warning("no alert channel configured (SPM_ALERT_WEBHOOK_URL, SPM_ALERT_EMAIL): %s", subject)
        elif sent:
            log.info("failure alert sent (%s): %s", ", ".join(sent), subject)


def failure_notifier() -> FailureNotifier:
    """The notifier DAG defaults use as on_failure_callback."""
    return FailureNotifier()


def on_failure_callback(context: Any) -> None:
    """Plain-function form, for code that wants a function rather than a notifier."""
    FailureNotifier()(context)
