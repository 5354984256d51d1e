"""Settings: connection parsing round trips and documented defaults."""

from __future__ import annotations

import re

import pytest
from project import ROOT

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


def _code_files() -> list:

    files = [p for folder in ("plugins", "dags", "tools", "dashboards") for p in (ROOT / folder).rglob("*.py")]
    files += [p for p in (ROOT / "dbt_project").rglob("*") if p.suffix in (".sql", ".yml") and "target" not in p.parts]
    return files


def test_every_spm_variable_in_the_code_is_declared_in_settings():
    """settings.py is the one place to learn every setting: no SPM_* name lives only in some module."""

    not_variables = {"SPM_RESULT"}  # the marker of the line dashboards/runtime/apply_setup.py prints
    declared = set(settings.SETTINGS) | set(settings.CHILD_PROCESS_VARIABLES) | not_variables
    used: dict[str, str] = {}
    for path in _code_files():
        for name in re.findall(r"\bSPM_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="replace")):
            used.setdefault(name, str(path))
    assert len(used) > 20, used  # the scan found the code
    undeclared = {name: where for name, where in used.items() if name not in declared}
    assert not undeclared, undeclared


def test_only_settings_reads_spm_variables_from_the_environment():

    reader = re.compile(r"""(os\.environ(\.get)?|os\.getenv)\s*[\[(]\s*["']SPM_""")
    offenders = [str(p) for p in _code_files() if p.suffix == ".py" and p.name != "settings.py"
                 and reader.search(p.read_text(errors="replace"))]
    assert offenders == []
