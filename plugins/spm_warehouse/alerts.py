"""Failure alerts: the message and its delivery (webhook, e-mail); failure_notifier.py sends them from Airflow.

Why a notifier and not an e-mail operator: every task of every DAG gets it
through DEFAULT_ARGS["on_failure_callback"], and it decides at send time
where to send, from the settings:
- SPM_ALERT_WEBHOOK_URL: a chat webhook; the body is {"text": ...}, which
  Slack, Mattermost, Rocket.Chat, Google Chat and Teams incoming webhooks accept;
- SPM_ALERT_EMAIL: comma-separated addresses, sent with Airflow's e-mail
  backend (the [email]/[smtp] settings or the smtp_default connection).
Both may be set; with neither, the failure is only logged.

The message names the DAG, run, task and as-of date and carries the error:
for a night's stage that is failure_text's text (every failing check with its
numbers, the run report, what to do next), the same text `make run` prints
and the task fails with. Alerts go only to the configured targets, and their
text goes through failure_text.redact: no password of a connection string,
no secret setting. An alert that cannot be sent is logged and never hides the
task's own failure.
"""

from __future__ import annotations

import html
import json
import logging
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from spm_warehouse import settings
from spm_warehouse.failure_text import StageFailed, redact
from spm_warehouse.paths import run_dir_name

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 15
MAX_ERROR_CHARS = 3500


def _redact(url: str) -> str:
    """Webhook URLs carry their secret in the path: show only scheme and host."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/..."


def failure_message(context: dict) -> tuple[str, str]:
    """(subject, text) of the alert for an Airflow callback context."""
    ti = context.get("task_instance") or context.get("ti")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    run_id = getattr(ti, "run_id", None) or context.get("run_id") or "?"
    try_number = getattr(ti, "try_number", None)
    params = context.get("params") or {}
    logical = context.get("logical_date")
    as_of = params.get("as_of_date") or (logical.date().isoformat() if logical is not None else "?")
    error = context.get("exception")
    error_text = str(error).strip() if error is not None else "(no exception in the callback context)"
    if len(error_text) > MAX_ERROR_CHARS:
        error_text = error_text[:MAX_ERROR_CHARS] + "\n... (truncated; see the task log)"

    report = settings.reports_dir() / run_dir_name(str(run_id)) / "index.html"
    log_url = getattr(ti, "log_url", None)
    subject = f"[spm-warehouse] {dag_id}.{task_id} failed (as of {as_of})"
    lines = [subject, f"run: {run_id}" + (f", try {try_number}" if try_number else ""), ""]
    if isinstance(error, StageFailed) and error.complete:
        lines.append(error_text)  # failure_text's text: checks, numbers, run report, next steps
    else:
        lines += [f"{type(error).__name__ + ': ' if error is not None else ''}{error_text}", "",
                  f"run report: {report}"]
    if log_url:
        lines.append(f"task log: {log_url}")
    return redact(subject), redact("\n".join(lines))


def post_webhook(url: str, text: str) -> None:
    """POST {"text": text} as JSON; raises RuntimeError with a redacted URL on failure."""
    body = json.dumps({"text": text}).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "spm-warehouse-alerts"})
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
            if response.status >= 300:
                raise RuntimeError(f"webhook {_redact(url)} answered HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"webhook {_redact(url)} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeError(f"webhook {_redact(url)} not reachable: {reason}") from None


def send_alert_email(to: list[str], subject: str, text: str) -> None:
    """Through Airflow's configured e-mail backend (SMTP settings or connection)."""
    from airflow.utils.email import send_email  # only when SPM_ALERT_EMAIL is set (loads Airflow's config)

    body = "<pre style=\"font-family: monospace\">" + html.escape(text) + "</pre>"
    send_email(to=to, subject=subject, html_content=body)
