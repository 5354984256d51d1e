"""A small hand-made Fineract world for the star schema and KPI tests (no tests here).

Why hand-made rows: every tricky rule of the KPI contract (reversals,
write-offs, partial payments across month ends, an installment due exactly on
a period end, a backdated repayment, a client closed and reactivated, a branch
transfer, the latest survey) appears once, with numbers small enough to work
out by hand in the test files. The rows go straight into raw_mis tables
created exactly as the MIS extraction creates them (sources.fineract specs and
load.ensure_raw_table), surveys go through the real file-drop loader, and dbt
runs as a subprocess through spm_warehouse.build, like the nightly DAG.

The world is loaded in two nights:
  night 1 (as_of 2024-04-30, loaded 2024-05-01 02:00 UTC): what the MIS held then;
  night 2 (as_of 2024-06-30, loaded 2024-07-01 02:00 UTC): reactivation, branch
    transfer, a reversal and its correction, a backdated repayment, a write-off,
    a new loan, more surveys.
Night 1's marts are copied to schema `night1` before night 2 runs.
"""

from __future__ import annotations

import csv
import json
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from spm_warehouse import load
from spm_warehouse.build import DbtResult, run_dbt
from spm_warehouse.settings import parse_conn_uri
from spm_warehouse.sources import kobo
from spm_warehouse.sources.fineract import TABLES_BY_NAME

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "dbt_project" / "seeds"
NIGHT1, NIGHT2 = date(2024, 4, 30), date(2024, 6, 30)
LOADED1 = datetime(2024, 5, 1, 2, 0, tzinfo=timezone.utc)
LOADED2 = datetime(2024, 7, 1, 2, 0, tzinfo=timezone.utc)
MARTS = ("fct_portfolio_month", "kpi_branch_month", "kpi_loan_officer_month", "kpi_product_month",
         "kpi_segment_month", "fct_loan", "fct_loan_transaction", "dim_client", "dim_branch",
         "dim_loan_officer", "dim_product", "dim_date")
# Our models and everything upstream; only our own tests (the survey models are built, not tested, here).
CORE_SELECTION = ["+path:models/marts/core", "+path:models/marts/kpi", "path:models/staging/fineract",
                  "path:models/intermediate/fineract", "path:models/intermediate/loans",
                  "path:models/intermediate/clients", "path:models/intermediate/kpi", "path:tests/core",
                  "path:tests/kpi", "path:seeds/_seeds__fineract.yml"]
SURVEY_ASSET = "aStarSchemaTest"


def ts(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, 0, tzinfo=timezone.utc)


def d(text: str) -> date:
    return date.fromisoformat(text)


# ---------------------------------------------------------------------------------------------
# the world's rows


REFERENCE = {
    "m_office": [
        {"id": 1, "parent_id": None, "hierarchy": ".", "name": "Head Office", "opening_date": d("2020-01-01")},
        {"id": 2, "parent_id": 1, "hierarchy": ".2.", "name": "East Region", "opening_date": d("2020-01-01")},
        {"id": 3, "parent_id": 2, "hierarchy": ".2.3.", "name": "Branch A", "opening_date": d("2020-01-01")},
        {"id": 4, "parent_id": 2, "hierarchy": ".2.4.", "name": "Branch B", "opening_date": d("2020-01-01")},
    ],
    "m_staff": [
        {"id": 101, "office_id": 3, "display_name": "Officer Amina", "is_loan_officer": True, "is_active": True},
        {"id": 102, "office_id": 4, "display_name": "Officer Baraka", "is_loan_officer": True, "is_active": True},
    ],
    "m_code": [{"id": 4, "code_name": "Gender"}, {"id": 17, "code_name": "ClientClassification"},
               {"id": 3, "code_name": "LoanPurpose"}],
    "m_code_value": [
        {"id": 41, "code_id": 4, "code_value": "Female"}, {"id": 42, "code_id": 4, "code_value": "male"},
        {"id": 171, "code_id": 17, "code_value": "Rural"}, {"id": 172, "code_id": 17, "code_value": "Urban"},
        {"id": 31, "code_id": 3, "code_value": "Agriculture"},
    ],
    "m_product_loan": [{"id": 1, "short_name": "ML", "name": "Monthly loan", "currency_code": "KES",
                        "repay_every": 1, "repayment_period_frequency_enum": 2, "number_of_repayments": 6}],
}


def client(cid: int, office: int, staff: int | None, gender: int | None, area: int | None, status: int,
           submitted: str, activation: str | None = None, closed: str | None = None,
           joining: str | None = None, reactivated: str | None = None, modified: datetime | None = None) -> dict:
    return {"id": cid, "account_no": f"{cid:09d}", "status_enum": status, "office_id": office, "staff_id": staff,
            "gender_cv_id": gender, "client_classification_cv_id": area, "date_of_birth": d("1990-06-15"),
            "submittedon_date": d(submitted), "activation_date": d(activation) if activation else None,
            "office_joining_date": d(joining or activation) if (joining or activation) else None,
            "closedon_date": d(closed) if closed else None,
            "reactivated_on_date": d(reactivated) if reactivated else None,
            "created_on_utc": ts(d(submitted)), "last_modified_on_utc": modified or ts(d(activation or submitted))}


def loan(lid: int, cid: int, officer: int | None, status: int, principal: int, disbursed: str,
         n: int, closed: str | None = None, written_off: str | None = None, modified: datetime | None = None) -> dict:
    day = d(disbursed)
    return {"id": lid, "account_no": f"L{lid:08d}", "client_id": cid, "product_id": 1, "loan_officer_id": officer,
            "loanpurpose_cv_id": 31, "loan_status_id": status, "loan_type_enum": 1, "currency_code": "KES",
            "principal_amount_proposed": principal, "principal_amount": principal, "approved_principal": principal,
            "term_frequency": n, "term_period_frequency_enum": 2, "repay_every": 1,
            "repayment_period_frequency_enum": 2, "number_of_repayments": n, "submittedon_date": day,
            "approvedon_date": day, "disbursedon_date": day, "closedon_date": d(closed) if closed else None,
            "writtenoffon_date": d(written_off) if written_off else None, "loan_counter": None,
            "created_on_utc": ts(day, 8), "last_modified_on_utc": modified or ts(day, 8)}


def schedule(first_id: int, lid: int, disbursed: str, dues: list[tuple[str, int]]) -> list[dict]:
    rows, previous = [], d(disbursed)
    for k, (due, principal) in enumerate(dues, start=1):
        rows.append({"id": first_id + k, "loan_id": lid, "fromdate": previous, "duedate": d(due), "installment": k,
                     "principal_amount": principal, "interest_amount": 0, "completed_derived": False,
                     "created_on_utc": ts(d(disbursed), 8), "last_modified_on_utc": ts(d(disbursed), 8)})
        previous = d(due)
    return rows


def txn(tid: int, lid: int, type_enum: int, day: str, amount: int, principal: int | None = None,
        reversed_on: str | None = None, created: datetime | None = None) -> dict:
    created = created or ts(d(day), 11)
    return {"id": tid, "loan_id": lid, "office_id": 3, "is_reversed": reversed_on is not None,
            "transaction_type_enum": type_enum, "transaction_date": d(day), "amount": amount,
            "principal_portion_derived": amount if principal is None else principal, "interest_portion_derived": 0,
            "submitted_on_date": created.date(), "reversed_on_date": d(reversed_on) if reversed_on else None,
            "created_on_utc": created,
            "last_modified_on_utc": ts(d(reversed_on), 9) if reversed_on else created}


F, M, RURAL, URBAN = 41, 42, 171, 172

NIGHT1_ROWS: dict[str, list[dict]] = {
    **REFERENCE,
    "m_client": [
        client(1, 3, 101, F, RURAL, 300, "2024-01-02", "2024-01-10"),
        # closed on 2024-04-20 (reactivated in night 2)
        client(2, 3, 101, M, URBAN, 600, "2024-01-02", "2024-01-15", closed="2024-04-20", modified=ts(d("2024-04-20"))),
        client(3, 4, 102, F, URBAN, 300, "2024-02-01", "2024-02-20"),
        # in Branch A until its transfer to Branch B (night 2)
        client(4, 3, 101, M, RURAL, 300, "2024-01-20", "2024-02-01"),
        client(5, 3, 101, None, None, 100, "2024-03-01"),                       # pending, never active
        client(6, 4, 102, F, RURAL, 600, "2024-01-20", "2024-01-25", closed="2024-03-15",
               modified=ts(d("2024-03-15"))),
    ],
    "m_loan": [
        loan(1, 1, 101, 300, 1200, "2024-01-20", 6),
        loan(2, 2, 101, 600, 600, "2024-01-20", 3, closed="2024-04-15", modified=ts(d("2024-04-15"))),
        loan(3, 3, 102, 300, 900, "2024-03-01", 3),
        loan(4, 4, 101, 300, 1000, "2024-02-10", 4, modified=ts(d("2024-04-10"))),
    ],
    "m_loan_repayment_schedule": [
        *schedule(100, 1, "2024-01-20", [("2024-02-20", 200), ("2024-03-20", 200), ("2024-04-20", 200),
                                         ("2024-05-20", 200), ("2024-06-20", 200), ("2024-07-20", 200)]),
        *schedule(200, 2, "2024-01-20", [("2024-02-20", 200), ("2024-03-20", 200), ("2024-04-20", 200)]),
        # installment 1 is due exactly on the period end 2024-03-31
        *schedule(300, 3, "2024-03-01", [("2024-03-31", 300), ("2024-04-30", 300), ("2024-05-31", 300)]),
        *schedule(400, 4, "2024-02-10", [("2024-03-10", 250), ("2024-04-10", 250), ("2024-05-10", 250),
                                         ("2024-06-10", 250)]),
    ],
    "m_loan_transaction": [
        txn(1001, 1, 1, "2024-01-20", 1200),
        txn(1002, 1, 2, "2024-02-20", 200),
        txn(1003, 1, 2, "2024-03-20", 200),
        txn(1004, 1, 2, "2024-04-25", 100),       # partial: installment 3 half paid at the April period end
        txn(2001, 2, 1, "2024-01-20", 600),
        txn(2002, 2, 2, "2024-02-20", 200),
        txn(2003, 2, 2, "2024-03-20", 200),
        txn(2004, 2, 2, "2024-04-15", 200),       # repaid in full, early
        txn(3001, 3, 1, "2024-03-01", 900),       # never repaid
        txn(4001, 4, 1, "2024-02-10", 1000),
        txn(4002, 4, 2, "2024-03-10", 250),
        txn(4003, 4, 2, "2024-04-10", 250),       # reversed in night 2
    ],
}

NIGHT2_ROWS: dict[str, list[dict]] = {
    "m_client": [
        # reactivated: Fineract clears the closure, the client is activated again
        client(2, 3, 101, M, URBAN, 300, "2024-01-02", "2024-05-10", reactivated="2024-05-10",
               modified=ts(d("2024-05-10"))),
        # transferred to Branch B (and its officer) on 2024-05-01
        client(4, 4, 102, M, RURAL, 300, "2024-01-20", "2024-02-01", joining="2024-05-01",
               modified=ts(d("2024-05-01"), 9)),
    ],
    "m_loan": [
        loan(1, 1, 101, 300, 1200, "2024-01-20", 6, modified=ts(d("2024-05-05"))),
        loan(3, 3, 102, 601, 900, "2024-03-01", 3, written_off="2024-06-10", modified=ts(d("2024-06-10"))),
        loan(4, 4, 102, 300, 1000, "2024-02-10", 4, modified=ts(d("2024-05-20"))),
        loan(5, 2, None, 300, 500, "2024-05-15", 2),      # follow-on loan of the reactivated client, no officer
    ],
    "m_loan_repayment_schedule": [
        *schedule(500, 5, "2024-05-15", [("2024-06-15", 250), ("2024-07-15", 250)]),
    ],
    "m_loan_transaction": [
        txn(1005, 1, 2, "2024-05-05", 100),                                 # completes installment 3 in May
        txn(3002, 3, 6, "2024-06-10", 900),                                 # write-off
        txn(4003, 4, 2, "2024-04-10", 250, reversed_on="2024-05-02"),       # the reversal
        txn(4004, 4, 2, "2024-04-12", 250, created=ts(d("2024-05-02"))),    # its correction, entered later
        txn(4005, 4, 2, "2024-05-10", 250),
        txn(4006, 4, 2, "2024-03-25", 100, created=ts(d("2024-05-20"))),    # backdated into March
        txn(5001, 5, 1, "2024-05-15", 500),
        txn(5002, 5, 2, "2024-06-15", 250),
    ],
}


# ---------------------------------------------------------------------------------------------
# surveys (PPI) through the real loader


def read_seed(name: str) -> list[dict]:
    with open(SEEDS / name, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


SCORECARD = "DEMO_SYNTH_2024"


def answer_codes() -> dict[str, list[str]]:
    """question -> answer codes of the scorecard, poorest (fewest points) first."""
    out: dict[str, list[tuple[int, str]]] = {}
    for r in read_seed("ppi_scorecard_points.csv"):
        if r["scorecard_code"] == SCORECARD:
            out.setdefault(r["question_code"], []).append((int(r["points"]), r["answer_code"]))
    return {q: [a for _, a in sorted(v)] for q, v in sorted(out.items())}


def answers(level: int) -> dict[str, str]:
    """The first `level` questions get their second-poorest answer, the others the poorest one:
    each level scores a few points more (a less likely poor household)."""
    return {q: codes[1 if i < level else 0] for i, (q, codes) in enumerate(answer_codes().items())}


def likelihood_of(level: int, line: str = "national") -> Decimal:
    """Poverty likelihood of `answers(level)`, worked out from the seed files."""
    points = {(r["question_code"], r["answer_code"]): int(r["points"])
              for r in read_seed("ppi_scorecard_points.csv") if r["scorecard_code"] == SCORECARD}
    score = sum(points[(q, a)] for q, a in answers(level).items())
    for r in read_seed("ppi_scorecard_likelihoods.csv"):
        if (r["scorecard_code"] == SCORECARD and r["poverty_line"] == line
                and int(r["score_from"]) <= score <= int(r["score_to"])):
            return Decimal(r["likelihood"])
    raise AssertionError(f"no likelihood for score {score}")


def band_of(likelihood: Decimal) -> str:
    for r in read_seed("poverty_likelihood_bands.csv"):
        if r["likelihood_from"] and Decimal(r["likelihood_from"]) <= likelihood < Decimal(r["likelihood_to"]):
            return r["band_code"]
    raise AssertionError(likelihood)


def survey(kobo_id: int, client_id: int, today: str, level: int, submitted: str) -> dict:
    payload = {
        "_id": kobo_id, "_xform_id_string": SURVEY_ASSET, "__version__": "v1",
        "start": f"{today}T09:00:00.000+03:00", "today": today, "survey/type": "baseline",
        "client/account_no": f"{client_id:09d}", "ppi/scorecard": SCORECARD,
        **{f"ppi/{q}": a for q, a in answers(level).items()},
        "hh/members": "5", "hh/children_school_age": "2", "hh/children_in_school": "1",
        "income/monthly_hh_income": "1000", "_submission_time": submitted,
        "meta/instanceID": f"uuid:star-{kobo_id}",
    }
    return payload


# level per survey (distinct likelihoods): S1 (client 1, before its activation), S2..S4 on the same
# day (S3 and S4 with the same submission time), S5 after as_of; C3 and C4 one survey each.
SURVEY_LEVELS = {"S1": 10, "S2": 8, "S3": 9, "S4": 7, "S5": 0, "C3": 5, "C4": 9}
NIGHT1_SURVEYS = [
    survey(501, 1, "2024-01-05", SURVEY_LEVELS["S1"], "2024-01-05T12:00:00"),
    survey(531, 3, "2024-03-05", SURVEY_LEVELS["C3"], "2024-03-05T12:00:00"),
    survey(541, 4, "2024-02-05", SURVEY_LEVELS["C4"], "2024-02-05T12:00:00"),
]
NIGHT2_SURVEYS = [
    survey(502, 1, "2024-05-15", SURVEY_LEVELS["S2"], "2024-05-15T12:00:00"),
    survey(503, 1, "2024-05-15", SURVEY_LEVELS["S3"], "2024-05-15T15:00:00"),   # later submission wins ...
    survey(504, 1, "2024-05-15", SURVEY_LEVELS["S4"], "2024-05-15T15:00:00"),   # ... ties go to the higher _id
    survey(505, 1, "2024-07-02", SURVEY_LEVELS["S5"], "2024-07-02T12:00:00"),   # after as_of: ignored
]


# ---------------------------------------------------------------------------------------------
# loading and running


def create_database(server_url: str, label: str, template: str | None = None) -> str:
    """A new database on the test server (spm_test_<label>_<random>); returns its name."""
    name = f"spm_test_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        conn.execute(stmt)
    return name


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def database_url(server_url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def upsert_raw(conn: psycopg.Connection, rows: dict[str, list[dict]], extracted_at: datetime) -> None:
    """Merge rows into raw_mis like the extraction does (by primary key), stamped `extracted_at`."""
    for spec in TABLES_BY_NAME.values():
        load.ensure_raw_table(conn, spec)
    for table, table_rows in rows.items():
        key = TABLES_BY_NAME[table].key
        for row in table_rows:
            cols = list(row) + ["_extracted_at", "_run_id", "_deleted"]
            values = [row[c] for c in row] + [extracted_at, f"test-{extracted_at:%Y%m%d}", False]
            updates = sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in cols if c not in key)
            conn.execute(
                sql.SQL("INSERT INTO raw_mis.{} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}").format(
                    sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, cols)),
                    sql.SQL(", ").join(sql.Placeholder() * len(cols)),
                    sql.SQL(", ").join(map(sql.Identifier, key)), updates),
                values)
    conn.commit()


def load_surveys(conn: psycopg.Connection, folder: Path, name: str, payloads: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{SURVEY_ASSET}__{name}.json").write_text(json.dumps(payloads), encoding="utf-8")
    counts = kobo.extract_surveys(None, conn, f"test-{name}", folder)
    assert counts.get("files_loaded") == 1, counts


def dbt(url: str, as_of: date, tmp: Path, args: list[str] | None = None, select: bool = True) -> DbtResult:
    """`dbt build` of the core models (or `args`) for as_of, through the project's runner."""
    wh = parse_conn_uri("warehouse", url)
    command = args or ["build"]
    if select and command[0] in ("build", "run"):
        command = [*command, "--select", *CORE_SELECTION, "--indirect-selection", "empty"]
    target = tmp / "target"  # one per database: runs are sequential, and partial parsing saves time
    result = run_dbt(command, wh, dbt_vars={"as_of_date": as_of.isoformat()}, target_path=target,
                     log_path=target / "logs")
    assert result.success, "dbt failed:\n" + result.log_tail[-5000:]
    return result


def query(url: str, text: str, params: tuple = ()) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(text, params).fetchall()


def copy_marts(url: str, schema: str) -> None:
    """Keep this night's marts (and the balance snapshots) in `schema` for later comparison."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for name in MARTS:
            conn.execute(sql.SQL("CREATE TABLE {}.{} AS SELECT * FROM analytics_build.{}").format(
                sql.Identifier(schema), sql.Identifier(name), sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE TABLE {}.int_loan__balance_month AS SELECT * FROM intermediate.int_loan__balance_month")
                     .format(sql.Identifier(schema)))


def fingerprint(url: str, schema: str, tables: tuple[str, ...] = MARTS) -> dict[str, list[str]]:
    """Every row of each table as text, sorted: equal fingerprints mean equal tables.

    The bookkeeping columns of incremental marts (_as_of_date, ...: which run
    wrote a row) are left out: a nightly table and a full rebuild hold the
    same data but were written by different runs.
    """
    out = {}
    with psycopg.connect(url) as conn:
        for name in tables:
            columns = [r[0] for r in conn.execute(
                """SELECT column_name FROM information_schema.columns
                   WHERE table_schema = %s AND table_name = %s AND column_name NOT LIKE '\\_%%'
                   ORDER BY ordinal_position""", (schema, name)).fetchall()]
            assert columns, f"{schema}.{name} has no columns (does it exist?)"
            rows = conn.execute(sql.SQL("SELECT ({})::text FROM {}.{} t ORDER BY 1").format(
                sql.SQL("row({})").format(sql.SQL(", ").join(sql.Identifier(c) for c in columns)),
                sql.Identifier(schema), sql.Identifier(name))).fetchall()
            out[name] = [r[0] for r in rows]
    return out


@dataclass
class World:
    server_url: str
    name: str
    url: str
    tmp: Path
    runs: list[DbtResult] = field(default_factory=list)

    def q(self, text: str, params: tuple = ()) -> list[dict]:
        return query(self.url, text, params)

    def one(self, text: str, params: tuple = ()) -> dict:
        rows = self.q(text, params)
        assert len(rows) == 1, (text, params, rows)
        return rows[0]


def build_world(server_url: str, tmp: Path) -> World:
    name = create_database(server_url, "star")
    world = World(server_url, name, database_url(server_url, name), tmp)
    try:
        with psycopg.connect(world.url) as conn:
            kobo.ensure_raw_kobo_schema(conn)
            upsert_raw(conn, NIGHT1_ROWS, LOADED1)
            load_surveys(conn, tmp / "drop", "night1", NIGHT1_SURVEYS)
        world.runs.append(dbt(world.url, NIGHT1, tmp))
        copy_marts(world.url, "night1")
        with psycopg.connect(world.url) as conn:
            upsert_raw(conn, NIGHT2_ROWS, LOADED2)
            load_surveys(conn, tmp / "drop", "night2", NIGHT2_SURVEYS)
        world.runs.append(dbt(world.url, NIGHT2, tmp))
    except BaseException:
        drop_database(server_url, name)
        raise
    return world


def clone_world(world: World, label: str) -> tuple[str, str]:
    """A copy of the world's database (CREATE DATABASE ... TEMPLATE) that a test may change."""
    name = create_database(world.server_url, label, template=world.name)
    return name, database_url(world.server_url, name)
