"""The embedded cluster: start, reuse, stop, and refusal of foreign data."""

from __future__ import annotations

import os
import pwd

import psycopg
import pytest

from spm_warehouse import embedded_postgres as ep


def test_start_reuse_stop(tmp_path):
    cluster = ep.EmbeddedPostgres(tmp_path / "pg")
    url = cluster.start()
    try:
        assert url.startswith("postgresql://postgres@127.0.0.1:")
        with psycopg.connect(url) as conn:
            pid = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
            listen = conn.execute("SHOW listen_addresses").fetchone()[0]
        assert listen == "127.0.0.1"
        # A second start reuses the running server: same port, same postmaster.
        again = ep.EmbeddedPostgres(tmp_path / "pg")
        assert again.start() == url
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == pid
    finally:
        assert cluster.stop() is True
    assert cluster.is_running() is False
    assert cluster.stop() is False  # stopping twice is harmless
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)


def test_restart_after_stop_keeps_data(tmp_path):
    cluster = ep.EmbeddedPostgres(tmp_path / "pg")
    url = cluster.start()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (41)")
        cluster.stop()
        assert cluster.start() == url
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT x FROM kept").fetchone()[0] == 41
    finally:
        cluster.stop()


def test_refuses_data_dir_it_did_not_create(tmp_path):
    foreign = tmp_path / "pg" / "data"
    foreign.mkdir(parents=True)
    (foreign / "PG_VERSION").write_text("15\n")
    cluster = ep.EmbeddedPostgres(tmp_path / "pg")
    with pytest.raises(ep.EmbeddedPostgresError, match="not created by this project"):
        cluster.start()
    with pytest.raises(ep.EmbeddedPostgresError, match="refusing"):
        cluster.stop()
    assert (foreign / "PG_VERSION").read_text() == "15\n"  # untouched


def test_marker_naming_another_data_dir_is_refused(tmp_path):
    state = tmp_path / "pg"
    state.mkdir()
    (state / ep.MARKER).write_text('{"port": 5999, "data_dir": "/var/lib/postgresql/15/main"}')
    with pytest.raises(ep.EmbeddedPostgresError, match="another data directory"):
        ep.EmbeddedPostgres(state).stop()


def test_non_root_runs_binaries_as_itself(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert ep.unprivileged_user() is None
    assert ep.as_user_command(["initdb", "-D", "x"], None) == ["initdb", "-D", "x"]


def test_root_drops_privileges(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.delenv("SPM_PG_RUN_AS", raising=False)
    user = ep.unprivileged_user()
    assert user in ("postgres", "nobody")
    pwd.getpwnam(user)
    wrapped = ep.as_user_command(["pg_ctl", "status"], user)
    assert wrapped[-2:] == ["pg_ctl", "status"] and user in " ".join(wrapped)
    assert wrapped[0].endswith(("runuser", "setpriv"))


def test_missing_binaries_give_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(ep, "candidate_bindirs", lambda: [tmp_path / "nowhere"])
    with pytest.raises(ep.EmbeddedPostgresError, match="No PostgreSQL server binaries found"):
        ep.find_bindir()


def test_finds_real_binaries():
    bindir = ep.find_bindir()
    assert (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file()
