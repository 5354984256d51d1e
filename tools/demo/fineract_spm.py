"""SPM data kept inside the demo MIS: Fineract's survey module and a client datatable.

Why a module of its own: the default demo MIS (fineract.py) must not change;
this adds, to an already generated demo Fineract database, what an MFI that
records the PPI in Fineract itself has (issue 14, part 4):

* the survey module's tables (m_surveys, m_survey_components,
  m_survey_questions, m_survey_responses, m_survey_lookup_tables,
  m_survey_scorecards) with Fineract's column names and types (Liquibase
  tenant changelog 0001 + 0023 + 0117), holding one PPI survey built from a
  scorecard of seeds/ppi_scorecard_*.csv (its ten questions, each answer with
  its points, and a lookup table per poverty line: score = likelihood in %),
  one survey that is not a PPI (no lookup rows), and answers for a
  deterministic subset of clients. Clients that also have Kobo surveys (read
  from the drop folder, when given) get an MIS interview on the same day as a
  Kobo one or on another day. One submission misses a question (quarantined);
* a `client_spm` datatable (one row per client: household size, monthly
  income, rural/urban, business type, plus a contact name the warehouse must
  never read) registered in x_registered_table, as Fineract registers
  datatables.

Deterministic for a given (database, seed, as_of, drop folder). PostgreSQL;
`copy_spm_to_mysql` copies the same tables to MariaDB/MySQL after
fineract.copy_to_mysql.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import random
from decimal import Decimal
from pathlib import Path

import psycopg

from tools.demo import fineract_schema as S
from tools.demo.surveys import CURRENT_SCORECARD, SEEDS_DIR, read_clients

log = logging.getLogger(__name__)

# table -> (column, PostgreSQL type, constraint), Fineract's columns (Liquibase 0001_initial_schema; the
# warehouse reads fewer: see plugins/spm_warehouse/sources/fineract_tables.py)
MODULE_COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "m_surveys": [
        ("id", "bigint", "NOT NULL"), ("a_key", "varchar(32)", "NOT NULL"), ("a_name", "varchar(255)", "NOT NULL"),
        ("description", "varchar(4000)", ""), ("country_code", "varchar(2)", "NOT NULL"),
        ("valid_from", "date", ""), ("valid_to", "date", ""),
    ],
    "m_survey_components": [
        ("id", "bigint", "NOT NULL"), ("survey_id", "bigint", "NOT NULL"), ("a_key", "varchar(32)", "NOT NULL"),
        ("a_text", "varchar(255)", "NOT NULL"), ("description", "varchar(4000)", ""),
        ("sequence_no", "integer", "NOT NULL"),
    ],
    "m_survey_questions": [
        ("id", "bigint", "NOT NULL"), ("survey_id", "bigint", "NOT NULL"), ("component_key", "varchar(32)", ""),
        ("a_key", "varchar(32)", "NOT NULL"), ("a_text", "varchar(255)", "NOT NULL"),
        ("description", "varchar(4000)", ""), ("sequence_no", "integer", "NOT NULL"),
    ],
    "m_survey_responses": [
        ("id", "bigint", "NOT NULL"), ("question_id", "bigint", "NOT NULL"), ("a_text", "varchar(255)", "NOT NULL"),
        ("a_value", "integer", "NOT NULL"), ("sequence_no", "integer", "NOT NULL"),
    ],
    "m_survey_lookup_tables": [
        ("id", "bigint", "NOT NULL"), ("survey_id", "bigint", "NOT NULL"), ("a_key", "varchar(255)", "NOT NULL"),
        ("description", "integer", ""), ("value_from", "integer", "NOT NULL"), ("value_to", "integer", "NOT NULL"),
        ("score", "numeric(5,2)", "NOT NULL"),
    ],
    "m_survey_scorecards": [
        ("id", "bigint", "NOT NULL"), ("survey_id", "bigint", "NOT NULL"), ("question_id", "bigint", "NOT NULL"),
        ("response_id", "bigint", "NOT NULL"), ("user_id", "bigint", "NOT NULL"), ("client_id", "bigint", "NOT NULL"),
        ("created_on", "timestamp", ""), ("a_value", "integer", "NOT NULL"),
    ],
    "x_registered_table": [
        ("registered_table_name", "varchar(50)", "NOT NULL"), ("application_table_name", "varchar(50)", "NOT NULL"),
        ("entity_subtype", "varchar(50)", ""), ("category", "integer", "NOT NULL DEFAULT 100"),
    ],
    # a one-row-per-client datatable as the Mifos X UI creates it (client_id is the key)
    "client_spm": [
        ("client_id", "bigint", "NOT NULL"), ("household_size", "integer", ""),
        ("monthly_income", "numeric(19,6)", ""), ("area", "varchar(10)", ""),
        ("business_type", "varchar(50)", ""), ("contact_person", "varchar(100)", ""),
        ("created_at", "timestamp", ""), ("updated_at", "timestamp", ""),
    ],
}
MODULE_KEYS = {t: ("id",) for t in MODULE_COLUMNS}
MODULE_KEYS["x_registered_table"] = ("registered_table_name",)
MODULE_KEYS["client_spm"] = ("client_id",)
PPI_SURVEY_ID = 1
OTHER_SURVEY_ID = 2
BUSINESS_TYPES = ("trade", "agriculture", "services", "manufacturing", "livestock")
STAFF_USER_ID = 1


def _read_csv(name: str) -> list[dict]:
    with open(SEEDS_DIR / name, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _kobo_interviews(drop_dir: Path | None) -> dict[str, list[dt.date]]:
    """account_no -> interview dates of the Kobo JSON exports in the drop folder (top level)."""
    out: dict[str, list[dt.date]] = {}
    if drop_dir is None:
        return out
    for path in sorted(Path(drop_dir).glob("*.json")):
        try:
            items = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        for item in items if isinstance(items, list) else []:
            account, today = item.get("client/account_no"), item.get("today")
            if account and today:
                out.setdefault(str(account), []).append(dt.date.fromisoformat(str(today)[:10]))
    return {k: sorted(set(v)) for k, v in out.items()}


def _create_tables(conn: psycopg.Connection) -> None:
    for table in reversed(list(MODULE_COLUMNS)):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    for table, cols in MODULE_COLUMNS.items():
        body = ",\n    ".join(f"{n} {t} {extra}".rstrip() for n, t, extra in cols)
        conn.execute(f"CREATE TABLE {table} (\n    {body},\n    PRIMARY KEY ({', '.join(MODULE_KEYS[table])})\n)")


def _insert(conn: psycopg.Connection, table: str, rows: list[tuple]) -> int:
    if not rows:
        return 0
    names = [c[0] for c in MODULE_COLUMNS[table]]
    with conn.cursor() as cur:
        with cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)
    return len(rows)


def add_mis_surveys(conn: psycopg.Connection, seed: int, as_of: dt.date, survey_drop_dir: Path | None = None,
                    scorecard: str = CURRENT_SCORECARD, share: float = 0.4) -> dict[str, int]:
    """Add the survey module's tables and the client_spm datatable to the demo MIS of `conn`; returns rows per table.

    `survey_drop_dir`: where tools.demo.surveys wrote the Kobo exports (to give some Kobo-surveyed
    clients an MIS interview on the same day as a Kobo one, others on another day); None: no Kobo
    overlap is planned. `share`: the part of the activated clients with MIS PPI interviews.
    Replaces the tables when they exist (a rerun gives the same rows). Commits when done.
    """
    points_rows = [r for r in _read_csv("ppi_scorecard_points.csv") if r["scorecard_code"] == scorecard]
    if not points_rows:
        raise ValueError(f"scorecard {scorecard} is not in seeds/ppi_scorecard_points.csv")
    likelihood_rows = [r for r in _read_csv("ppi_scorecard_likelihoods.csv") if r["scorecard_code"] == scorecard]
    clients = [c for c in read_clients(conn) if c.activation_date <= as_of]
    if not clients:
        raise ValueError("the demo MIS has no activated clients to survey")
    rng = random.Random(f"fineract_spm:{seed}:{as_of.isoformat()}")
    kobo = _kobo_interviews(survey_drop_dir)

    _create_tables(conn)
    rows: dict[str, list[tuple]] = {t: [] for t in MODULE_COLUMNS}
    rows["m_surveys"] += [
        (PPI_SURVEY_ID, scorecard, f"Poverty Probability Index ({scorecard}, synthetic demo scorecard)",
         "Demo PPI survey built from seeds/ppi_scorecard_points.csv", "KE", dt.date(2020, 1, 1), None),
        (OTHER_SURVEY_ID, "CLIENT_SAT", "Client satisfaction", "Not a PPI: no lookup table", "KE",
         dt.date(2020, 1, 1), None),
    ]
    rows["m_survey_components"] += [(1, PPI_SURVEY_ID, "household", "Household", None, 1),
                                     (2, OTHER_SURVEY_ID, "service", "Service", None, 1)]
    # questions q01..q10, responses = the scorecard's answers with their points
    questions: dict[str, int] = {}
    responses: dict[int, list[tuple[int, int]]] = {}  # question id -> [(response id, points)] poorest first
    by_question: dict[str, list[tuple[int, str]]] = {}
    for r in points_rows:
        by_question.setdefault(r["question_code"], []).append((int(r["points"]), r["answer_code"]))
    response_id = 1
    for n, (code, answers) in enumerate(sorted(by_question.items()), start=1):
        qid = 100 + n
        questions[code] = qid
        rows["m_survey_questions"].append((qid, PPI_SURVEY_ID, "household", code, f"PPI question {code}", None, n))
        for m, (pts, answer_code) in enumerate(sorted(answers), start=1):
            rows["m_survey_responses"].append((response_id, qid, f"answer {answer_code}", pts, m))
            responses.setdefault(qid, []).append((response_id, pts))
            response_id += 1
    sat_q = 201
    rows["m_survey_questions"].append((sat_q, OTHER_SURVEY_ID, "service", "nps", "How likely to recommend us?",
                                       None, 1))
    sat_responses = []
    for pts in range(0, 11):
        rows["m_survey_responses"].append((response_id, sat_q, str(pts), pts, pts + 1))
        sat_responses.append((response_id, pts))
        response_id += 1
    # the lookup table of every poverty line of the scorecard: score = the likelihood in percent
    for n, r in enumerate(sorted(likelihood_rows, key=lambda r: (r["poverty_line"], int(r["score_from"]))), start=1):
        pct = (Decimal(r["likelihood"]) * 100).quantize(Decimal("0.01"))
        rows["m_survey_lookup_tables"].append((n, PPI_SURVEY_ID, r["poverty_line"], None, int(r["score_from"]),
                                               int(r["score_to"]), pct))

    scorecard_id = 1

    def interview(client_id: int, day: dt.date, minute: int, faulty: bool = False) -> None:
        nonlocal scorecard_id
        created = dt.datetime.combine(day, dt.time(9, 0)) + dt.timedelta(minutes=minute)
        wealth = rng.random()
        for code, qid in sorted(questions.items()):
            if faulty and code == "q10":
                continue  # a question left unanswered: the warehouse quarantines the submission
            choices = responses[qid]
            rid, pts = choices[min(len(choices) - 1, int(wealth * len(choices)))]
            rows["m_survey_scorecards"].append((scorecard_id, PPI_SURVEY_ID, qid, rid, STAFF_USER_ID, client_id,
                                                created, pts))
            scorecard_id += 1

    planted_fault = False
    same_day = other_day = 0
    for client in clients:
        if rng.random() >= share:
            continue
        span = max((as_of - client.activation_date).days, 0)
        kobo_days = [d for d in kobo.get(client.account_no, []) if client.activation_date <= d <= as_of]
        if kobo_days and rng.random() < 0.5:
            day = rng.choice(kobo_days)  # the same day as a Kobo interview: the MIS one counts as later
            same_day += 1
        else:
            day = client.activation_date + dt.timedelta(days=rng.randint(0, span))
            other_day += int(bool(kobo_days))
        faulty = not planted_fault and span > 30
        planted_fault = planted_fault or faulty
        interview(client.id, day, rng.randint(0, 480), faulty)
        if span > 400 and rng.random() < 0.5:  # a follow-up interview a year on
            interview(client.id, min(day + dt.timedelta(days=365), as_of), rng.randint(0, 480))
        if rng.random() < 0.2:  # the satisfaction survey (not a PPI: never scored nor quarantined)
            rid, pts = rng.choice(sat_responses)
            rows["m_survey_scorecards"].append((scorecard_id, OTHER_SURVEY_ID, sat_q, rid, STAFF_USER_ID, client.id,
                                                dt.datetime.combine(day, dt.time(16, 0)), pts))
            scorecard_id += 1

    # the client_spm datatable: most activated clients have a row
    rows["x_registered_table"].append(("client_spm", "m_client", None, 100))
    for client in clients:
        if rng.random() < 0.1:
            continue
        size = rng.randint(1, 9)
        income = Decimal(rng.randint(30, 400) * 50)
        stamp = dt.datetime.combine(client.activation_date, dt.time(10, 0))
        rows["client_spm"].append((client.id, size, income, rng.choice(("Rural", "Rural", "Urban")),
                                   rng.choice(BUSINESS_TYPES), f"Demo contact {client.id}", stamp, stamp))

    counts = {table: _insert(conn, table, table_rows) for table, table_rows in rows.items()}
    conn.commit()
    log.info("demo MIS surveys: %s (MIS interviews on a Kobo day: %d, other clients with Kobo surveys: %d)",
             counts, same_day, other_day)
    return counts


def copy_spm_to_mysql(pg_conn: psycopg.Connection, mysql_conn) -> dict[str, int]:
    """Copy the tables add_mis_surveys made into the current database of a PyMySQL connection (Fineract's MySQL types)."""
    counts: dict[str, int] = {}
    with mysql_conn.cursor() as mcur:
        for table, cols in MODULE_COLUMNS.items():
            mcur.execute(f"DROP TABLE IF EXISTS `{table}`")
            body = [f"`{n}` {S.mysql_type(t)} {extra}".rstrip() for n, t, extra in cols]
            body.append(f"PRIMARY KEY ({', '.join('`' + k + '`' for k in MODULE_KEYS[table])})")
            mcur.execute(f"CREATE TABLE `{table}` (\n    " + ",\n    ".join(body)
                         + "\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
            names = [c[0] for c in cols]
            data = pg_conn.execute(f"SELECT {', '.join(names)} FROM {table} ORDER BY 1").fetchall()
            if data:
                mcur.executemany(f"INSERT INTO `{table}` ({', '.join('`' + n + '`' for n in names)}) "
                                 f"VALUES ({', '.join(['%s'] * len(names))})", data)
            counts[table] = len(data)
    mysql_conn.commit()
    pg_conn.commit()
    return counts
