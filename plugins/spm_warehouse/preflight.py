"""Preflight: the configuration is checked before anything is extracted.

Why: a typo in a setting used to surface an hour into the night, as a dbt
error deep in a model or as PPI scores silently missing. Each check here
reads one setting and, when it is wrong, raises `ConfigError` with one line
naming the setting, its value and what is expected. The nightly DAG runs it
as its first task (`preflight`), and `make run` before starting Airflow.

What is checked:
- every AIRFLOW_CONN_* variable parses (URI or JSON), names a known
  connection type and has a numeric port;
- the dbt vars `ppi_default_scorecard` (a scorecard in the seeds) and
  `ppi_poverty_line` (not empty, a poverty line of that scorecard);
- the branch-access file (SPM_SUPERSET_BRANCH_ACCESS, default
  dashboards/branch_access.yaml) and the warehouse's meta.branch_access name
  only branches the MIS has (raw_mis.m_office, once extracted);
- the pseudonym key (SPM_PSEUDONYM_KEY) is set and long enough;
- SPM_MIN_CELL_N (the small-sample size of kpi_client_outcomes) is a whole number >= 1.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

import psycopg
import yaml

from spm_warehouse import settings
from spm_warehouse.paths import DBT_PROJECT_DIR

log = logging.getLogger(__name__)

KNOWN_CONN_TYPES = {"postgres", "postgresql", "mysql", "mariadb", "http", "https", "kobotoolbox", "generic",
                    "smtp", "email", "redis", "fs", "sqlite"}
DEFAULT_BRANCH_ACCESS_FILE = settings.PROJECT_ROOT / "dashboards" / "branch_access.yaml"
MIN_PSEUDONYM_KEY_CHARS = 32


class ConfigError(ValueError):
    """A setting is wrong; the message is one line naming it."""

    one_line = True  # failure_text shows it as it is: the whole failure text of the night


def check_connections(environ: dict[str, str] | None = None) -> list[str]:
    """Every AIRFLOW_CONN_* variable parses; returns the connection ids checked."""
    environ = os.environ if environ is None else environ
    checked = []
    for key in sorted(k for k in environ if k.startswith("AIRFLOW_CONN_")):
        value = environ[key].strip()
        conn_id = key[len("AIRFLOW_CONN_"):].lower()
        if not value:
            raise ConfigError(f"{key} is empty: give a URI (postgres://user:password@host:5432/db) or unset it")
        if value.startswith("{"):
            try:
                data = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{key} is not valid JSON ({exc.msg} at character {exc.pos})") from None
            if not isinstance(data, dict) or not data.get("conn_type"):
                raise ConfigError(f"{key}: the JSON form needs a \"conn_type\"")
        elif "://" not in value:
            raise ConfigError(f"{key} is not a connection URI: expected <type>://[user[:password]@]host[:port]/<database>")
        try:
            info = settings.parse_conn_uri(conn_id, value)
        except (ValueError, TypeError) as exc:
            # urlsplit's port check, int() of a JSON port: never repeat the value (it may hold a password)
            raise ConfigError(f"{key} is malformed: {str(exc).split(':')[0]}") from None
        if info.conn_type.split("+")[0] not in KNOWN_CONN_TYPES:
            raise ConfigError(f"{key}: unknown connection type {info.conn_type!r} "
                              f"(expected one of postgres, mysql, mariadb, http(s), ...)")
        if info.conn_type in ("postgres", "postgresql", "mysql", "mariadb") and not info.schema:
            raise ConfigError(f"{key} names no database (the path after host:port)")
        checked.append(conn_id)
    return checked


def dbt_vars() -> dict:
    """The vars of dbt_project.yml (the nightly run passes no other value for these)."""
    data = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text(encoding="utf-8")) or {}
    return dict(data.get("vars") or {})


def scorecards(seeds_dir: Path | None = None) -> dict[str, set[str]]:
    """scorecard code -> poverty lines with likelihoods, from the seeds."""
    seeds_dir = seeds_dir or DBT_PROJECT_DIR / "seeds"
    lines: dict[str, set[str]] = {}
    with open(seeds_dir / "ppi_scorecard_likelihoods.csv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            lines.setdefault(row["scorecard_code"].strip(), set()).add(row["poverty_line"].strip())
    with open(seeds_dir / "ppi_scorecard_points.csv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            lines.setdefault(row["scorecard_code"].strip(), set())
    return lines


def check_ppi(vars_: dict | None = None, seeds_dir: Path | None = None) -> dict:
    vars_ = dbt_vars() if vars_ is None else vars_
    known = scorecards(seeds_dir)
    where = "dbt var in dbt_project/dbt_project.yml"
    card = str(vars_.get("ppi_default_scorecard") or "").strip()
    if card not in known:
        raise ConfigError(f"ppi_default_scorecard = {card!r} ({where}) is not a scorecard of "
                          f"seeds/ppi_scorecard_points.csv: known are {', '.join(sorted(known))}")
    line = str(vars_.get("ppi_poverty_line") or "").strip()
    if not line:
        raise ConfigError(f"ppi_poverty_line ({where}) is empty: name a poverty line of scorecard {card} "
                          f"({', '.join(sorted(known[card])) or 'none'})")
    if line not in known[card]:
        raise ConfigError(f"ppi_poverty_line = {line!r} ({where}) has no likelihoods for scorecard {card} in "
                          f"seeds/ppi_scorecard_likelihoods.csv: known are {', '.join(sorted(known[card])) or 'none'}")
    return {"ppi_default_scorecard": card, "ppi_poverty_line": line}


def check_min_cell_n() -> dict:
    """SPM_MIN_CELL_N, the smallest number of clients whose means kpi_client_outcomes shows: a whole number >= 1."""
    raw = settings.get("SPM_MIN_CELL_N")
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"SPM_MIN_CELL_N must be a whole number of clients (1 or more), got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"SPM_MIN_CELL_N must be 1 or more (1 shows every mean), got {value}")
    return {"min_cell_n": value}


def branch_access_file() -> Path:
    return Path(settings.get("SPM_SUPERSET_BRANCH_ACCESS") or DEFAULT_BRANCH_ACCESS_FILE)


def file_branches(path: Path) -> dict[str, list[int]]:
    """role name -> branch and region ids of the branch-access file (its own validation is dashboards/access.py's)."""
    setting = f"SPM_SUPERSET_BRANCH_ACCESS ({path})"
    if not path.is_file():
        raise ConfigError(f"{setting} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{setting} is not valid YAML: {str(exc).splitlines()[0]}") from None
    out: dict[str, list[int]] = {}
    entries = data.get("branch_roles") if isinstance(data, dict) else None
    for i, entry in enumerate(entries or [], start=1):
        if not isinstance(entry, dict) or not any(isinstance(entry.get(k), list) for k in ("branch_ids", "region_ids")):
            raise ConfigError(f"{setting}: branch_roles entry {i} has no list branch_ids or region_ids")
        # region ids are m_office ids too (the offices directly under the head office)
        out[str(entry.get("name") or f"entry {i}")] = [*(entry.get("branch_ids") or []), *(entry.get("region_ids") or [])]
    return out


def check_branches(conn: psycopg.Connection | None, path: Path | None = None) -> dict:
    """Branch-access file and meta.branch_access name only branches of the MIS (once raw_mis.m_office exists)."""
    path = path or branch_access_file()
    in_file = file_branches(path)
    if conn is None or conn.execute("SELECT to_regclass('raw_mis.m_office') IS NULL").fetchone()[0]:
        log.info("preflight: no raw_mis.m_office yet, branch ids not checked against the MIS")
        return {"branch_roles": len(in_file), "checked": False}
    known = {int(r[0]) for r in conn.execute("SELECT id FROM raw_mis.m_office WHERE NOT _deleted").fetchall()}
    for role, ids in in_file.items():
        unknown = [b for b in ids if not isinstance(b, int) or b not in known]
        if unknown:
            raise ConfigError(f"SPM_SUPERSET_BRANCH_ACCESS ({path}): role {role!r} names unknown branch(es) "
                              f"{', '.join(map(str, unknown))} (m_office ids are {', '.join(map(str, sorted(known)))})")
    if not conn.execute("SELECT to_regclass('meta.branch_access') IS NULL").fetchone()[0]:
        rows = conn.execute("""SELECT role_name, array_agg(branch_id ORDER BY branch_id) FROM meta.branch_access
                               WHERE NOT (branch_id = ANY(%s)) GROUP BY role_name ORDER BY 1""",
                            (sorted(known),)).fetchall()
        if rows:
            role, ids = rows[0]
            raise ConfigError(f"meta.branch_access: role {role!r} names unknown branch(es) {', '.join(map(str, ids))} "
                              "(fix it with roles.set_branch_access)")
    return {"branch_roles": len(in_file), "checked": True}


def check_pseudonym_key() -> None:
    key = settings.get("SPM_PSEUDONYM_KEY")
    if len(key) < MIN_PSEUDONYM_KEY_CHARS:
        raise ConfigError(f"SPM_PSEUDONYM_KEY is {'not set' if not key else 'too short'}: it keys the account-number "
                          f"pseudonyms (at least {MIN_PSEUDONYM_KEY_CHARS} characters; generated into "
                          f"{settings.local_dir() / 'secrets.env'} by the project's commands)")


def run(conn: psycopg.Connection | None = None) -> dict:
    """Every check, in order; the first wrong setting raises ConfigError."""
    result = {"connections": check_connections()}
    result.update(check_ppi())
    check_pseudonym_key()
    result.update(check_branches(conn))
    return result
