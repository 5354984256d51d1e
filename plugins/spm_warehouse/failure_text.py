"""What a user reads when a night fails or is blocked: one text, everywhere.

Why one module: the same words go to the terminal of `make run`, into the
Airflow task's failure message and into the alert (webhook, e-mail). They
name each failing check with its message and numbers, the run report's path
and what to do next (rerun, `make rollback`, where the quarantine is), and
never a connection string or a secret (`redact`).

The nightly DAG's tasks go through `run_stage`: whatever a stage raises
becomes a `StageFailed` carrying this text (the original exception stays
chained in the task log). When the environment names an outcome file
(SPM_OUTCOME_FILE, set by `make run` for its `airflow dags test`), the text
is written there too, so the command can print it without the task log's
traceback.
"""

from __future__ import annotations

import json
import os
import re
from datetime import date
from pathlib import Path

from spm_warehouse import paths, settings

OUTCOME_FILE_VAR = "SPM_OUTCOME_FILE"
MAX_NUMBERS_CHARS = 600
REDACTED = "***"

# scheme://user:password@host -> scheme://user:***@host (any scheme: postgres, mysql, redis, https...)
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@'\"]*:)(?P<secret>[^\s@/'\"]+)(?P<tail>@)")
# libpq key=value strings and similar: password=..., passwd: ..., token=...
_KEY_VALUE = re.compile(r"(?i)\b(?P<key>password|passwd|pwd|secret|token|api_key|apikey)(?P<sep>\s*[=:]\s*)"
                        r"(?P<q>['\"]?)(?P<secret>[^\s'\",;&]+)(?P=q)")
# Environment variables whose values are secrets wherever they appear in a text.
_SECRET_NAMES = re.compile(r"(PASSWORD|SECRET|TOKEN|FERNET|JWT|PSEUDONYM_KEY)", re.IGNORECASE)


class StageFailed(RuntimeError):
    """The night cannot go on; the message says why, with the numbers, and what to do next."""

    def __init__(self, text: str, complete: bool = False):
        super().__init__(text)
        # complete: the text is already the whole user-facing failure text (run report, next steps)
        self.complete = complete


def _secret_values() -> list[str]:
    """Values of secret settings and the passwords in AIRFLOW_CONN_* variables, longest first."""
    values = set()
    for key, value in os.environ.items():
        if not value or len(value) < 6:
            continue
        if key.startswith("AIRFLOW_CONN_"):
            try:
                password = settings.parse_conn_uri(key[13:].lower(), value).password
            except Exception:  # noqa: BLE001 - a malformed variable has no password to hide here
                password = ""
            if len(password) >= 4:
                values.add(password)
        elif _SECRET_NAMES.search(key):
            values.add(value)
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """The text without passwords in URLs, password=... pairs and the values of secret settings."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED + m.group("tail"), text)
    text = _KEY_VALUE.sub(lambda m: m.group("key") + m.group("sep") + m.group("q") + REDACTED + m.group("q"), text)
    for value in _secret_values():
        text = text.replace(value, REDACTED)
    return text


def report_path(run_id: str) -> Path:
    return paths.run_report_dir(run_id) / "index.html"


def _fmt_numbers(numbers: dict) -> str:
    text = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in (numbers or {}).items())
    return text if len(text) <= MAX_NUMBERS_CHARS else text[: MAX_NUMBERS_CHARS - 3] + "..."


def next_steps(as_of: date | None, run_id: str, blocked: bool) -> list[str]:
    day = as_of.isoformat() if as_of else "YYYY-MM-DD"
    lines = ["What to do next:"]
    if blocked:
        lines.append("  - find the cause in the run report and the checks above; when the source is fixed, rerun "
                     f"the night: make run RUN_DATE={day} (or clear the failed task in Airflow)")
    else:
        lines.append(f"  - when the cause is fixed, rerun the night: make run RUN_DATE={day} "
                     "(or clear the failed task in Airflow); a rerun merges by key and changes nothing twice")
    lines += [
        "  - analytics still holds the last good publication; if that one is wrong too: make rollback "
        "(restores the publication before it)",
        "  - quarantined rows and their reasons: meta.quarantine (SELECT * FROM meta.quarantine ORDER BY 1 DESC); "
        f"rejected survey files: {settings.survey_drop_dir() / 'rejected'} (a .reason.txt beside each)",
        f"  - every check of this run: SELECT * FROM meta.check_results WHERE run_id = '{run_id}'",
    ]
    return lines


def blocked_text(verdict, run_id: str, as_of: date | None) -> str:
    """A night the quality gate blocked: each failing check, its message and numbers; report; next steps."""
    failed, warned = verdict.failed(), verdict.warned()
    n = verdict.counts()
    lines = [f"quality gate blocked publication of the night of {as_of} (run {run_id}): "
             f"{n['failed']} blocking check(s) failed, {n['warned']} warned, {n['passed']} passed; "
             "analytics is unchanged.",
             "Failing checks:"]
    for c in failed:
        lines.append(f"  - {c.name}: {c.message}")
        if c.numbers:
            lines.append(f"      numbers: {_fmt_numbers(c.numbers)}")
    if warned:
        lines.append("Warnings (not blocking): " + ", ".join(c.name for c in warned))
    lines.append(f"Run report: {report_path(run_id)}")
    lines += next_steps(as_of, run_id, blocked=True)
    return redact("\n".join(lines))


def stage_failed_text(stage: str, error: BaseException, run_id: str, as_of: date | None) -> str:
    """Any other failure of a stage: its one-line cause, the report, next steps."""
    message = str(error).strip() or type(error).__name__
    if len(message) > 3000:
        message = message[:3000] + "\n... (truncated; see the task log)"
    lines = [f"the night of {as_of} (run {run_id}) failed in stage {stage}: analytics is unchanged.",
             f"Cause: {type(error).__name__}: {message}",
             f"Run report: {report_path(run_id)}"]
    lines += next_steps(as_of, run_id, blocked=False)
    return redact("\n".join(lines))


def record(text: str) -> None:
    """Append the text to the outcome file the calling command named (SPM_OUTCOME_FILE), if any."""
    target = os.environ.get(OUTCOME_FILE_VAR)
    if not target:
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as out:
        out.write(text.rstrip("\n") + "\n\n")


def run_stage(stage: str, run_id: str, as_of: date | None, func, *args, **kwargs):
    """func(*args, **kwargs); a failure becomes StageFailed with the user-facing text (recorded)."""
    try:
        return func(*args, **kwargs)
    except StageFailed as exc:
        text = str(exc) if exc.complete else stage_failed_text(stage, exc, run_id, as_of)
        record(text)
        if exc.complete:
            raise
        raise StageFailed(text, complete=True) from exc
    except Exception as exc:
        if getattr(exc, "one_line", False):  # a wrong setting (preflight.ConfigError): nothing was extracted
            text = redact(f"configuration error, the night of {as_of} stopped before extraction: {exc}")
        else:
            text = stage_failed_text(stage, exc, run_id, as_of)
        record(text)
        raise StageFailed(text, complete=True) from exc
