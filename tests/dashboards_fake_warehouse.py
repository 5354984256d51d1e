"""A small, deterministic `analytics` schema with exactly the columns the dashboards read.

Why: the dashboards must be testable while (and whatever) the pipeline
builds; this schema is the executable statement of what the Superset assets
rely on. The real publication must offer at least these tables and columns
(more columns are fine). Numbers are arithmetic, not random, so a test can
recompute any KPI.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

BI_ROLE = "bi_reader"

BRANCHES = [(1, "Head Office", "Central"), (2, "Gulu", "North"), (3, "Mbarara", "West")]
PRODUCTS = [(1, "Group loan"), (2, "Individual loan")]
LOAN_OFFICERS = [(11, "Alice Akello", 1), (12, "Brian Okello", 2), (13, "Carol Nankya", 3), (14, "David Mugisha", 3)]

DDL = """
CREATE SCHEMA IF NOT EXISTS analytics;

CREATE TABLE analytics.dim_branch (branch_id bigint PRIMARY KEY, branch_name text NOT NULL, region_name text);
CREATE TABLE analytics.dim_product (product_id bigint PRIMARY KEY, product_name text NOT NULL);
CREATE TABLE analytics.dim_loan_officer (
    loan_officer_id bigint PRIMARY KEY, loan_officer_name text NOT NULL, branch_id bigint, branch_name text);

-- calendar: one period per month, the as-of month ends on the as-of date
CREATE TABLE analytics._periods AS
SELECT m AS month_no, ((date '2024-01-01' + make_interval(months => m))::date - 1) AS period_end
FROM generate_series(1, 6) AS m;

CREATE TABLE analytics.fct_portfolio_month (
    loan_id bigint, period_end date, branch_id bigint, product_id bigint, loan_officer_id bigint,
    outstanding_principal numeric(18,2), days_in_arrears integer, is_par30 boolean);

CREATE TABLE analytics.kpi_branch_month (
    branch_id bigint, branch_name text, period_end date,
    active_clients integer, new_clients integer, exited_clients integer, retention_rate numeric,
    active_borrowers integer, women_borrowers integer,
    gross_loan_portfolio numeric(18,2), par30_principal numeric(18,2), par30_ratio numeric,
    ppi_assessed_clients integer, avg_poverty_likelihood numeric,
    region_name text, active_clients_previous integer, write_off_amount numeric(18,2), is_latest_period boolean);

CREATE TABLE analytics.kpi_product_month (
    branch_id bigint, branch_name text, product_id bigint, product_name text, period_end date,
    active_borrowers integer, gross_loan_portfolio numeric(18,2), par30_principal numeric(18,2),
    par30_ratio numeric, write_off_amount numeric(18,2));

CREATE TABLE analytics.kpi_loan_officer_month (
    loan_officer_id bigint, loan_officer_name text, loan_officer_branch_id bigint, loan_officer_branch_name text,
    branch_id bigint, branch_name text, period_end date,
    active_borrowers integer, gross_loan_portfolio numeric(18,2), par30_principal numeric(18,2),
    par30_ratio numeric, write_off_amount numeric(18,2), is_latest_period boolean);

CREATE TABLE analytics.kpi_segment_month (
    branch_id bigint, branch_name text, period_end date,
    gender text, area text, poverty_band_at_entry text, poverty_band_label text,
    active_clients integer, active_borrowers integer, new_clients integer, exited_clients integer);

CREATE TABLE analytics.kpi_exit_reasons_branch_month (
    branch_id bigint, branch_name text, period_end date, exit_reason text, exit_interviews integer);

CREATE TABLE analytics.kpi_client_outcomes (
    as_of_date date, indicator_code text, branch_id bigint, branch_name text, gender text, area text,
    product_id bigint, product_name text, poverty_band_at_entry text, clients integer, change_sum numeric);

CREATE TABLE analytics.data_health_runs (
    run_id text, as_of_date date, published_at timestamptz, status text,
    checks_passed integer, checks_failed integer, checks_warned integer, quarantine_rows bigint,
    checked_at timestamptz);

CREATE TABLE analytics.publication_info (
    build_id text, as_of_date date, published_at timestamptz, live_since timestamptz,
    mis_data_until timestamptz, surveys_data_until timestamptz, run_id text);
"""

DATA = """
INSERT INTO analytics.kpi_branch_month
SELECT b.branch_id, b.branch_name, p.period_end,
       50 * b.branch_id + 5 * p.month_no,
       8 + b.branch_id,
       3 + p.month_no % 2,
       NULL,
       40 * b.branch_id + 4 * p.month_no,
       (24 * b.branch_id + 2 * p.month_no),
       10000 * b.branch_id + 500 * p.month_no,
       300 * b.branch_id + 20 * p.month_no,
       (300 * b.branch_id + 20 * p.month_no)::numeric / (10000 * b.branch_id + 500 * p.month_no),
       30 * b.branch_id + 3 * p.month_no,
       0.30 + 0.02 * b.branch_id - 0.005 * p.month_no,
       b.region_name,
       CASE WHEN p.month_no = 1 THEN 0 ELSE 50 * b.branch_id + 5 * (p.month_no - 1) END,
       CASE WHEN p.month_no IN (3, 6) THEN 100 * b.branch_id ELSE 0 END,
       p.month_no = 6
FROM analytics.dim_branch b CROSS JOIN analytics._periods p;

UPDATE analytics.kpi_branch_month
SET retention_rate = active_clients::numeric / NULLIF(active_clients_previous + new_clients, 0);

INSERT INTO analytics.kpi_product_month
SELECT k.branch_id, k.branch_name, d.product_id, d.product_name, k.period_end,
       CASE d.product_id WHEN 1 THEN k.active_borrowers * 3 / 5 ELSE k.active_borrowers - k.active_borrowers * 3 / 5 END,
       round(k.gross_loan_portfolio * CASE d.product_id WHEN 1 THEN 0.6 ELSE 0.4 END, 2),
       round(k.par30_principal * CASE d.product_id WHEN 1 THEN 0.7 ELSE 0.3 END, 2),
       round(k.par30_principal * CASE d.product_id WHEN 1 THEN 0.7 ELSE 0.3 END, 2)
         / round(k.gross_loan_portfolio * CASE d.product_id WHEN 1 THEN 0.6 ELSE 0.4 END, 2),
       k.write_off_amount * CASE d.product_id WHEN 1 THEN 0.5 ELSE 0.5 END
FROM analytics.kpi_branch_month k CROSS JOIN analytics.dim_product d;

INSERT INTO analytics.kpi_loan_officer_month
SELECT o.loan_officer_id, o.loan_officer_name, o.branch_id, o.branch_name, k.branch_id, k.branch_name, k.period_end,
       k.active_borrowers / n.officers,
       round(k.gross_loan_portfolio / n.officers, 2),
       round(k.par30_principal / n.officers, 2),
       k.par30_ratio,
       round(k.write_off_amount / n.officers, 2),
       k.is_latest_period
FROM analytics.kpi_branch_month k
JOIN analytics.dim_loan_officer o ON o.branch_id = k.branch_id
JOIN (SELECT branch_id, count(*) AS officers FROM analytics.dim_loan_officer GROUP BY branch_id) n
  ON n.branch_id = k.branch_id;

INSERT INTO analytics.kpi_segment_month
SELECT k.branch_id, k.branch_name, k.period_end, g.gender, a.area, bnd.code, bnd.label,
       (k.active_clients * g.w * a.w * bnd.w)::integer,
       (k.active_borrowers * g.w * a.w * bnd.w)::integer,
       (k.new_clients * g.w * a.w * bnd.w)::integer,
       (k.exited_clients * g.w * a.w * bnd.w)::integer
FROM analytics.kpi_branch_month k
CROSS JOIN (VALUES ('female', 0.6), ('male', 0.4)) AS g(gender, w)
CROSS JOIN (VALUES ('rural', 0.7), ('urban', 0.3)) AS a(area, w)
CROSS JOIN (VALUES ('q1_0_25', 'Poverty likelihood 0-25%', 0.5), ('q2_25_50', 'Poverty likelihood 25-50%', 0.3),
                   ('unknown', 'Never assessed', 0.2)) AS bnd(code, label, w);

INSERT INTO analytics.kpi_exit_reasons_branch_month
SELECT k.branch_id, k.branch_name, k.period_end, r.reason,
       CASE WHEN r.reason = 'moved_away' THEN k.exited_clients - 1 ELSE 1 END
FROM analytics.kpi_branch_month k
CROSS JOIN (VALUES ('moved_away'), ('business_closed')) AS r(reason);

INSERT INTO analytics.kpi_client_outcomes
SELECT date '2024-06-30', i.code, b.branch_id, b.branch_name, g.gender, a.area, d.product_id, d.product_name, bnd.band,
       4 + b.branch_id,
       (4 + b.branch_id) * i.change_per_client * (1 + b.branch_id)
FROM analytics.dim_branch b
CROSS JOIN analytics.dim_product d
CROSS JOIN (VALUES ('female'), ('male')) AS g(gender)
CROSS JOIN (VALUES ('rural'), ('urban')) AS a(area)
CROSS JOIN (VALUES ('q1_0_25'), ('q2_25_50'), ('unknown')) AS bnd(band)
CROSS JOIN (VALUES ('monthly_hh_income', 40.0), ('poverty_likelihood', -0.01), ('school_enrolment_rate', 0.02))
    AS i(code, change_per_client);

INSERT INTO analytics.fct_portfolio_month
SELECT 1000 * k.branch_id + d.product_id, k.period_end, k.branch_id, d.product_id,
       (SELECT min(loan_officer_id) FROM analytics.dim_loan_officer o WHERE o.branch_id = k.branch_id),
       round(k.gross_loan_portfolio / 2, 2), CASE WHEN d.product_id = 1 THEN 45 ELSE 0 END, d.product_id = 1
FROM analytics.kpi_branch_month k CROSS JOIN analytics.dim_product d;

INSERT INTO analytics.data_health_runs VALUES
  ('manual__2024-06-28', date '2024-06-28', timestamptz '2024-06-29 02:10:00+00', 'published', 118, 0, 1, 3,
   timestamptz '2024-06-29 02:09:00+00'),
  ('manual__2024-06-29', date '2024-06-29', NULL, 'blocked', 115, 3, 0, 41, timestamptz '2024-06-30 02:11:00+00'),
  ('manual__2024-06-30', date '2024-06-30', timestamptz '2024-07-01 02:09:00+00', 'published', 118, 0, 2, 5,
   timestamptz '2024-07-01 02:08:00+00');

INSERT INTO analytics.publication_info VALUES
  ('b20240630', date '2024-06-30', timestamptz '2024-07-01 02:09:00+00', timestamptz '2024-07-01 02:09:00+00',
   timestamptz '2024-07-01 01:00:00+00', timestamptz '2024-06-30 18:00:00+00', 'manual__2024-06-30');

DROP TABLE analytics._periods;
"""


def create_fake_analytics(conn: psycopg.Connection) -> None:
    """Create and fill schema `analytics` on `conn` (the database must not have it yet)."""
    with conn.cursor() as cur:
        cur.execute(DDL)
        with cur.copy("COPY analytics.dim_branch (branch_id, branch_name, region_name) FROM STDIN") as cp:
            for row in BRANCHES:
                cp.write_row(row)
        with cur.copy("COPY analytics.dim_product (product_id, product_name) FROM STDIN") as cp:
            for row in PRODUCTS:
                cp.write_row(row)
        with cur.copy("COPY analytics.dim_loan_officer (loan_officer_id, loan_officer_name, branch_id, branch_name) "
                      "FROM STDIN") as cp:
            names = {b[0]: b[1] for b in BRANCHES}
            for officer_id, officer_name, branch_id in LOAN_OFFICERS:
                cp.write_row((officer_id, officer_name, branch_id, names[branch_id]))
        cur.execute(DATA)
    conn.commit()


def grant_bi_reader(conn: psycopg.Connection, schema: str = "analytics") -> None:
    """Let bi_reader log in and read `schema` (the role is cluster-wide; never altered if present)."""
    with conn.cursor() as cur:
        cur.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bi_reader') "
            "THEN CREATE ROLE bi_reader LOGIN; END IF; END $$"
        )
        dbname = conn.info.dbname
        cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO bi_reader").format(sql.Identifier(dbname)))
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO bi_reader").format(sql.Identifier(schema)))
        cur.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO bi_reader").format(sql.Identifier(schema)))
    conn.commit()
