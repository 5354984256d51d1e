"""KoboToolbox API ingestion against the local replay server and a real PostgreSQL.

What must hold: every page is followed through `next`; a second pull asks
only from the watermark minus the lookback and stores nothing twice; a bad
token fails with a message that says what to fix (and never shows the
token); 5xx answers and timeouts are retried; file drops still load when the
API fails.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from spm_warehouse.settings import ConnInfo
from spm_warehouse.sources import kobo
from tools.demo.kobo_replay import KoboReplayServer

ASSET = "aTestAsset"
TOKEN = "s3cret-token-value"


def submission(n: int, when: datetime, asset: str = ASSET, **answers) -> dict:
    return {
        "_id": 1000 + n,
        "meta/instanceID": f"uuid:00000000-0000-4000-8000-{n:012d}",
        "_uuid": f"00000000-0000-4000-8000-{n:012d}",
        "_submission_time": when.strftime("%Y-%m-%dT%H:%M:%S"),
        "_xform_id_string": asset,
        "__version__": "vTest1",
        "today": when.date().isoformat(),
        "client/account_no": f"{n:09d}",
        "survey/type": "baseline",
        **answers,
    }


T0 = datetime(2024, 3, 1, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def wh(fresh_database):
    with psycopg.connect(fresh_database("kobo_api")) as conn:
        yield conn


def conn_info(server: KoboReplayServer, token: str = TOKEN, assets=(ASSET,), **extra) -> ConnInfo:
    return ConnInfo("kobotoolbox", "http", server.url, None, "", token, "", {"asset_uids": list(assets), **extra})


def fast_client(server: KoboReplayServer, token: str = TOKEN, **kw) -> tuple[kobo.KoboClient, list[float]]:
    """A client whose retry pauses are recorded instead of slept (no timing in tests)."""
    pauses: list[float] = []
    client = kobo.KoboClient(base_url=server.url, token=token, sleep=pauses.append, **kw)
    return client, pauses


def raw_count(conn) -> int:
    return conn.execute("SELECT count(*) FROM raw_kobo.submissions").fetchone()[0]


def test_pagination_follows_next_until_the_last_page(wh, tmp_path):
    subs = [submission(i, T0 + timedelta(minutes=i)) for i in range(7)]
    with KoboReplayServer(token=TOKEN, page_size=3) as server:
        server.add_submissions(ASSET, subs)
        client, _ = fast_client(server)
        result = kobo.extract_surveys(conn_info(server), wh, "run-1", tmp_path / "drop", client=client)
        data_requests = [r for r in server.requests if r["path"].endswith("/data/")]

    assert result["assets"][ASSET]["pages"] == 3
    assert result["assets"][ASSET]["received"] == 7
    assert raw_count(wh) == 7
    assert [r["params"].get("start", "0") for r in data_requests] == ["0", "3", "6"]
    assert all(r["authorized"] for r in data_requests)
    row = wh.execute("SELECT source, asset_uid, kobo_id, instance_id, submission_time, payload "
                     "FROM raw_kobo.submissions WHERE kobo_id = 1003").fetchone()
    assert row[0] == f"api:{ASSET}" and row[1] == ASSET
    assert row[3] == "uuid:00000000-0000-4000-8000-000000000003"
    assert row[4] == T0 + timedelta(minutes=3)
    assert row[5] == subs[3]  # verbatim


def test_incremental_pull_asks_from_watermark_minus_lookback_and_stores_nothing_twice(wh, tmp_path):
    first = [submission(i, T0 + timedelta(hours=i)) for i in range(3)]  # last at T0+2h
    with KoboReplayServer(token=TOKEN) as server:
        server.add_submissions(ASSET, first)
        client, _ = fast_client(server)
        kobo.extract_surveys(conn_info(server), wh, "run-1", tmp_path, lookback_minutes=30, client=client)
        assert raw_count(wh) == 3
        watermark = wh.execute("SELECT watermark FROM meta.watermarks WHERE table_name = %s",
                               (f"kobo:{ASSET}",)).fetchone()[0]
        assert watermark == T0 + timedelta(hours=2)

        late = submission(10, T0 + timedelta(hours=2, minutes=10))  # inside the lookback window
        old_edit = dict(first[0], **{"meta/instanceID": "uuid:edit-of-0", "meta/deprecatedID": first[0]["meta/instanceID"]})
        server.add_submissions(ASSET, [late, old_edit])  # the edit keeps _id and the old _submission_time
        second = kobo.extract_surveys(conn_info(server), wh, "run-2", tmp_path, lookback_minutes=30, client=client)
        query = json.loads(server.requests[-1]["params"]["query"])

        assert query == {"_submission_time": {"$gte": "2024-03-01T09:30:00"}}
        assert second["assets"][ASSET]["received"] == 2  # T0+2h again (lookback) and the late one
        assert second["assets"][ASSET]["new"] == 1
        assert raw_count(wh) == 4
        # An edit older than the lookback is only seen by a full refresh (Kobo keeps _submission_time).
        full = kobo.extract_surveys(conn_info(server), wh, "run-3", tmp_path, lookback_minutes=30,
                                    full_refresh=True, client=client)
        assert "query" not in server.requests[-1]["params"]

    assert full["assets"][ASSET]["new"] == 1
    assert wh.execute("SELECT count(*) FROM raw_kobo.submissions WHERE instance_id = 'uuid:edit-of-0'").fetchone()[0] == 1
    modes = [r[0] for r in wh.execute("SELECT mode FROM meta.load_manifest ORDER BY id")]
    assert modes == ["full", "incremental", "full"]
    # the watermark never moves back
    assert wh.execute("SELECT watermark FROM meta.watermarks").fetchone()[0] == T0 + timedelta(hours=2, minutes=10)


def test_reloading_the_same_pages_changes_nothing(wh, tmp_path):
    with KoboReplayServer(token=TOKEN) as server:
        server.add_submissions(ASSET, [submission(i, T0) for i in range(4)])
        client, _ = fast_client(server)
        kobo.extract_surveys(conn_info(server), wh, "run-1", tmp_path, client=client)
        before = wh.execute("SELECT content_hash, loaded_at, run_id FROM raw_kobo.submissions ORDER BY 1").fetchall()
        again = kobo.extract_surveys(conn_info(server), wh, "run-2", tmp_path, full_refresh=True, client=client)
    after = wh.execute("SELECT content_hash, loaded_at, run_id FROM raw_kobo.submissions ORDER BY 1").fetchall()
    assert again["api_rows_received"] == 4 and again["api_rows_new"] == 0
    assert after == before


def test_wrong_token_raises_a_clear_auth_error_without_leaking_the_token(wh, tmp_path):
    with KoboReplayServer(token=TOKEN) as server:
        server.add_submissions(ASSET, [submission(1, T0)])
        client, pauses = fast_client(server, token="wrong-token-123")
        with pytest.raises(kobo.KoboAuthError) as err:
            kobo.extract_surveys(conn_info(server, token="wrong-token-123"), wh, "run-1", tmp_path, client=client)
        requests = len(server.requests)
    message = str(err.value)
    assert "HTTP 401" in message
    assert "'kobotoolbox'" in message and "API token" in message
    assert "wrong-token-123" not in message and TOKEN not in message
    assert requests == 1 and pauses == []  # auth failures are not retried


def test_forbidden_asset_says_to_share_the_project(wh, tmp_path):
    with KoboReplayServer(token=TOKEN, fail_first=1, fail_status=403) as server:
        server.add_submissions(ASSET, [submission(1, T0)])
        client, _ = fast_client(server)
        with pytest.raises(kobo.KoboAuthError, match=r"HTTP 403.*View submissions"):
            kobo.extract_surveys(conn_info(server), wh, "run-1", tmp_path, client=client)


def test_missing_token_fails_before_any_request(wh, tmp_path):
    with KoboReplayServer(token=TOKEN) as server:
        with pytest.raises(kobo.KoboAuthError, match="no API token"):
            kobo.extract_surveys(conn_info(server, token=""), wh, "run-1", tmp_path)
        assert server.requests == []


def test_server_errors_are_retried_with_backoff_then_succeed(wh, tmp_path):
    with KoboReplayServer(token=TOKEN, fail_first=2, fail_status=503) as server:
        server.add_submissions(ASSET, [submission(i, T0) for i in range(3)])
        client, pauses = fast_client(server, backoff_s=1.0, max_attempts=5)
        result = kobo.extract_surveys(conn_info(server), wh, "run-1", tmp_path, client=client)
        statuses = len(server.requests)
    assert result["api_rows_new"] == 3
    assert statuses == 3  # two 503s, then the page
    assert len(pauses) == 2 and pauses[1] > pauses[0] >= 1.0  # exponential backoff


def test_server_still_failing_after_all_attempts_raises_unavailable(wh, tmp_path):
    with KoboReplayServer(token=TOKEN, fail_first=99, fail_status=502) as server:
        server.add_submissions(ASSET, [submission(1, T0)])
        client, pauses = fast_client(server, max_attempts=3)
        with pytest.raises(kobo.KoboUnavailableError, match=r"after 3 attempts \(last: HTTP 502\)"):
            kobo.extract_surveys(conn_info(server), wh, "run-1", tmp_path, client=client)
    assert len(pauses) == 2
    assert raw_count(wh) == 0
    assert wh.execute("SELECT count(*) FROM meta.watermarks").fetchone()[0] == 0


def test_timeouts_are_retried(wh, tmp_path):
    with KoboReplayServer(token=TOKEN, hang_first=1, hang_s=1.5) as server:
        server.add_submissions(ASSET, [submission(1, T0)])
        client, pauses = fast_client(server, timeout_s=0.3)
        result = kobo.extract_surveys(conn_info(server), wh, "run-1", tmp_path, client=client)
    assert result["api_rows_new"] == 1
    assert len(pauses) == 1


def test_files_are_loaded_even_when_the_api_fails(wh, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "export.json").write_text(json.dumps([submission(5, T0, asset="aOther")]))
    with KoboReplayServer(token=TOKEN) as server:
        with pytest.raises(kobo.KoboAuthError):
            kobo.extract_surveys(conn_info(server, token="bad"), wh, "run-1", drop)
    assert raw_count(wh) == 1
    assert (drop / "loaded" / "export.json").exists()


def test_connection_without_assets_is_a_clear_error(wh, tmp_path):
    info = ConnInfo("kobotoolbox", "https", "kf.example.org", None, "", TOKEN, "", {})
    with pytest.raises(kobo.KoboError, match="asset_uids"):
        kobo.extract_surveys(info, wh, "run-1", tmp_path)


def test_base_url_from_connection_forms():
    def info(host, conn_type="http", port=None, extra=None):
        return ConnInfo("kobotoolbox", conn_type, host, port, "", TOKEN, "", extra or {})

    assert kobo.kobo_base_url(info("https://kf.kobotoolbox.org/")) == "https://kf.kobotoolbox.org"
    assert kobo.kobo_base_url(info("kf.kobotoolbox.org", conn_type="https")) == "https://kf.kobotoolbox.org"
    assert kobo.kobo_base_url(info("127.0.0.1", port=8765)) == "http://127.0.0.1:8765"
    assert kobo.asset_uids_of(info("x", extra={"asset_uids": "a1, b2"})) == ["a1", "b2"]


def test_next_links_are_followed_on_the_configured_server_only():
    client = kobo.KoboClient(base_url="https://kobo.example.org", token=TOKEN)
    nxt = client._same_server("http://internal-kpi:8000/api/v2/assets/a/data/?limit=100&start=100")
    assert nxt == "https://kobo.example.org/api/v2/assets/a/data/?limit=100&start=100"


# ---- faults (issue 15): each ends in a retry or one clear error, nothing lost -------------------------

def watermark_of(conn) -> datetime | None:
    row = conn.execute("SELECT watermark FROM meta.watermarks WHERE table_name = %s", (f"kobo:{ASSET}",)).fetchone()
    return row[0] if row else None


@pytest.mark.parametrize(("kind", "status", "start"), [
    ("html", 200, 0),       # a proxy's maintenance page with status 200
    ("html", 502, 3),       # nginx's error page on the second page
    ("truncated", None, 3),  # half a JSON body, with a Content-Length that matches it
    ("cut", None, 6),        # the connection closes half-way through the body
])
def test_unreadable_answers_are_retried_and_every_page_loads(wh, tmp_path, kind, status, start):
    subs = [submission(i, T0 + timedelta(minutes=i)) for i in range(7)]
    with KoboReplayServer(token=TOKEN, page_size=3) as server:
        server.add_submissions(ASSET, subs)
        server.inject(kind, start=start, status=status)
        client, pauses = fast_client(server, backoff_s=1.0)
        result = kobo.extract_surveys(conn_info(server), wh, "run-1", tmp_path, client=client)
        served = server.served_faults
    assert served == [kind]
    assert len(pauses) == 1  # one retry, after a backoff
    assert result["assets"][ASSET]["pages"] == 3 and result["api_rows_new"] == 7
    assert raw_count(wh) == 7
    assert watermark_of(wh) == T0 + timedelta(minutes=6)


def test_an_html_page_every_time_fails_with_one_line_naming_it_and_keeps_the_watermark(wh, tmp_path):
    with KoboReplayServer(token=TOKEN) as server:
        server.add_submissions(ASSET, [submission(1, T0)])
        server.inject("html", times=99, status=200)
        client, pauses = fast_client(server, max_attempts=3)
        with pytest.raises(kobo.KoboUnavailableError) as err:
            kobo.extract_surveys(conn_info(server), wh, "run-1", tmp_path, client=client)
    message = str(err.value)
    assert "after 3 attempts" in message and "an HTML page ('502 Bad Gateway') instead of JSON" in message
    assert "\n" not in message and TOKEN not in message
    assert len(pauses) == 2 and raw_count(wh) == 0 and watermark_of(wh) is None


def test_truncated_json_every_time_says_so(wh, tmp_path):
    with KoboReplayServer(token=TOKEN) as server:
        server.add_submissions(ASSET, [submission(1, T0)])
        server.inject("truncated", times=99)
        client, _ = fast_client(server, max_attempts=2)
        with pytest.raises(kobo.KoboUnavailableError, match=r"JSON that is truncated or not valid"):
            kobo.extract_surveys(conn_info(server), wh, "run-1", tmp_path, client=client)


def test_429_waits_as_long_as_retry_after_says(wh, tmp_path):
    with KoboReplayServer(token=TOKEN) as server:
        server.add_submissions(ASSET, [submission(i, T0) for i in range(2)])
        server.inject("throttle", times=2, retry_after="7")
        client, pauses = fast_client(server, backoff_s=1.0)
        result = kobo.extract_surveys(conn_info(server), wh, "run-1", tmp_path, client=client)
    assert pauses == [7.0, 7.0]  # the server's wait, not our backoff (1 s, 2 s)
    assert result["api_rows_new"] == 2


def test_429_asking_for_longer_than_the_cap_stops_at_once_without_waiting(wh, tmp_path):
    with KoboReplayServer(token=TOKEN) as server:
        server.add_submissions(ASSET, [submission(1, T0)])
        server.inject("throttle", times=99, retry_after="3600")
        client, pauses = fast_client(server, max_retry_after_s=300)
        with pytest.raises(kobo.KoboUnavailableError) as err:
            kobo.extract_surveys(conn_info(server), wh, "run-1", tmp_path, client=client)
        requests = len(server.requests)
    assert "HTTP 429 asking to retry after 3600s, longer than this run waits (300s)" in str(err.value)
    assert pauses == [] and requests == 1
    assert raw_count(wh) == 0 and watermark_of(wh) is None


def test_429_without_retry_after_backs_off(wh, tmp_path):
    with KoboReplayServer(token=TOKEN) as server:
        server.add_submissions(ASSET, [submission(1, T0)])
        server.inject("throttle")
        client, pauses = fast_client(server, backoff_s=1.0)
        result = kobo.extract_surveys(conn_info(server), wh, "run-1", tmp_path, client=client)
    assert len(pauses) == 1 and 1.0 <= pauses[0] <= 1.25  # our backoff, with its jitter
    assert result["api_rows_new"] == 1


def test_retry_after_is_read_as_seconds_or_an_http_date():
    client = kobo.KoboClient(base_url="http://127.0.0.1:9", token=TOKEN)
    assert kobo._retry_after_seconds(None) is None and kobo._retry_after_seconds("soon") is None
    assert kobo._retry_after_seconds("12") == 12.0
    now = datetime(2024, 3, 1, 8, 0, 0, tzinfo=timezone.utc)
    assert kobo._retry_after_seconds("Fri, 01 Mar 2024 08:00:45 GMT", now=now) == 45.0
    assert kobo._retry_after_seconds("Fri, 01 Mar 2024 07:00:00 GMT", now=now) == 0.0  # in the past: now
    assert client.max_retry_after_s == 300.0


def test_a_page_that_repeats_the_previous_one_stops_the_asset_and_loses_nothing(wh, tmp_path):
    subs = [submission(i, T0 + timedelta(minutes=i)) for i in range(7)]
    with KoboReplayServer(token=TOKEN, page_size=3) as server:
        server.add_submissions(ASSET, subs)
        server.inject("repeat", start=3)
        client, _ = fast_client(server)
        with pytest.raises(kobo.KoboError) as err:
            kobo.extract_surveys(conn_info(server), wh, "run-1", tmp_path, client=client)
        requests = len(server.requests)
        assert "page 2 (start=3, limit=3) repeats page 1 (the same 3 submissions)" in str(err.value)
        assert requests == 2  # stopped there: no loop, no page after it read
        assert raw_count(wh) == 3 and watermark_of(wh) is None  # page 1 kept, the watermark did not move
        again = kobo.extract_surveys(conn_info(server), wh, "run-2", tmp_path, client=client)
    assert again["api_rows_new"] == 4 and raw_count(wh) == 7  # the next run gets the rest


def test_a_next_link_that_never_ends_with_the_same_page_does_not_loop(wh, tmp_path):
    # every page after the first repeats: a cache in front of Kobo that ignores `start`
    subs = [submission(i, T0 + timedelta(minutes=i)) for i in range(30)]
    with KoboReplayServer(token=TOKEN, page_size=3) as server:
        server.add_submissions(ASSET, subs)
        server.inject("repeat", times=99)
        client, _ = fast_client(server)
        with pytest.raises(kobo.KoboError, match="repeats page 1"):
            kobo.extract_surveys(conn_info(server), wh, "run-1", tmp_path, client=client)
        assert len(server.requests) == 2


def test_an_empty_page_that_still_has_a_next_link_stops_the_asset(wh, tmp_path):
    subs = [submission(i, T0 + timedelta(minutes=i)) for i in range(7)]
    with KoboReplayServer(token=TOKEN, page_size=3) as server:
        server.add_submissions(ASSET, subs)
        server.inject("empty", start=3)
        client, _ = fast_client(server)
        with pytest.raises(kobo.KoboError, match=r"page 2 is empty but has a `next` link; stopped"):
            kobo.extract_surveys(conn_info(server), wh, "run-1", tmp_path, client=client)
        assert raw_count(wh) == 3 and watermark_of(wh) is None
        assert kobo.extract_surveys(conn_info(server), wh, "run-2", tmp_path, client=client)["api_rows_new"] == 4


def test_a_ten_megabyte_answer_is_stored_bounded_and_quarantined_whole(wh, tmp_path):
    big = "x" * (10 << 20)
    subs = [submission(1, T0), submission(2, T0, **{"notes/comment": big})]
    with KoboReplayServer(token=TOKEN) as server:
        server.add_submissions(ASSET, subs)
        client, _ = fast_client(server)
        result = kobo.extract_surveys(conn_info(server), wh, "run-1", tmp_path, client=client)
        kobo.extract_surveys(conn_info(server), wh, "run-2", tmp_path, full_refresh=True, client=client)
    assert result["api_rows_new"] == 2 and result["assets"][ASSET]["oversized"] == 1
    stored = wh.execute("SELECT payload, octet_length(payload::text) FROM raw_kobo.submissions "
                        "WHERE kobo_id = 1002").fetchone()
    assert stored[0]["notes/comment"].startswith("[oversized answer: 10485760 bytes, more than the 1048576-byte limit")
    assert stored[0]["_spm_oversized"] == {"notes/comment": 10485760}
    assert stored[0]["client/account_no"] == "000000002"  # the other answers verbatim
    assert stored[1] < 10_000
    rows = wh.execute("SELECT source, source_key, reason, run_id, length(payload -> 'answers' ->> 'notes/comment') "
                      "FROM meta.quarantine").fetchall()
    assert rows == [(f"kobo:{ASSET}", "uuid:00000000-0000-4000-8000-000000000002",
                     "oversized_answer: 'notes/comment' is 10.0 MB, more than the 1.0 MB limit; stored in "
                     "raw_kobo.submissions with a marker in its place, the whole answer is kept here "
                     "(payload -> 'answers')", "run-1", 10 << 20)]  # whole, and once (not again on run-2)
    assert raw_count(wh) == 2


def test_oversized_answers_in_repeat_groups_are_found():
    payload = {"a": "ok", "group": [{"g/q": "y" * 50}, {"g/q": "z"}], "n": 3}
    stored, whole = kobo.bound_answers(payload, limit=40)
    assert whole == {"group[0]/g/q": "y" * 50}
    assert stored["group"][0]["g/q"].startswith("[oversized answer: 50 bytes")
    assert stored["group"][1] == {"g/q": "z"} and stored["_spm_oversized"] == {"group[0]/g/q": 50}
    assert kobo.bound_answers({"a": "é" * 30}, limit=40)[1] == {"a": "é" * 30}  # bytes, not characters


def test_stage_fails_with_one_line_and_no_traceback_when_kobo_keeps_failing(fresh_database, tmp_path):
    import os
    import subprocess
    import sys

    from databases import conn_uri_for
    from project import ROOT

    url = fresh_database("kobo_stage")
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "export.json").write_text(json.dumps([submission(5, T0, asset="aOther")]))
    with KoboReplayServer(token=TOKEN) as server:
        server.add_submissions(ASSET, [submission(1, T0)])
        server.inject("html", times=99, status=502)
        kobo_conn = json.dumps({"conn_type": "http", "host": server.url, "password": TOKEN,
                                "extra": {"asset_uids": [ASSET], "max_attempts": 2, "backoff_s": 0.01}})
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "SPM_FAULT"))}
        env.update({"PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}", "AIRFLOW_CONN_WAREHOUSE": conn_uri_for(url),
                    "AIRFLOW_CONN_KOBOTOOLBOX": kobo_conn, "SPM_SURVEY_DROP_DIR": str(drop),
                    "SPM_LOCAL_DIR": str(tmp_path / "local")})
        proc = subprocess.run([sys.executable, "-m", "spm_warehouse.stage", "extract_surveys", "--run-id", "r1",
                               "--as-of", "2024-06-30"], env=env, capture_output=True, text=True, cwd=ROOT,
                              timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert "after 2 attempts (last: HTTP 502 (HTML page '502 Bad Gateway'))" in errors[0]
    assert (drop / "loaded" / "export.json").exists()  # the file drop still loaded
