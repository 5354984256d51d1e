"""KoboToolbox submissions -> raw_kobo: API v2 pages and exported files dropped in a folder.

Why raw JSONB and nothing else here: a survey form changes over time (version
drift), MFIs bring their own forms, and a submission we cannot read today may
be readable after a mapping is added. So the loader keeps every submission
verbatim (`payload`), adds only the keys needed to find it again (source,
asset, `_id`, `meta/instanceID`, `_submission_time`) and leaves flattening,
edits, duplicates and quarantine to dbt, where the rules are written once.

Two roads in:

* API: ``GET {host}/api/v2/assets/{uid}/data/?format=json`` with
  ``Authorization: Token ...``, following ``next``; incremental by
  ``_submission_time`` (watermark minus a lookback). KoboToolbox keeps
  ``_submission_time`` when a submission is edited, so an edit made after the
  lookback window is only seen by a full refresh (``full_refresh=True``).
* Files: Kobo JSON (the API's ``{"results": [...]}`` or a plain list) and CSV
  exports (``;`` or ``,`` separated, ``group/question`` headers, "XML values
  and headers") dropped in SPM_SURVEY_DROP_DIR. Each file is loaded once (by
  content hash) and moved to ``loaded/``; a file that cannot be read is moved
  to ``rejected/`` next to a ``<name>.reason.txt``. Nothing is deleted.

A submission is stored once per distinct content (``content_hash``), so
re-pulling or re-dropping the same data changes nothing.

What a fault ends in (the fault suite, tests/faults, injects each one):

* the API answers an HTML page (a proxy's error or maintenance page, with
  status 200 or 5xx), a truncated or otherwise unreadable JSON body, a 5xx, a
  timeout or a reset: retried with backoff; after the last attempt the asset
  fails with one line (KoboUnavailableError) and its watermark stays, so the
  next run asks again. Pages already stored are harmless (reloads are no-ops).
* 429 (or 503) with ``Retry-After`` (seconds or an HTTP date): that wait is
  honoured, up to ``max_retry_after_s`` (5 minutes). A server asking for more
  is not waited for in a worker slot: the asset fails at once with one line
  saying so, and the Airflow retry or the next night continues.
* a page that repeats the previous one (the same submissions again, under a
  new ``next`` link: a cache that ignores the query string, broken paging), an
  empty page that still has a ``next`` link, or a ``next`` link seen before:
  the asset stops with one line; never an endless loop, never a page skipped
  silently (the watermark stays, so nothing after the broken page is lost).
* a file drop that is not UTF-8, not JSON/CSV, or half a file: rejected whole,
  moved to ``rejected/`` next to ``<name>.reason.txt``, recorded in
  raw_kobo.loaded_files and meta.quarantine; the other files still load.
* an answer larger than ``MAX_ANSWER_BYTES`` (1 MiB; a photo pasted into a
  text question, a runaway note): the submission is stored, with that answer
  replaced by a marker (``[oversized answer: ...]``) and its size listed in
  ``_spm_oversized``, and the whole answer is kept in meta.quarantine
  (reason ``oversized_answer``, payload ``answers``). Why not verbatim: a
  10 MB value would flow into dbt's text columns and indexes (and a 10 MB
  ``meta/instanceID`` cannot be indexed at all); why not drop it: nothing is
  lost, the full text is one query away.
* a submission of a form version the warehouse does not know is stored like
  any other; dbt quarantines it with the reason it cannot be used
  (int_surveys__quarantine, e.g. missing_ppi_answer) and lists its unread
  fields per form version (int_surveys__unknown_fields).
* a value PostgreSQL refuses (e.g. a number too large for jsonb): a file is
  rejected with the reason; an API page fails the asset with one line.
"""

from __future__ import annotations

import codecs
import csv
import email.utils
import hashlib
import http.client
import json
import logging
import random
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import psycopg

from spm_warehouse import load, meta
from spm_warehouse.settings import ConnInfo

log = logging.getLogger(__name__)

SUBMISSION_COLUMNS = ("source", "asset_uid", "kobo_id", "instance_id", "submission_time",
                      "payload", "content_hash", "run_id")

DDL = """
CREATE SCHEMA IF NOT EXISTS raw_kobo;
CREATE TABLE IF NOT EXISTS raw_kobo.submissions (
    source          text        NOT NULL,
    asset_uid       text,
    kobo_id         bigint,
    instance_id     text,
    submission_time timestamptz,
    payload         jsonb       NOT NULL,
    content_hash    text        NOT NULL,
    loaded_at       timestamptz NOT NULL DEFAULT now(),
    run_id          text,
    CONSTRAINT submissions_pkey PRIMARY KEY (content_hash)
);
COMMENT ON TABLE raw_kobo.submissions IS
    'KoboToolbox/ODK submissions kept verbatim (payload); one row per distinct content. Flattened, deduplicated and checked in dbt (staging/kobo, intermediate/surveys).';
COMMENT ON COLUMN raw_kobo.submissions.source IS 'api:<asset_uid> or file:<file name> of the first load that brought this content';
COMMENT ON COLUMN raw_kobo.submissions.kobo_id IS 'Kobo _id (stays the same when a submission is edited)';
COMMENT ON COLUMN raw_kobo.submissions.instance_id IS 'meta/instanceID (else uuid:<_uuid>); identifies the submission version';
COMMENT ON COLUMN raw_kobo.submissions.submission_time IS 'Kobo _submission_time (UTC); not moved by edits';
COMMENT ON COLUMN raw_kobo.submissions.content_hash IS 'sha256 of the canonical JSON of payload: the unique key that makes reloads no-ops';
CREATE INDEX IF NOT EXISTS submissions_instance_id_idx ON raw_kobo.submissions (instance_id);
CREATE INDEX IF NOT EXISTS submissions_asset_time_idx ON raw_kobo.submissions (asset_uid, submission_time);
CREATE INDEX IF NOT EXISTS submissions_loaded_at_idx ON raw_kobo.submissions (loaded_at);

CREATE TABLE IF NOT EXISTS raw_kobo.loaded_files (
    content_hash text PRIMARY KEY,
    filename     text        NOT NULL,
    loaded_at    timestamptz NOT NULL DEFAULT now(),
    rows         integer,
    status       text        NOT NULL CHECK (status IN ('loaded', 'rejected')),
    reason       text,
    rows_new     integer,
    run_id       text
);
COMMENT ON TABLE raw_kobo.loaded_files IS
    'Every export file seen in the survey drop folder, by content hash: loaded once, or rejected with its reason (the file itself is kept in rejected/).';

"""

SKIPPED_FILE_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial")


class KoboError(RuntimeError):
    """KoboToolbox could not be read; the message says what to check."""


class KoboAuthError(KoboError):
    """HTTP 401/403: the token is wrong, expired or lacks permission on the asset."""


class KoboUnavailableError(KoboError):
    """The server kept failing (5xx, timeouts) after every retry."""


class BadExportFile(ValueError):
    """A dropped file that cannot be read as a Kobo export; the message is the reason."""


def ensure_raw_kobo_schema(conn: psycopg.Connection) -> None:
    """Create raw_kobo.submissions, raw_kobo.loaded_files and the meta tables (idempotent, one transaction block)."""
    with conn.transaction(), conn.cursor() as cur:
        meta.ensure_meta_schema(conn)
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('spm_warehouse.raw_kobo'))")
        cur.execute(DDL)


# ---------------------------------------------------------------- rows

def canonical_json(payload: dict) -> str:
    """One text per content: sorted keys, no spaces, NUL characters replaced.

    PostgreSQL jsonb cannot store U+0000, so it is replaced by U+FFFD rather
    than failing the whole page for one broken answer.
    """
    return json.dumps(_without_nul(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _storable(text: str) -> str:
    """text, with lone UTF-16 surrogates (from a `\\ud800` escape in JSON) replaced by U+FFFD.

    Such text cannot be encoded as UTF-8, so PostgreSQL could not be sent it; checked by
    encoding, which costs nothing extra for the text that is fine.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def content_hash(payload: dict) -> str:
    return hashlib.sha256(_storable(canonical_json(payload)).encode("utf-8")).hexdigest()


def parse_submission_time(value: Any) -> datetime | None:
    """Kobo writes `_submission_time` as naive UTC ('2024-03-01T10:11:12'); None when unreadable."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def instance_id_of(payload: dict) -> str | None:
    """`meta/instanceID`, else the `uuid:<_uuid>` Kobo derives it from (CSV exports may lack it)."""
    value = payload.get("meta/instanceID")
    if isinstance(value, str) and value.strip():
        return value.strip()
    uuid = payload.get("_uuid")
    if isinstance(uuid, str) and uuid.strip():
        return "uuid:" + uuid.strip()
    return None


MAX_ANSWER_BYTES = 1 << 20  # no real answer comes near (Kobo text questions, select codes, URLs)
OVERSIZED_KEY = "_spm_oversized"


def oversized_answers(payload: Any, limit: int = MAX_ANSWER_BYTES, prefix: str = "") -> dict[str, int]:
    """{field: UTF-8 bytes} of every text answer longer than limit (repeat groups: field[i]/child)."""
    found: dict[str, int] = {}
    if isinstance(payload, dict):
        for key, value in payload.items():
            name = f"{prefix}/{key}" if prefix else str(key)
            if isinstance(value, str):
                if len(value) * 4 > limit and len(value.encode("utf-8", "surrogatepass")) > limit:
                    found[name] = len(value.encode("utf-8", "surrogatepass"))
            elif isinstance(value, (dict, list)):
                found.update(oversized_answers(value, limit, name))
    elif isinstance(payload, list):
        for i, value in enumerate(payload):
            name = f"{prefix}[{i}]"
            if isinstance(value, str):
                if len(value) * 4 > limit and len(value.encode("utf-8", "surrogatepass")) > limit:
                    found[name] = len(value.encode("utf-8", "surrogatepass"))
            elif isinstance(value, (dict, list)):
                found.update(oversized_answers(value, limit, name))
    return found


def _marker(size: int, limit: int) -> str:
    return (f"[oversized answer: {size} bytes, more than the {limit}-byte limit; "
            "the whole answer is in meta.quarantine]")


def bound_answers(payload: dict, limit: int = MAX_ANSWER_BYTES) -> tuple[dict, dict[str, str]]:
    """(payload to store, {field: whole answer}) - every answer over limit replaced by a marker.

    The stored payload lists the sizes under `_spm_oversized` (a `_` key: dbt's drift report and
    models ignore it). Deterministic, so re-pulling the same submission stores nothing new.
    """
    sizes = oversized_answers(payload, limit)
    if not sizes:
        return payload, {}
    whole: dict[str, str] = {}

    def walk(value: Any, prefix: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, f"{prefix}/{k}" if prefix else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{prefix}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str) and prefix in sizes:
            whole[prefix] = value
            return _marker(sizes[prefix], limit)
        return value

    stored = walk(payload, "")
    stored[OVERSIZED_KEY] = sizes
    return stored, whole


def _mb(size: int) -> str:
    return f"{size / (1 << 20):.1f} MB" if size >= 1 << 20 else f"{size / 1024:.0f} kB"


def quarantine_oversized(conn: psycopg.Connection, row: tuple, whole: dict[str, str], limit: int,
                         run_id: str) -> None:
    """One meta.quarantine row per stored submission that had oversized answers (once per content)."""
    source, asset, _, instance_id, _, _, digest, _ = row
    fields = ", ".join(f"{name!r} is {_mb(len(value.encode('utf-8', 'surrogatepass')))}"
                       for name, value in whole.items())
    reason = (f"oversized_answer: {fields}, more than the {_mb(limit)} limit; stored in raw_kobo.submissions "
              "with a marker in its place, the whole answer is kept here (payload -> 'answers')")
    conn.execute("""
        INSERT INTO meta.quarantine (source, source_key, reason, run_id, payload)
        SELECT %s, %s, %s, %s, %s
        WHERE NOT EXISTS (SELECT 1 FROM meta.quarantine
                          WHERE payload ->> 'origin' = 'loader:kobo' AND payload ->> 'content_hash' = %s)
    """, (f"kobo:{asset or 'unknown_form'}", instance_id or f"content:{digest}", reason, run_id,
          _storable(json.dumps({"origin": "loader:kobo", "content_hash": digest, "load_source": source,
                                "answers": _without_nul(whole)}, ensure_ascii=False)), digest))


def submission_row(payload: dict, source: str, asset_uid: str | None, run_id: str) -> tuple:
    """The raw_kobo.submissions row (SUBMISSION_COLUMNS order) of one submission.

    Text PostgreSQL cannot store (a lone UTF-16 surrogate from a `\\ud800` escape) is replaced
    by U+FFFD, like NUL.
    """
    text = canonical_json(payload)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        text = _storable(text)
        data = text.encode("utf-8")
    asset = asset_uid or (payload.get("_xform_id_string") if isinstance(payload.get("_xform_id_string"), str) else None)
    return (
        source,
        asset,
        _as_int(payload.get("_id")),
        instance_id_of(payload),
        parse_submission_time(payload.get("_submission_time")),
        text,
        hashlib.sha256(data).hexdigest(),
        run_id,
    )


def bounded_rows(payloads: Iterable[dict], source: str, asset_uid: str | None, run_id: str,
                 limit: int, oversized: list[tuple[tuple, dict[str, str]]]) -> Iterator[tuple]:
    """submission_row of each payload, answers over limit replaced by a marker.

    The (row, whole answers) of such submissions are appended to `oversized`, for
    quarantine_oversized once the COPY is over (no other statement may run during it).
    """
    for payload in payloads:
        row = submission_row(payload, source, asset_uid, run_id)
        if len(row[5]) * 4 > limit:  # only then can one answer be over the limit (<= 4 bytes a character)
            stored, whole = bound_answers(payload, limit)
            if whole:
                row = submission_row(stored, source, asset_uid, run_id)
                oversized.append((row, whole))
                log.warning("kobo %s: submission %s has oversized answers (%s): stored with a marker, "
                            "the whole answers are in meta.quarantine", source, row[3] or row[6][:12],
                            ", ".join(whole))
        yield row


def quarantine_all(conn: psycopg.Connection, oversized: list[tuple[tuple, dict[str, str]]], limit: int,
                   run_id: str) -> int:
    for row, whole in oversized:
        quarantine_oversized(conn, row, whole, limit, run_id)
    return len(oversized)


def load_submission_rows(conn: psycopg.Connection, rows: Iterable[tuple]) -> tuple[int, int]:
    """COPY rows into a session temp table, then insert the new contents. Returns (received, new).

    The caller commits; a failure leaves nothing half-loaded in its transaction.
    """
    with conn.cursor() as cur:
        cur.execute("""
            CREATE TEMP TABLE IF NOT EXISTS kobo_landing (
                source text, asset_uid text, kobo_id bigint, instance_id text,
                submission_time timestamptz, payload jsonb, content_hash text, run_id text)
        """)
        cur.execute("TRUNCATE kobo_landing")
        received = 0
        with cur.copy(f"COPY kobo_landing ({', '.join(SUBMISSION_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                received += 1
        cur.execute(f"""
            INSERT INTO raw_kobo.submissions ({', '.join(SUBMISSION_COLUMNS)})
            SELECT DISTINCT ON (content_hash) {', '.join(SUBMISSION_COLUMNS)}
            FROM kobo_landing
            ORDER BY content_hash
            ON CONFLICT (content_hash) DO NOTHING
        """)
        new = cur.rowcount
    return received, new


# ---------------------------------------------------------------- API

def kobo_base_url(info: ConnInfo) -> str:
    """Server URL from the connection: host may be a full URL or a bare host name."""
    host = (info.host or "").strip().rstrip("/")
    if not host:
        raise KoboError(f"connection {info.conn_id!r} has no host: set it to the server URL, "
                        "e.g. https://kf.kobotoolbox.org or https://eu.kobotoolbox.org")
    if "://" not in host:
        scheme = info.extra.get("scheme") or ("http" if info.conn_type == "http" else "https")
        host = f"{scheme}://{host}"
    parts = urllib.parse.urlsplit(host)
    if info.port and parts.port is None:
        host = urllib.parse.urlunsplit((parts.scheme, f"{parts.hostname}:{info.port}", parts.path, "", ""))
    return host


def asset_uids_of(info: ConnInfo) -> list[str]:
    """Asset uids from the connection extra: {"asset_uids": [...]} or a comma-separated string."""
    raw = info.extra.get("asset_uids", info.extra.get("asset_uid", []))
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.split(",")]
    return [str(uid).strip() for uid in raw if str(uid).strip()]


@dataclass
class KoboClient:
    """A small KoboToolbox API v2 reader: token auth, pagination by `next`, retries.

    Why stdlib urllib: the API needs only GET with a header; one fewer pinned
    dependency for MFIs that install the pipeline on a small server.
    """

    base_url: str
    token: str
    timeout_s: float = 60.0
    max_attempts: int = 5
    backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    max_retry_after_s: float = 300.0  # a longer Retry-After fails the asset now (the next run continues)
    page_size: int = 1000  # Kobo's maximum per page since 2026
    sleep: Callable[[float], None] = time.sleep
    requests_made: int = field(default=0, init=False)

    def data_url(self, asset_uid: str, since: datetime | None) -> str:
        params = {"format": "json", "limit": str(self.page_size),
                  "sort": json.dumps({"_submission_time": 1, "_id": 1})}
        if since is not None:
            stamp = since.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            params["query"] = json.dumps({"_submission_time": {"$gte": stamp}})
        quoted = urllib.parse.quote(asset_uid, safe="")
        return f"{self.base_url}/api/v2/assets/{quoted}/data/?{urllib.parse.urlencode(params)}"

    def iter_pages(self, asset_uid: str, since: datetime | None = None) -> Iterator[list[dict]]:
        """Yield the `results` of each page, following `next` until it is null.

        Broken paging stops the asset with a KoboError rather than looping or skipping: a `next`
        link seen before, a page with the same submissions as an earlier page of this pull, an
        empty page that still has a `next` link. The caller keeps the watermark, so nothing is lost.
        Pages are compared by their submissions' keys (_id, instanceID, _submission_time): a
        digest per page, so a pull of a million submissions remembers a thousand digests.
        """
        url: str | None = self.data_url(asset_uid, since)
        seen: set[str] = set()
        pages_seen: dict[str, int] = {}
        number = 0
        while url:
            if url in seen:
                raise KoboError(f"asset {asset_uid}: the server's `next` link loops back to {self._redact(url)} "
                                f"after page {number}; stopped (paging is broken on the server), the watermark "
                                "stays and the next run asks again")
            seen.add(url)
            number += 1
            page = self.get_json(url, what=f"asset {asset_uid}")
            results = page.get("results") if isinstance(page, dict) else None
            if not isinstance(results, list):
                raise KoboError(f"asset {asset_uid}: unexpected answer from {self._redact(url)} "
                                "(no `results` list); is the host a KoboToolbox server?")
            nxt = self._same_server(page.get("next"))
            if not results and nxt:
                raise KoboError(f"asset {asset_uid}: page {number} is empty but has a `next` link; stopped "
                                "(paging is broken on the server), the watermark stays and the next run asks again")
            digest = _page_digest(results) if results else None
            if digest is not None and digest in pages_seen:
                raise KoboError(f"asset {asset_uid}: page {number} ({_paging(url)}) repeats page {pages_seen[digest]} "
                                f"(the same {len(results)} submissions): the server's paging is broken (a cache "
                                "or proxy ignoring the query string?); stopped, pages 1 to "
                                f"{number - 1} are stored, the watermark stays and the next run asks again")
            if digest is not None:
                pages_seen[digest] = number
            yield [r for r in results if isinstance(r, dict)]
            url = nxt

    def _same_server(self, next_url: str | None) -> str | None:
        """Follow `next` on the configured server.

        Why: behind a reverse proxy Kobo may write its internal host or http://
        into `next`; the token must only ever go to the server we were given.
        """
        if not next_url:
            return None
        base = urllib.parse.urlsplit(self.base_url)
        nxt = urllib.parse.urlsplit(urllib.parse.urljoin(self.base_url + "/", next_url))
        return urllib.parse.urlunsplit((base.scheme, base.netloc, nxt.path, nxt.query, ""))

    def get_json(self, url: str, what: str = "request") -> Any:
        """GET with retries on 5xx/429/timeouts/connection errors; 401/403 raise KoboAuthError."""
        last_problem = ""
        for attempt in range(1, self.max_attempts + 1):
            request = urllib.request.Request(url, headers={
                "Authorization": f"Token {self.token}",
                "Accept": "application/json",
                "User-Agent": "spm-warehouse/0.1",
            })
            retry_after: float | None = None
            try:
                self.requests_made += 1
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    body = response.read()
                    content_type = response.headers.get("Content-Type", "")
                try:
                    return json.loads(body)
                except ValueError:  # also UnicodeDecodeError: bytes that are not UTF-8
                    last_problem = _not_json(body, content_type)
            except urllib.error.HTTPError as exc:
                status = exc.code
                if status in (401, 403):
                    raise KoboAuthError(self._auth_message(status, what)) from None
                if status == 404:
                    raise KoboError(f"{what}: not found at {self.base_url} (HTTP 404); check the asset uid "
                                    "in the extra of connection 'kobotoolbox' and that the form is deployed") from None
                if status != 429 and status < 500:
                    raise KoboError(f"{what}: HTTP {status} from {self._redact(url)}") from None
                last_problem = f"HTTP {status}" + _error_page_title(exc)
                retry_after = _retry_after_seconds(exc.headers.get("Retry-After") if exc.headers else None)
                if retry_after is not None and retry_after > self.max_retry_after_s:
                    raise KoboUnavailableError(
                        f"{what}: {self.base_url} answered HTTP {status} asking to retry after {retry_after:.0f}s, "
                        f"longer than this run waits ({self.max_retry_after_s:.0f}s); stopped, the watermark stays "
                        "and the task's retry or the next run continues") from None
            except (TimeoutError, socket.timeout) as exc:
                last_problem = f"timeout after {self.timeout_s:g}s ({exc})"
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                    last_problem = f"timeout after {self.timeout_s:g}s"
                else:
                    last_problem = f"connection failed ({exc.reason})"
            except (ConnectionError, http.client.HTTPException) as exc:  # reset, remote closed
                last_problem = f"connection failed ({exc.__class__.__name__})"
            if attempt < self.max_attempts:
                delay = retry_after if retry_after is not None else min(
                    self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * (1 + random.random() / 4)
                log.warning("%s: %s (attempt %d of %d); retrying in %.1fs",
                            what, last_problem, attempt, self.max_attempts, delay)
                self.sleep(delay)
        raise KoboUnavailableError(f"{what}: {self.base_url} still failing after {self.max_attempts} attempts "
                                   f"(last: {last_problem}); the next run retries from the same watermark")

    def _auth_message(self, status: int, what: str) -> str:
        if status == 401:
            return (f"KoboToolbox at {self.base_url} rejected the API token (HTTP 401) for {what}. "
                    "Set the password of the Airflow connection 'kobotoolbox' to a valid API token "
                    "(KoboToolbox: Account settings > Security > API key).")
        return (f"KoboToolbox at {self.base_url} refused access (HTTP 403) for {what}: the token is valid "
                "but its user may not view this asset's submissions. Share the project with that user "
                "('View submissions') or use the owner's token.")

    @staticmethod
    def _redact(url: str) -> str:
        return url.split("?", 1)[0]


def _retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110); None when absent or unreadable."""
    if not value or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def _error_page_title(exc: urllib.error.HTTPError) -> str:
    """' (HTML page "502 Bad Gateway")' when an error came as an HTML page, else ''."""
    try:
        body = exc.read(4096) or b""
    except Exception:  # noqa: BLE001 - the body of an error is a nicety, never a second failure
        return ""
    return f" (HTML page {_html_title(body)!r})" if _looks_like_html(body) else ""


def _looks_like_html(body: bytes) -> bool:
    head = body[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")) or b"<html" in head


def _html_title(body: bytes) -> str:
    text = body[:8192].decode("utf-8", "replace")
    start = text.lower().find("<title>")
    end = text.lower().find("</title>", start + 7)
    title = " ".join(text[start + 7:end].split()) if start >= 0 and end > start else ""
    return title[:80] or "no title"


def _not_json(body: bytes, content_type: str) -> str:
    """What an unreadable 200 answer was, for the retry log and the final error line."""
    if _looks_like_html(body) or "html" in content_type.lower():
        return (f"an HTML page ({_html_title(body)!r}) instead of JSON: a proxy's or maintenance page, or a "
                "host that is not the KoboToolbox server?")
    if not body.strip():
        return "an empty answer instead of JSON"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"an answer that is not UTF-8 ({exc.reason} at byte {exc.start})"
    return (f"JSON that is truncated or not valid ({len(body)} bytes, ending {body[-40:]!r}); "
            "the connection was cut?")


def _page_digest(results: list) -> str:
    keys = [(r.get("_id"), r.get("meta/instanceID"), r.get("_submission_time")) if isinstance(r, dict) else r
            for r in results]
    return hashlib.sha256(repr(keys).encode("utf-8", "surrogatepass")).hexdigest()


def _paging(url: str) -> str:
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    return ", ".join(f"{k}={query[k]}" for k in ("start", "limit") if k in query) or "first page"


def watermark_name(asset_uid: str) -> str:
    """The asset's row in meta.watermarks (shared with the MIS tables, hence the prefix)."""
    return f"kobo:{asset_uid}"


def pull_asset(client: KoboClient, conn: psycopg.Connection, asset_uid: str, run_id: str,
               lookback_minutes: int = 60, full_refresh: bool = False,
               max_answer_bytes: int = MAX_ANSWER_BYTES) -> dict:
    """Pull one asset's submissions since its watermark minus the lookback; one transaction block per page.

    Why the watermark moves only at the end: if a page fails, the rows already
    committed are harmless (reloads are no-ops) and the next run asks again
    from the old watermark, whatever order the server returned pages in.
    """
    started_at = datetime.now(timezone.utc)
    started = time.monotonic()
    with conn.transaction():
        watermark = load.read_watermark(conn, watermark_name(asset_uid))
    since = None if full_refresh or watermark is None else watermark - timedelta(minutes=lookback_minutes)
    source = f"api:{asset_uid}"
    received = new = pages = quarantined = 0
    newest = watermark
    for results in client.iter_pages(asset_uid, since):
        pages += 1
        oversized: list[tuple[tuple, dict[str, str]]] = []
        rows = list(bounded_rows(results, source, asset_uid, run_id, max_answer_bytes, oversized))
        for row in rows:
            if row[4] is not None and (newest is None or row[4] > newest):
                newest = row[4]
        try:
            with conn.transaction():
                got, added = load_submission_rows(conn, rows)
                quarantined += quarantine_all(conn, oversized, max_answer_bytes, run_id)
        except psycopg.DataError as exc:
            raise KoboError(f"asset {asset_uid}: PostgreSQL refused page {pages} "
                            f"({str(exc).splitlines()[0]}); stopped, the watermark stays") from None
        received += got
        new += added
    with conn.transaction(), conn.cursor() as cur:
        if newest is not None:
            load.write_watermark(cur, watermark_name(asset_uid), client.base_url, newest, run_id)
        load.write_manifest(cur, {
            "run_id": run_id, "source": source, "table_name": "raw_kobo.submissions",
            "mode": "full" if since is None else "incremental", "as_of": None,
            "watermark_from": since, "watermark_to": newest, "rows_read": received, "rows_merged": new,
            "rows_deleted": 0, "seconds": round(time.monotonic() - started, 3), "started_at": started_at})
    log.info("kobo asset %s: %d pages, %d submissions received, %d new (since %s)",
             asset_uid, pages, received, new, since)
    return {"pages": pages, "received": received, "new": new, "oversized": quarantined,
            "since": since.isoformat() if since else None,
            "watermark": newest.isoformat() if newest else None}


# ---------------------------------------------------------------- files

def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_export_file(path: Path) -> Iterator[dict]:
    """Submissions of a Kobo export file, streamed; raises BadExportFile with the reason when unreadable.

    Streamed because an MFI's full export can hold millions of submissions: a
    file is never read into memory whole. An error found half-way through
    raises from the iterator, and the caller's transaction discards what the
    file had loaded so far.
    """
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _read_json_export(path)
    if suffix in (".jsonl", ".ndjson"):
        return _read_json_lines(path)
    if suffix == ".csv":
        return _read_csv_export(path)
    raise BadExportFile(f"unsupported file type {suffix or '(none)'}: drop Kobo JSON (.json, .jsonl) "
                        "or CSV (.csv) exports")


_JSON_CHUNK = 1 << 20
_JSON_WS = " \t\r\n"
_JSON_MAX_ELEMENT = 64 << 20  # no real submission comes near; a broken file must not fill memory


def _json_error(exc: json.JSONDecodeError, text: str, consumed_lines: int) -> BadExportFile:
    line = consumed_lines + text.count("\n", 0, exc.pos) + 1
    return BadExportFile(f"not valid JSON: {exc.msg} at line {line}")


def _read_json_export(path: Path) -> Iterator[dict]:
    """Elements of a top-level JSON array, decoded one at a time from 1 MB chunks.

    A top-level object is accepted when it is an API page (`results` list);
    pages are bounded by the API's page size, so that form is decoded whole.
    """
    decoder = json.JSONDecoder()
    seen_id = False
    index = 0
    try:
        with open(path, encoding="utf-8-sig") as fh:
            buf = ""
            while not buf:
                chunk = fh.read(_JSON_CHUNK)
                if not chunk:
                    break
                buf = chunk.lstrip(_JSON_WS)
            if buf.startswith("{"):
                rest = buf + fh.read()
                try:
                    data = json.loads(rest)
                except json.JSONDecodeError as exc:
                    raise _json_error(exc, rest, 0) from None
                if not isinstance(data.get("results"), list):
                    raise BadExportFile("JSON is neither a list of submissions nor an API page with a `results` list")
                items: Iterable[Any] = data["results"]
                for item in items:
                    index += 1
                    if not isinstance(item, dict):
                        raise BadExportFile(f"JSON element {index} is not a submission object")
                    seen_id = seen_id or instance_id_of(item) is not None
                    yield item
            elif not buf.startswith("["):
                if not buf:
                    raise BadExportFile("empty file")
                raise BadExportFile("JSON is neither a list of submissions nor an API page with a `results` list")
            else:
                lines = 0  # newlines in the text already dropped from buf (for error positions)
                pos = 1
                expect_value = True  # after '[' or ','
                eof = False
                while True:
                    # skip white space and at most one separator, refilling as needed
                    while True:
                        while pos < len(buf) and buf[pos] in _JSON_WS:
                            pos += 1
                        if pos < len(buf) or eof:
                            break
                        more = fh.read(_JSON_CHUNK)
                        eof = not more
                        lines += buf.count("\n")
                        buf, pos = more, 0
                    if pos >= len(buf):
                        raise BadExportFile(f"not valid JSON: the list is not closed (after element {index})")
                    ch = buf[pos]
                    if ch == "]" and (index == 0 or not expect_value):
                        tail = (buf[pos + 1:] + fh.read(_JSON_CHUNK)).strip(_JSON_WS)
                        if tail:
                            raise BadExportFile("not valid JSON: extra data after the list")
                        break
                    if ch == "," and not expect_value:
                        pos += 1
                        expect_value = True
                        continue
                    if not expect_value:
                        raise BadExportFile(f"not valid JSON: expected ',' or ']' after element {index}, "
                                            f"at line {lines + buf.count(chr(10), 0, pos) + 1}")
                    while True:
                        try:
                            item, end = decoder.raw_decode(buf, pos)
                            break
                        except json.JSONDecodeError as exc:
                            if eof:
                                raise _json_error(exc, buf, lines) from None
                            if len(buf) - pos > _JSON_MAX_ELEMENT:
                                raise BadExportFile(f"JSON element {index + 1} is not valid or larger than "
                                                    f"{_JSON_MAX_ELEMENT >> 20} MB") from None
                            more = fh.read(_JSON_CHUNK)
                            eof = not more
                            lines += buf.count("\n", 0, pos)
                            buf, pos = buf[pos:] + more, 0
                    index += 1
                    if not isinstance(item, dict):
                        raise BadExportFile(f"JSON element {index} is not a submission object")
                    seen_id = seen_id or instance_id_of(item) is not None
                    yield item
                    pos = end
                    expect_value = False
                    if pos > _JSON_CHUNK:  # drop what is decoded so the buffer stays about one chunk
                        lines += buf.count("\n", 0, pos)
                        buf, pos = buf[pos:], 0
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    if index and not seen_id:
        raise BadExportFile("no submission has meta/instanceID or _uuid: not a Kobo/ODK export")


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> BadExportFile:
    """The reason for a file that is not UTF-8, with the offset of the first bad byte in the file.

    Why read it again: a streamed read reports the position inside the chunk being decoded,
    not in the file. Only rejected files pay for this.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    fed = 0
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                pending = len(decoder.getstate()[0])
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as bad:
                    line = _line_of(path, fed - pending + bad.start)
                    return BadExportFile(f"not UTF-8 text ({bad.reason} at byte {fed - pending + bad.start}, "
                                         f"line {line}): export it again as UTF-8")
                fed += len(chunk)
    except OSError:
        pass
    return BadExportFile(f"not UTF-8 text ({exc.reason}): export it again as UTF-8")


def _line_of(path: Path, offset: int) -> int:
    with open(path, "rb") as fh:
        lines = 1
        left = offset
        while left > 0:
            chunk = fh.read(min(left, 1 << 20))
            if not chunk:
                break
            lines += chunk.count(b"\n")
            left -= len(chunk)
    return lines


def _read_json_lines(path: Path) -> Iterator[dict]:
    """One submission object per line (JSON Lines); blank lines are skipped."""
    seen_id = False
    count = 0
    try:
        with open(path, encoding="utf-8-sig") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise BadExportFile(f"not valid JSON at line {number}: {exc.msg}") from None
                if not isinstance(item, dict):
                    raise BadExportFile(f"line {number} is not a submission object")
                count += 1
                seen_id = seen_id or instance_id_of(item) is not None
                yield item
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    if count and not seen_id:
        raise BadExportFile("no submission has meta/instanceID or _uuid: not a Kobo/ODK export")


def _read_csv_export(path: Path) -> Iterator[dict]:
    """Rows as {header: value}; values stay text, exactly as exported."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            head = fh.readline()
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    if not head.strip():
        raise BadExportFile("empty file (no header line)")
    delimiter = ";" if head.count(";") >= head.count(",") else ","
    header = next(csv.reader([head], delimiter=delimiter))
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise BadExportFile(f"CSV header repeats columns {dupes}")
    if not ({"meta/instanceID", "_uuid"} & set(header)):
        raise BadExportFile("CSV header has no meta/instanceID or _uuid column: export from Kobo with "
                            "'XML values and headers', group separator '/', and include the meta fields")
    return _csv_rows(path, delimiter, header)


def _csv_rows(path: Path, delimiter: str, header: list[str]) -> Iterator[dict]:
    # csv's default field limit (128 kB) would reject a whole export for one long answer;
    # answers are bounded after reading (bounded_rows), like in JSON exports
    if csv.field_size_limit() < _JSON_MAX_ELEMENT:
        csv.field_size_limit(_JSON_MAX_ELEMENT)
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            next(reader)
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != len(header):
                    raise BadExportFile(f"CSV line {reader.line_num} has {len(row)} fields, "
                                        f"the header has {len(header)}")
                yield dict(zip(header, row))
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    except csv.Error as exc:
        raise BadExportFile(f"CSV cannot be parsed: {exc}") from None


def asset_uid_from_filename(name: str) -> str | None:
    """`<asset_uid>__anything.csv` names the form of an export without _xform_id_string."""
    stem = name.split("__", 1)
    return stem[0] if len(stem) == 2 and stem[0] and stem[0].isalnum() else None


def _move_aside(path: Path, folder: Path) -> Path:
    """Move a file into folder, never overwriting an earlier one of the same name."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        target = folder / f"{path.stem}.{stamp}{path.suffix}"
    shutil.move(str(path), str(target))
    return target


def _record_file(conn: psycopg.Connection, digest: str, name: str, rows: int | None, status: str,
                 reason: str | None, rows_new: int | None, run_id: str) -> None:
    conn.execute("""
        INSERT INTO raw_kobo.loaded_files (content_hash, filename, loaded_at, rows, status, reason, rows_new, run_id)
        VALUES (%s, %s, now(), %s, %s, %s, %s, %s)
        ON CONFLICT (content_hash) DO UPDATE SET filename = EXCLUDED.filename, loaded_at = now(),
            rows = EXCLUDED.rows, status = EXCLUDED.status, reason = EXCLUDED.reason,
            rows_new = EXCLUDED.rows_new, run_id = EXCLUDED.run_id
    """, (digest, name, rows, status, reason, rows_new, run_id))


def candidate_files(drop_dir: Path) -> list[Path]:
    """Files waiting in the drop folder (top level only; hidden and partial downloads are skipped)."""
    if not drop_dir.is_dir():
        return []
    return sorted(p for p in drop_dir.iterdir()
                  if p.is_file() and not p.name.startswith((".", "~$"))
                  and not p.name.lower().endswith(SKIPPED_FILE_SUFFIXES))


def load_drop_dir(conn: psycopg.Connection, drop_dir: Path, run_id: str,
                  max_answer_bytes: int = MAX_ANSWER_BYTES) -> dict:
    """Load each new export file once; move it to loaded/ or, unreadable, to rejected/ with its reason.

    Each file is one transaction block: a file that turns out unreadable half-way leaves no rows.
    """
    counts = {"files_loaded": 0, "files_rejected": 0, "files_already_loaded": 0,
              "file_rows": 0, "file_rows_new": 0, "file_rows_oversized": 0, "rejected": []}
    for path in candidate_files(drop_dir):
        digest = file_sha256(path)
        with conn.transaction():
            row = conn.execute("SELECT status FROM raw_kobo.loaded_files WHERE content_hash = %s",
                               (digest,)).fetchone()
        if row and row[0] == "loaded":
            _move_aside(path, drop_dir / "loaded")
            counts["files_already_loaded"] += 1
            log.info("survey file %s: same content already loaded, moved to loaded/", path.name)
            continue
        source = f"file:{path.name}"
        file_asset = asset_uid_from_filename(path.name)
        started_at = datetime.now(timezone.utc)
        started = time.monotonic()
        oversized: list[tuple[tuple, dict[str, str]]] = []
        try:
            with conn.transaction():
                submissions = read_export_file(path)
                try:
                    received, new = load_submission_rows(
                        conn, bounded_rows(submissions, source, file_asset, run_id, max_answer_bytes, oversized))
                except psycopg.DataError as exc:
                    raise BadExportFile(f"PostgreSQL refused a value: {str(exc).splitlines()[0]}") from None
                if received == 0:
                    raise BadExportFile("no submissions in the file")
                counts["file_rows_oversized"] += quarantine_all(conn, oversized, max_answer_bytes, run_id)
                _record_file(conn, digest, path.name, received, "loaded", None, new, run_id)
                with conn.cursor() as cur:
                    load.write_manifest(cur, {
                        "run_id": run_id, "source": source, "table_name": "raw_kobo.submissions", "mode": "file",
                        "as_of": None, "watermark_from": None, "watermark_to": None, "rows_read": received,
                        "rows_merged": new, "rows_deleted": 0, "seconds": round(time.monotonic() - started, 3),
                        "started_at": started_at})
        except BadExportFile as exc:
            reason = str(exc)
            with conn.transaction():
                _record_file(conn, digest, path.name, None, "rejected", reason, None, run_id)
                conn.execute(
                    "INSERT INTO meta.quarantine (source, source_key, reason, run_id, payload) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    (source, digest, f"bad_export_file: {reason}", run_id,
                     json.dumps({"file": path.name, "moved_to": "rejected/"})))
            moved = _move_aside(path, drop_dir / "rejected")
            moved.with_name(moved.name + ".reason.txt").write_text(reason + "\n", encoding="utf-8")
            counts["files_rejected"] += 1
            counts["rejected"].append({"file": path.name, "reason": reason})
            log.warning("survey file %s rejected: %s (moved to %s)", path.name, reason, moved)
            continue
        _move_aside(path, drop_dir / "loaded")
        counts["files_loaded"] += 1
        counts["file_rows"] += received
        counts["file_rows_new"] += new
        log.info("survey file %s: %d submissions, %d new", path.name, received, new)
    return counts


# ---------------------------------------------------------------- entry point

def client_for(kobo: ConnInfo) -> KoboClient:
    if not kobo.password:
        raise KoboAuthError(f"connection {kobo.conn_id!r} has no API token: put the KoboToolbox API token "
                            "in its password (Account settings > Security > API key)")
    extra = kobo.extra or {}
    return KoboClient(
        base_url=kobo_base_url(kobo),
        token=kobo.password,
        timeout_s=float(extra.get("timeout_s", 60)),
        max_attempts=int(extra.get("max_attempts", 5)),
        backoff_s=float(extra.get("backoff_s", 2.0)),
        max_retry_after_s=float(extra.get("max_retry_after_s", 300)),
        page_size=int(extra.get("page_size", 1000)),
    )


def extract_surveys(kobo: ConnInfo | None, wh_conn: psycopg.Connection, run_id: str, drop_dir: Path,
                    lookback_minutes: int = 60, full_refresh: bool = False,
                    client: KoboClient | None = None, max_answer_bytes: int = MAX_ANSWER_BYTES) -> dict:
    """Pull every configured Kobo asset, then load new files from drop_dir.

    API failures do not stop the file drops: files are loaded first-come
    either way, and the first API error (KoboAuthError for 401/403) is raised
    afterwards so the task fails visibly with its message.
    `client` lets tests inject a KoboClient with a fast retry schedule.
    """
    ensure_raw_kobo_schema(wh_conn)
    result: dict = {"assets": {}, "api_rows_received": 0, "api_rows_new": 0}
    errors: list[KoboError] = []
    if kobo is not None:
        uids = asset_uids_of(kobo)
        if not uids:
            errors.append(KoboError(f"connection {kobo.conn_id!r} lists no assets: set its extra to "
                                    '{"asset_uids": ["<asset uid>", ...]} (the uid is in the form URL)'))
        else:
            try:
                api = client or client_for(kobo)
            except KoboError as exc:
                errors.append(exc)
                uids = []
            for uid in uids:
                try:
                    counts = pull_asset(api, wh_conn, uid, run_id, lookback_minutes, full_refresh,
                                        max_answer_bytes)
                except KoboError as exc:
                    errors.append(exc)
                    result["assets"][uid] = {"error": str(exc)}
                    log.error("kobo asset %s: %s", uid, exc)
                    if isinstance(exc, KoboAuthError):
                        break  # the same token would fail for every asset
                    continue
                result["assets"][uid] = counts
                result["api_rows_received"] += counts["received"]
                result["api_rows_new"] += counts["new"]
    result.update(load_drop_dir(wh_conn, Path(drop_dir), run_id, max_answer_bytes))
    result["rows_new"] = result["api_rows_new"] + result["file_rows_new"]
    if errors:
        first = next((e for e in errors if isinstance(e, KoboAuthError)), errors[0])
        if len(errors) > 1:
            raise type(first)("; ".join(str(e) for e in errors))
        raise first
    return result
