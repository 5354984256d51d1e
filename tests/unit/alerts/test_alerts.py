"""Failure alerts through the Airflow notifier: chat webhook and e-mail, configured by settings."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest
from airflow.sdk import BaseNotifier

from spm_warehouse import failure_notifier
from spm_warehouse.dag_defaults import DEFAULT_ARGS
from spm_warehouse.pipeline import StageFailed

SENT_EMAILS: list[dict] = []


def capture_email(to, subject, html_content, **kwargs):
    """An Airflow e-mail backend (configured via AIRFLOW__EMAIL__EMAIL_BACKEND) that keeps what it is given."""
    SENT_EMAILS.append({"to": to, "subject": subject, "html": html_content})


@pytest.fixture
def webhook():
    """A local chat-webhook endpoint recording JSON bodies; status settable per test."""
    received: list[dict] = []
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "json": json.loads(body), "type": self.headers["Content-Type"]})
            self.send_response(state["status"])
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_port}/hooks/T000/SECRET-TOKEN",
                          received=received, state=state)
    server.shutdown()
    server.server_close()


def gate_failure_context() -> dict:
    ti = SimpleNamespace(dag_id="spm_nightly", task_id="gate.quality_gate",
                         run_id="scheduled__2024-06-30T02:00:00+00:00", try_number=1,
                         log_url="http://127.0.0.1:8080/dags/spm_nightly/runs/x/tasks/gate.quality_gate")
    error = StageFailed("quality gate blocked publication:\nquality gate BLOCKED for run scheduled__2024-06-30T02:00:00+00:00"
                        "\nFailed (blocking):\n  - reconciliation.outstanding_raw: 2 of 16 active loans differ"
                        "\n      numbers: mismatched_loans=2")
    return {"task_instance": ti, "ti": ti, "exception": error, "params": {},
            "logical_date": datetime(2024, 6, 30, tzinfo=timezone.utc), "run_id": ti.run_id}


def test_webhook_alert_names_the_failed_checks(webhook, monkeypatch, tmp_path):
    monkeypatch.setenv("SPM_ALERT_WEBHOOK_URL", webhook.url)
    monkeypatch.setenv("SPM_REPORTS_DIR", str(tmp_path))
    failure_notifier.failure_notifier()(gate_failure_context())
    assert len(webhook.received) == 1
    sent = webhook.received[0]
    assert sent["path"] == "/hooks/T000/SECRET-TOKEN" and sent["type"] == "application/json"
    text = sent["json"]["text"]
    assert text.startswith("[spm-warehouse] spm_nightly.gate.quality_gate failed (as of 2024-06-30)")
    assert "reconciliation.outstanding_raw: 2 of 16 active loans differ" in text
    assert "mismatched_loans=2" in text
    assert f"run report: {tmp_path}/scheduled__2024-06-30T02_00_00_00_00/index.html" in text
    assert "task log: http://127.0.0.1:8080/" in text


def test_email_alert_goes_through_airflows_email_backend(monkeypatch):
    SENT_EMAILS.clear()
    monkeypatch.setenv("AIRFLOW__EMAIL__EMAIL_BACKEND", "test_alerts.capture_email")
    monkeypatch.setenv("SPM_ALERT_EMAIL", "ops@mfi.example, data@mfi.example")
    monkeypatch.delenv("SPM_ALERT_WEBHOOK_URL", raising=False)
    failure_notifier.failure_notifier()(gate_failure_context())
    assert len(SENT_EMAILS) == 1
    mail = SENT_EMAILS[0]
    assert set(mail["to"].split(", ")) == {"ops@mfi.example", "data@mfi.example"}
    assert mail["subject"] == "[spm-warehouse] spm_nightly.gate.quality_gate failed (as of 2024-06-30)"
    assert "reconciliation.outstanding_raw" in mail["html"]


def test_a_failing_channel_is_logged_without_leaking_the_secret_and_never_raises(webhook, monkeypatch, caplog):
    webhook.state["status"] = 500
    monkeypatch.setenv("SPM_ALERT_WEBHOOK_URL", webhook.url)
    with caplog.at_level(logging.ERROR, logger="spm_warehouse.failure_notifier"):
        failure_notifier.failure_notifier()(gate_failure_context())
    assert "answered HTTP 500" in caplog.text
    assert "SECRET-TOKEN" not in caplog.text
    caplog.clear()
    monkeypatch.setenv("SPM_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hooks/SECRET-TOKEN")
    with caplog.at_level(logging.ERROR, logger="spm_warehouse.failure_notifier"):
        failure_notifier.on_failure_callback(gate_failure_context())
    assert "not reachable" in caplog.text and "SECRET-TOKEN" not in caplog.text


def test_without_a_channel_the_failure_is_only_logged(monkeypatch, caplog):
    monkeypatch.delenv("SPM_ALERT_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("SPM_ALERT_EMAIL", raising=False)
    with caplog.at_level(logging.WARNING, logger="spm_warehouse.failure_notifier"):
        failure_notifier.failure_notifier()(gate_failure_context())
    assert "no alert channel configured" in caplog.text


def test_the_notifier_is_set_once_in_the_dag_defaults():


    callback = DEFAULT_ARGS["on_failure_callback"]
    assert isinstance(callback, failure_notifier.FailureNotifier) and isinstance(callback, BaseNotifier)


def test_alert_text_has_no_connection_string_password_or_secret(webhook, monkeypatch, tmp_path):
    """A password in a URL inside the exception, a libpq password=..., a secret setting's value: all redacted,
    and the alert goes to the configured webhook only."""
    monkeypatch.setenv("SPM_ALERT_WEBHOOK_URL", webhook.url)
    monkeypatch.delenv("SPM_ALERT_EMAIL", raising=False)
    monkeypatch.setenv("SPM_REPORTS_DIR", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONN_MIS_FINERACT", "mysql://reader:Conn-Pa55word@fineract-replica:3306/fineract_default")
    monkeypatch.setenv("SPM_PSEUDONYM_KEY", "k" * 40)
    context = gate_failure_context()
    context["exception"] = RuntimeError(
        'connection to "postgresql://etl:Sup3r-S3cret@db.mfi.example:5432/spm_warehouse" failed; '
        "dsn: host=db port=5432 user=etl password=An0ther-S3cret dbname=wh; source mysql login reader "
        "with Conn-Pa55word refused; key " + "k" * 40)
    failure_notifier.failure_notifier()(context)
    assert len(webhook.received) == 1  # the configured target, once
    text = webhook.received[0]["json"]["text"]
    for secret in ("Sup3r-S3cret", "An0ther-S3cret", "Conn-Pa55word", "k" * 40):
        assert secret not in text
    assert "postgresql://etl:***@db.mfi.example:5432/spm_warehouse" in text
    assert "password=***" in text


def test_a_stage_failure_carries_the_failure_text_into_the_alert(webhook, monkeypatch, tmp_path):
    """run_stage turns any error into StageFailed with the user-facing text; the alert carries it verbatim."""
    from datetime import date

    from spm_warehouse import failure_text

    monkeypatch.setenv("SPM_ALERT_WEBHOOK_URL", webhook.url)
    monkeypatch.setenv("SPM_REPORTS_DIR", str(tmp_path))
    outcome = tmp_path / "outcome.txt"
    monkeypatch.setenv("SPM_OUTCOME_FILE", str(outcome))

    def extract():
        raise ConnectionError("source postgresql://reader:Zz-S3cret@mis:5432/fineract went away during m_loan")

    with pytest.raises(StageFailed) as failed:
        failure_text.run_stage("extract_mis", "manual__2024-06-30", date(2024, 6, 30), extract)
    text = str(failed.value)
    assert failed.value.complete and isinstance(failed.value.__cause__, ConnectionError)
    assert text.startswith("the night of 2024-06-30 (run manual__2024-06-30) failed in stage extract_mis")
    assert "went away during m_loan" in text and "Zz-S3cret" not in text
    assert f"Run report: {tmp_path}/manual__2024-06-30/index.html" in text
    assert "make run RUN_DATE=2024-06-30" in text and "make rollback" in text and "meta.quarantine" in text
    assert outcome.read_text().strip() == text  # what `make run` prints
    context = gate_failure_context()
    context["exception"] = failed.value
    failure_notifier.failure_notifier()(context)
    assert text in webhook.received[0]["json"]["text"]


def test_a_stage_process_does_not_import_airflow():
    """A night's stages run as processes of their own (`python -m spm_warehouse.stage`, `make run`):
    only the DAG's notifier needs Airflow, whose import would cost every stage about 2 s."""
    import subprocess
    import sys

    code = "import sys, spm_warehouse.stage, spm_warehouse.kpi_alerts; print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout[:500]
