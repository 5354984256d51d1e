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
