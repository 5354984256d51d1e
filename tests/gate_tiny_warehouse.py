"""A tiny, hand-made warehouse and source MIS for the gate, publish, roles and report tests.

Why hand-made: these tests judge the gate's and publish's own logic, so they
must be fast and must know every number; they never run dbt or Airflow.
The data follows the raw_mis contract (docs: notes/fineract_columns.md) and
the KPI contract, so every check passes on it as built:

- 2 branches (m_office 1, 2), N clients alternating between them, all
  active (status 300) except every 5th, which is closed (600);
- one loan per client: disbursed 1000 on 2024-01-10, then k principal
  repayments of 100 (k = client id mod 6), so principal_outstanding_derived
  = 1000 - 100 k; loans of closed clients are fully repaid and closed (600);
- analytics_build.fct_portfolio_month / kpi_branch_month at 2024-06-30 agree
  with that ledger; the source MIS holds the same m_client and m_loan rows.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import yaml
from psycopg import sql

from spm_warehouse.gate import THRESHOLDS_PATH
from spm_warehouse.settings import parse_conn_uri

AS_OF = date(2024, 6, 30)
RUN_ID = "manual__2024-06-30T02:00:00+00:00"
LAST_CHANGE = datetime(2024, 6, 29, 15, 0, tzinfo=timezone.utc)

RAW_DDL = """
CREATE SCHEMA IF NOT EXISTS raw_mis;
CREATE TABLE raw_mis.m_office (
    id bigint PRIMARY KEY, parent_id bigint, hierarchy varchar, name varchar, opening_date date, external_id varchar,
    _extracted_at timestamptz NOT NULL DEFAULT now(), _run_id text, _deleted boolean NOT NULL DEFAULT false);
CREATE TABLE raw_mis.m_client (
    id bigint PRIMARY KEY, account_no varchar, status_enum int, office_id bigint, staff_id bigint,
    activation_date date, closedon_date date, created_on_utc timestamptz, last_modified_on_utc timestamptz,
    _extracted_at timestamptz NOT NULL DEFAULT now(), _run_id text, _deleted boolean NOT NULL DEFAULT false);
CREATE TABLE raw_mis.m_loan (
    id bigint PRIMARY KEY, account_no varchar, client_id bigint, product_id bigint, loan_officer_id bigint,
    loan_status_id int, principal_amount numeric(19,6), disbursedon_date date, closedon_date date,
    writtenoffon_date date, principal_disbursed_derived numeric(19,6), principal_repaid_derived numeric(19,6),
    principal_outstanding_derived numeric(19,6), created_on_utc timestamptz, last_modified_on_utc timestamptz,
    _extracted_at timestamptz NOT NULL DEFAULT now(), _run_id text, _deleted boolean NOT NULL DEFAULT false);
CREATE TABLE raw_mis.m_loan_transaction (
    id bigint PRIMARY KEY, loan_id bigint, office_id bigint, is_reversed boolean, transaction_type_enum int,
    transaction_date date, amount numeric(19,6), principal_portion_derived numeric(19,6),
    interest_portion_derived numeric(19,6), created_on_utc timestamptz, last_modified_on_utc timestamptz,
    _extracted_at timestamptz NOT NULL DEFAULT now(), _run_id text, _deleted boolean NOT NULL DEFAULT false);
"""

MART_DDL = """
CREATE SCHEMA IF NOT EXISTS {build};
DROP TABLE IF EXISTS {build}.fct_portfolio_month, {build}.kpi_branch_month, {build}.dim_product;
CREATE TABLE {build}.fct_portfolio_month (
    loan_id bigint, period_end date, branch_id bigint, product_id bigint, loan_officer_id bigint,
    outstanding_principal numeric(18,2), days_in_arrears integer, is_par30 boolean);
CREATE TABLE {build}.kpi_branch_month (
    branch_id bigint, branch_name text, period_end date, active_clients integer, new_clients integer,
    exited_clients integer, retention_rate numeric, active_borrowers integer, women_borrowers integer,
    gross_loan_portfolio numeric(18,2), par30_principal numeric(18,2), par30_ratio numeric,
    ppi_assessed_clients integer, avg_poverty_likelihood numeric);
CREATE TABLE {build}.dim_product (product_id bigint, product_name text);
"""

SOURCE_DDL = """
CREATE TABLE m_client (id bigint PRIMARY KEY, account_no varchar, firstname varchar, status_enum int,
    office_id bigint, activation_date date, closedon_date date, created_on_utc timestamptz,
    last_modified_on_utc timestamptz);
CREATE TABLE m_loan (id bigint PRIMARY KEY, client_id bigint, product_id bigint, loan_status_id int,
    principal_amount numeric(19,6), principal_outstanding_derived numeric(19,6),
    created_on_utc timestamptz, last_modified_on_utc timestamptz);
"""


def clients(n: int) -> list[dict]:
    out = []
    for cid in range(1, n + 1):
        closed = cid % 5 == 0
        repayments = 10 if closed else cid % 6
        out.append({
            "id": cid, "account_no": f"{cid:09d}", "office_id": 1 + cid % 2,
            "status": 600 if closed else 300, "closed": date(2024, 5, 20) if closed else None,
            "loan_status": 600 if closed else 300, "repayments": repayments,
            "outstanding": 1000 - 100 * repayments,
        })
    return out


def build_raw(conn: psycopg.Connection, n_clients: int = 20, run_id: str = RUN_ID) -> list[dict]:
    """raw_mis per the contract, plus a meta.load_manifest row for run_id."""
    from spm_warehouse import meta

    conn.execute(RAW_DDL)
    meta.ensure_meta_schema(conn)
    rows = clients(n_clients)
    created = datetime(2024, 1, 5, 9, 0, tzinfo=timezone.utc)
    conn.execute("INSERT INTO raw_mis.m_office (id, name, opening_date) VALUES (1, 'Head Office', '2020-01-01'), "
                 "(2, 'Gulu', '2021-01-01')")
    tx_id = 0
    with conn.cursor() as cur:
        for c in rows:
            cur.execute(
                """INSERT INTO raw_mis.m_client (id, account_no, status_enum, office_id, activation_date, closedon_date,
                       created_on_utc, last_modified_on_utc, _run_id) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)""",
                (c["id"], c["account_no"], c["status"], c["office_id"], date(2024, 1, 8), c["closed"], created,
                 LAST_CHANGE - timedelta(hours=c["id"]), run_id))
            repaid = 100 * c["repayments"]
            cur.execute(
                """INSERT INTO raw_mis.m_loan (id, account_no, client_id, product_id, loan_officer_id, loan_status_id,
                       principal_amount, disbursedon_date, closedon_date, principal_disbursed_derived,
                       principal_repaid_derived, principal_outstanding_derived, created_on_utc, last_modified_on_utc, _run_id)
                   VALUES (%s,%s,%s,1,11,%s,1000,'2024-01-10',%s,1000,%s,%s,%s,%s,%s)""",
                (c["id"], f"L{c['id']:08d}", c["id"], c["loan_status"], c["closed"], repaid, c["outstanding"],
                 created, LAST_CHANGE - timedelta(hours=c["id"]), run_id))
            tx_id += 1
            cur.execute(
                """INSERT INTO raw_mis.m_loan_transaction (id, loan_id, office_id, is_reversed, transaction_type_enum,
                       transaction_date, amount, principal_portion_derived, interest_portion_derived, created_on_utc,
                       last_modified_on_utc, _run_id) VALUES (%s,%s,%s,false,1,'2024-01-10',1000,1000,0,%s,%s,%s)""",
                (tx_id, c["id"], c["office_id"], created, created, run_id))
            for k in range(c["repayments"]):
                tx_id += 1
                day = date(2024, 1, 10) + timedelta(days=14 * (k + 1))
                at = datetime(day.year, day.month, day.day, 10, 0, tzinfo=timezone.utc)
                cur.execute(
                    """INSERT INTO raw_mis.m_loan_transaction (id, loan_id, office_id, is_reversed, transaction_type_enum,
                           transaction_date, amount, principal_portion_derived, interest_portion_derived, created_on_utc,
                           last_modified_on_utc, _run_id) VALUES (%s,%s,%s,false,2,%s,110,100,10,%s,%s,%s)""",
                    (tx_id, c["id"], c["office_id"], day, at, at, run_id))
        # a reversed repayment: does not exist for any purpose
        tx_id += 1
        cur.execute(
            """INSERT INTO raw_mis.m_loan_transaction (id, loan_id, office_id, is_reversed, transaction_type_enum,
                   transaction_date, amount, principal_portion_derived, interest_portion_derived, created_on_utc,
                   last_modified_on_utc, _run_id) VALUES (%s,1,2,true,2,'2024-06-01',500,500,0,%s,%s,%s)""",
            (tx_id, created, created, run_id))
    conn.execute(
        """INSERT INTO meta.load_manifest (run_id, source, table_name, mode, as_of, rows_read, rows_merged, started_at,
               finished_at, seconds) VALUES (%s, 'fineract', 'm_loan', 'incremental', %s, %s, %s, now(), now(), 0.1)""",
        (run_id, AS_OF, n_clients, n_clients))
    return rows


def build_marts(conn: psycopg.Connection, rows: list[dict], build: str = "analytics_build",
                scale: float = 1.0, marker: str | None = None) -> None:
    """The marts as dbt would build them from build_raw's data (scale multiplies the portfolio)."""
    conn.execute(MART_DDL.format(build=sql.Identifier(build).as_string(conn)))
    b = sql.Identifier(build)
    with conn.cursor() as cur:
        for c in rows:
            if c["loan_status"] == 300 and c["outstanding"] > 0:
                cur.execute(sql.SQL("INSERT INTO {}.fct_portfolio_month VALUES (%s, %s, %s, 1, 11, %s, 0, false)").format(b),
                            (c["id"], AS_OF, c["office_id"], c["outstanding"] * scale))
        for branch, name in ((1, "Head Office"), (2, "Gulu")):
            mine = [c for c in rows if c["office_id"] == branch]
            active = [c for c in mine if c["status"] == 300]
            borrowers = [c for c in active if c["outstanding"] > 0]
            glp = sum(c["outstanding"] for c in borrowers) * scale
            cur.execute(
                sql.SQL("INSERT INTO {}.kpi_branch_month VALUES (%s,%s,%s,%s,0,%s,%s,%s,%s,%s,0,0,0,NULL)").format(b),
                (branch, name, AS_OF, len(active), len([c for c in mine if c["closed"]]),
                 len(active) / len(mine) if mine else None, len(borrowers), len(borrowers) // 2, glp))
        cur.execute(sql.SQL("INSERT INTO {}.dim_product VALUES (1, %s)").format(b), (marker or "Group loan",))


def build_source(conn: psycopg.Connection, rows: list[dict]) -> None:
    """A source MIS (Fineract tables with PII columns) holding the same clients and loans."""
    conn.execute(SOURCE_DDL)
    with conn.cursor() as cur:
        for c in rows:
            cur.execute("INSERT INTO m_client VALUES (%s,%s,'Jane',%s,%s,'2024-01-08',%s,%s,%s)",
                        (c["id"], c["account_no"], c["status"], c["office_id"], c["closed"],
                         datetime(2024, 1, 5, 9, 0, tzinfo=timezone.utc), LAST_CHANGE - timedelta(hours=c["id"])))
            cur.execute("INSERT INTO m_loan VALUES (%s,%s,1,%s,1000,%s,%s,%s)",
                        (c["id"], c["id"], c["loan_status"], c["outstanding"],
                         datetime(2024, 1, 5, 9, 0, tzinfo=timezone.utc), LAST_CHANGE - timedelta(hours=c["id"])))


def conn_info(url: str):
    """ConnInfo of a postgresql:// URL (as settings would give for mis_fineract)."""
    return parse_conn_uri("mis_fineract", "postgres://" + url.split("://", 1)[1])


def write_thresholds(path, **overrides) -> "Path":
    """A copy of gate/thresholds.yml with some sections' keys replaced (section -> dict of keys)."""

    data = yaml.safe_load(THRESHOLDS_PATH.read_text())
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    out = Path(path)
    out.write_text(yaml.safe_dump(data))
    return out


def passing_dbt() -> dict:
    return {"success": True, "returncode": 0, "counts": {"success": 12, "pass": 30}, "results": []}


def analytics_fingerprint(conn: psycopg.Connection, schema: str = "analytics") -> str:
    """Every relation, column, row, comment, grant and policy of a schema, as one string."""
    parts = []
    rels = conn.execute(
        """SELECT c.relname, c.relkind, c.oid, coalesce(c.relacl::text, ''), c.relrowsecurity
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relkind IN ('r','v','m','p') ORDER BY 1""", (schema,)).fetchall()
    for name, kind, oid, acl, rls in rels:
        parts.append(f"{name}|{kind}|{oid}|{acl}|{rls}")
        if kind in ("r", "m", "p"):
            rows = conn.execute(sql.SQL("SELECT t::text FROM {} t ORDER BY 1").format(sql.Identifier(schema, name))).fetchall()
            parts.extend(r[0] for r in rows)
    parts.append(json.dumps(conn.execute(
        "SELECT obj_description(to_regnamespace(%s)::oid, 'pg_namespace'), "
        "(SELECT nspacl::text FROM pg_namespace WHERE nspname = %s)", (schema, schema)).fetchone()))
    parts.extend(str(r) for r in conn.execute(
        "SELECT tablename, policyname, roles::text, qual FROM pg_policies WHERE schemaname = %s ORDER BY 1, 2",
        (schema,)).fetchall())
    return "\n".join(parts)
