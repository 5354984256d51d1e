"""The embedded cluster: start, reuse, stop, refusal of foreign data, and password authentication."""

from __future__ import annotations

import json
import os
import pwd
import stat

import psycopg
import pytest

from spm_warehouse import embedded_postgres as ep
from spm_warehouse import secrets_file


def _without_password(cluster: ep.EmbeddedPostgres, host: str = "127.0.0.1") -> str:
    return f"postgresql://postgres@{host}:{cluster.port}/postgres"


def test_every_connection_needs_the_generated_password(tmp_path, monkeypatch):
    """scram-sha-256 on TCP and on the socket; the password lives in secrets.env (0600); 127.0.0.1 only."""
    monkeypatch.delenv("SPM_PG_SUPERUSER_PASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no_pgpass"))  # no ~/.pgpass may help the refused logins
    cluster = ep.EmbeddedPostgres(tmp_path / "pg")
    url = cluster.start()
    try:
        secrets = tmp_path / "secrets.env"
        assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
        password = secrets_file.read(secrets)[ep.SUPERUSER_SECRET]
        assert len(password) >= 24 and f":{password}@" in url
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(_without_password(cluster), connect_timeout=5)
        with pytest.raises(psycopg.OperationalError, match="password"):  # the Unix socket too
            psycopg.connect(host=str(cluster.state_dir), port=cluster.port, user="postgres", dbname="postgres",
                            connect_timeout=5)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(_without_password(cluster).replace("postgres@", "postgres:wrong@"), connect_timeout=5)
        with psycopg.connect(url) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
            assert conn.execute("SHOW password_encryption").fetchone()[0] == "scram-sha-256"
            rules = conn.execute("SELECT type, auth_method FROM pg_hba_file_rules").fetchall()
            assert rules and {method for _, method in rules} == {"scram-sha-256"}, rules
            assert conn.execute("SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid "
                                "WHERE rolname = 'postgres'").fetchone()[0]
        with psycopg.connect(host=str(cluster.state_dir), port=cluster.port, user="postgres", dbname="postgres",
                             password=password) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == "postgres"
        assert json.loads(cluster.marker_path.read_text())["auth"] == "scram-sha-256"
    finally:
        cluster.stop()


def test_a_cluster_created_with_trust_is_upgraded_at_its_next_start(tmp_path, monkeypatch):
    """What older versions made (trust for everyone): the next start sets the password and drops trust."""
    monkeypatch.delenv("SPM_PG_SUPERUSER_PASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no_pgpass"))
    cluster = ep.EmbeddedPostgres(tmp_path / "pg")
    cluster.start()
    cluster.stop()
    # turn it into an old cluster: trust in pg_hba.conf, no password, no "auth" in the marker
    (cluster.data_dir / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    marker = json.loads(cluster.marker_path.read_text())
    marker.pop("auth")
    cluster.marker_path.write_text(json.dumps(marker))
    (tmp_path / "secrets.env").unlink()
    try:
        url = cluster.start()
        assert json.loads(cluster.marker_path.read_text())["auth"] == "scram-sha-256"
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(_without_password(cluster), connect_timeout=5)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM pg_hba_file_rules WHERE auth_method = 'trust'").fetchone()[0] == 0
        assert stat.S_IMODE((tmp_path / "secrets.env").stat().st_mode) == 0o600
    finally:
        cluster.stop()


def test_start_reuse_stop(tmp_path):
    cluster = ep.EmbeddedPostgres(tmp_path / "pg")
    url = cluster.start()
    try:
        assert url.startswith("postgresql://postgres:") and "@127.0.0.1:" in url
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
