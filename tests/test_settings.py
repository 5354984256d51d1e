"""Settings: connection parsing round trips and documented defaults."""

from __future__ import annotations

import pytest

from spm_warehouse import settings


def test_conn_uri_round_trip():
    info = settings.parse_conn_uri(
        "kobotoolbox", 'https://:s3cr%2Ft@kf.example.org/?__extra__={"asset_uids": ["a1", "b2"]}'
    )
    assert info.password == "s3cr/t" and info.host == "kf.example.org"
    assert info.extra == {"asset_uids": ["a1", "b2"]}
    back = settings.parse_conn_uri("kobotoolbox", settings.conn_uri(info))
    assert back == info


def test_postgres_and_mysql_urls():
    pg = settings.parse_conn_uri("warehouse", "postgres://u:p%40ss@db:6543/wh")
    assert pg.sqlalchemy_url() == "postgresql+psycopg://u:p%40ss@db:6543/wh"
    assert pg.libpq_url() == "postgresql://u:p%40ss@db:6543/wh"
    my = settings.parse_conn_uri("mis_fineract", "mysql://root@127.0.0.1:3306/fineract_default")
    assert my.dialect == "mysql" and my.sqlalchemy_url().startswith("mysql+pymysql://root@127.0.0.1:3306/")


def test_json_connection_form():
    info = settings.parse_conn_uri("warehouse", '{"conn_type": "postgres", "host": "h", "port": 5433, "login": "l", "schema": "d"}')
    assert info.libpq_url() == "postgresql://l@h:5433/d"


def test_env_wins_over_default(monkeypatch):
    monkeypatch.setenv("SPM_DEMO_CLIENTS", "12")
    assert settings.get_int("SPM_DEMO_CLIENTS") == 12
    monkeypatch.setenv("SPM_DEMO_CLIENTS", "")
    assert settings.get_int("SPM_DEMO_CLIENTS") == int(settings.SETTINGS["SPM_DEMO_CLIENTS"][0])


def test_unknown_setting_and_bad_number(monkeypatch):
    with pytest.raises(KeyError):
        settings.get("SPM_NOT_A_SETTING")
    monkeypatch.setenv("SPM_DEMO_CLIENTS", "many")
    with pytest.raises(ValueError, match="SPM_DEMO_CLIENTS"):
        settings.get_int("SPM_DEMO_CLIENTS")


def test_missing_connection_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_KOBOTOOLBOX", raising=False)
    with pytest.raises(LookupError, match="AIRFLOW_CONN_KOBOTOOLBOX"):
        settings.connection("kobotoolbox")
