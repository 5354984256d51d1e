"""The local KoboToolbox replay server answers like the API v2 data endpoint (also as a command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from project import ROOT

from tools.demo.kobo_replay import KoboReplayServer


def pages_dir(tmp_path: Path, n: int = 5) -> Path:
    folder = tmp_path / "api" / "aAsset"
    folder.mkdir(parents=True)
    subs = [{"_id": i, "meta/instanceID": f"uuid:{i}", "_submission_time": f"2024-01-0{i}T10:00:00"} for i in range(1, n + 1)]
    (folder / "page_0001.json").write_text(json.dumps({"results": subs[:3]}))
    (folder / "page_0002.json").write_text(json.dumps(subs[3:]))  # a plain list works too
    return tmp_path / "api"


def get(url: str, token: str | None = "t") -> tuple[int, dict]:
    headers = {"Authorization": f"Token {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_pages_with_next_links_and_count(tmp_path):
    with KoboReplayServer(pages_dir(tmp_path), token="t", page_size=2) as server:
        status, first = get(f"{server.url}/api/v2/assets/aAsset/data/?format=json")
        _, second = get(first["next"])
        _, last = get(second["next"])
    assert status == 200 and first["count"] == 5
    assert [s["_id"] for s in first["results"] + second["results"] + last["results"]] == [1, 2, 3, 4, 5]
    assert last["next"] is None and first["previous"] is None and last["previous"]


def test_query_filters_on_submission_time_like_kobo(tmp_path):
    query = urllib.parse.quote(json.dumps({"_submission_time": {"$gte": "2024-01-03T10:00:00"}}))
    with KoboReplayServer(pages_dir(tmp_path), token="t") as server:
        _, page = get(f"{server.url}/api/v2/assets/aAsset/data.json?query={query}")
        status, _ = get(f"{server.url}/api/v2/assets/aAsset/data/?query=%7Bbad")
    assert [s["_id"] for s in page["results"]] == [3, 4, 5] and page["count"] == 3
    assert status == 400


def test_auth_and_failure_modes(tmp_path):
    with KoboReplayServer(pages_dir(tmp_path), token="t", fail_first=2, fail_status=500) as server:
        assert get(f"{server.url}/api/v2/assets/aAsset/data/", token=None) == (401, {"detail": "Authentication credentials were not provided."})
        assert get(f"{server.url}/api/v2/assets/aAsset/data/", token="nope")[0] == 401
        assert get(f"{server.url}/api/v2/assets/aAsset/data/")[0] == 200  # the 401s used up the failures
    with KoboReplayServer(pages_dir(tmp_path / "x"), token="t", fail_first=1, fail_status=503) as server:
        assert get(f"{server.url}/api/v2/assets/aAsset/data/")[0] == 503
        assert get(f"{server.url}/api/v2/assets/aAsset/data/")[0] == 200
        assert get(f"{server.url}/api/v2/assets/unknown/data/")[0] == 404


def test_an_edit_replaces_the_submission_with_the_same_id(tmp_path):
    with KoboReplayServer(pages_dir(tmp_path), token="t") as server:
        server.add_submissions("aAsset", [{"_id": 2, "meta/instanceID": "uuid:2-edited",
                                           "meta/deprecatedID": "uuid:2", "_submission_time": "2024-01-02T10:00:00"}])
        _, page = get(f"{server.url}/api/v2/assets/aAsset/data/")
    assert [s["meta/instanceID"] for s in page["results"]] == ["uuid:1", "uuid:2-edited", "uuid:3", "uuid:4", "uuid:5"]


def test_runs_as_a_command(tmp_path):
    api = pages_dir(tmp_path)
    with KoboReplayServer(token="probe") as probe:  # borrow a free port, then release it
        port = probe.port
    proc = subprocess.Popen([sys.executable, "-m", "tools.demo.kobo_replay", "--port", str(port), "--dir",
                             str(api), "--token", "t"], cwd=ROOT, env={"PYTHONPATH": os.pathsep.join((str(ROOT / "plugins"), str(ROOT)))},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in banner and "aAsset (5)" in banner
        status, page = get(f"http://127.0.0.1:{port}/api/v2/assets/aAsset/data/")
        assert status == 200 and page["count"] == 5
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_missing_pages_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        KoboReplayServer(tmp_path / "nowhere")


def raw_get(url: str) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": "Token t"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_scripted_faults_answer_as_broken_servers_do(tmp_path):
    import http.client

    with KoboReplayServer(pages_dir(tmp_path), token="t", page_size=2) as server:
        data = f"{server.url}/api/v2/assets/aAsset/data/"
        server.inject("html", status=502).inject("html").inject("throttle", retry_after="7")
        server.inject("truncated", keep=10).inject("repeat", start=2).inject("cut")
        status, headers, body = raw_get(data)
        assert status == 502 and headers["Content-Type"] == "text/html" and b"<title>502 Bad Gateway" in body
        status, headers, body = raw_get(data)
        assert status == 200 and body.startswith(b"<!DOCTYPE html>")
        status, headers, body = raw_get(data)
        assert status == 429 and headers["Retry-After"] == "7"
        status, _, body = raw_get(data)
        assert status == 200 and body == b'{"count": '  # the first 10 bytes of the page
        _, _, body = raw_get(data + "?start=2&limit=2")
        repeated = json.loads(body)
        assert [r["_id"] for r in repeated["results"]] == [1, 2] and "start=4" in repeated["next"]
        with pytest.raises(http.client.IncompleteRead):
            raw_get(data)
        assert server.served_faults == ["html", "html", "throttle", "truncated", "repeat", "cut"]
        status, _, body = raw_get(data)  # the script is spent: pages again
        assert status == 200 and [r["_id"] for r in json.loads(body)["results"]] == [1, 2]
        with pytest.raises(ValueError, match="unknown fault"):
            server.inject("teapot")


def test_a_client_that_hangs_up_is_not_a_traceback(capsys):
    """A client that closes the connection before its answer is written (a timeout, a retry) is no error of
    the server's: no traceback on stderr. Any other error in a request still prints one."""
    server = KoboReplayServer()
    try:
        for gone in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "Connection reset by peer")):
            try:
                raise gone
            except OSError:
                server._httpd.handle_error(None, ("127.0.0.1", 1))
        assert capsys.readouterr().err == ""
        try:
            raise ValueError("a bug in a handler")
        except ValueError:
            server._httpd.handle_error(None, ("127.0.0.1", 1))
        assert "ValueError: a bug in a handler" in capsys.readouterr().err
    finally:
        server._httpd.server_close()
