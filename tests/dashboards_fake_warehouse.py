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
AS_OF = "2024-06-30"

DDL = """
CREATE SCHEMA IF NOT EXISTS analytics;

CREATE TABLE analytics.dim_branch (
    branch_key bigint PRIMARY KEY, branch_id bigint NOT NULL, branch_name text NOT NULL, region_name text);
CREATE TABLE analytics.dim_product (product_id bigint PRIMARY KEY, product_name text NOT NULL);
CREATE TABLE analytics.dim_loan_officer (
    loan_officer_id bigint PRIMARY KEY, loan_officer_name text NOT NULL, branch_id bigint);

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
    ppi_assessed_clients integer, avg_poverty_likelihood numeric);

CREATE TABLE analytics.kpi_product_month (
    branch_id bigint, branch_name text, product_id bigint, product_name text, period_end date,
    active_borrowers integer, gross_loan_portfolio numeric(18,2), par30_principal numeric(18,2),
    par30_ratio numeric, written_off_principal numeric(18,2));

CREATE TABLE analytics.kpi_loan_officer_month (
    branch_id bigint, branch_name text, loan_officer_id bigint, loan_officer_name text, period_end date,
    active_borrowers integer, gross_loan_portfolio numeric(18,2), par30_principal numeric(18,2),
    par30_ratio numeric, written_off_principal numeric(18,2));

CREATE TABLE analytics.kpi_segment_month (
    branch_id bigint, branch_name text, period_end date,
    gender text, area text, poverty_band_at_entry text,
    active_clients integer, active_borrowers integer, new_clients integer, exited_clients integer);

CREATE TABLE analytics.kpi_exit_reasons_branch_month (
    branch_id bigint, branch_name text, period_end date, exit_reason text, exited_clients integer);

CREATE TABLE analytics.kpi_client_outcomes (
    branch_id bigint, branch_name text, product_id bigint, product_name text,
    gender text, area text, poverty_band_at_entry text,
    period_end date, wave_from integer, wave_to integer,
    clients_compared integer,
    income_clients integer, income_change_sum numeric(18,2),
    poverty_clients integer, poverty_likelihood_change_sum numeric,
    schooling_clients integer, school_enrolment_change_sum numeric);

CREATE TABLE analytics.data_health_runs (
    run_id text, as_of_date date, published_at timestamptz, status text,
    checks_passed integer, checks_failed integer, quarantine_rows bigint);
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
       0.30 + 0.02 * b.branch_id - 0.005 * p.month_no
FROM analytics.dim_branch b CROSS JOIN analytics._periods p;

UPDATE analytics.kpi_branch_month k
SET retention_rate = k.active_clients::numeric / NULLIF(COALESCE(x.prev_active, 0) + k.new_clients, 0)
FROM (SELECT branch_id, period_end,
             lag(active_clients) OVER (PARTITION BY branch_id ORDER BY period_end) AS prev_active
      FROM analytics.kpi_branch_month) x
WHERE k.branch_id = x.branch_id AND k.period_end = x.period_end;

INSERT INTO analytics.kpi_product_month
SELECT k.branch_id, k.branch_name, d.product_id, d.product_name, k.period_end,
       CASE d.product_id WHEN 1 THEN k.active_borrowers * 3 / 5 ELSE k.active_borrowers - k.active_borrowers * 3 / 5 END,
       round(k.gross_loan_portfolio * CASE d.product_id WHEN 1 THEN 0.6 ELSE 0.4 END, 2),
       round(k.par30_principal * CASE d.product_id WHEN 1 THEN 0.7 ELSE 0.3 END, 2),
       round(k.par30_principal * CASE d.product_id WHEN 1 THEN 0.7 ELSE 0.3 END, 2)
         / round(k.gross_loan_portfolio * CASE d.product_id WHEN 1 THEN 0.6 ELSE 0.4 END, 2),
       CASE WHEN extract(month FROM k.period_end) IN (3, 6) THEN 100 * k.branch_id * d.product_id ELSE 0 END
FROM analytics.kpi_branch_month k CROSS JOIN analytics.dim_product d;

INSERT INTO analytics.kpi_loan_officer_month
SELECT k.branch_id, k.branch_name, o.loan_officer_id, o.loan_officer_name, k.period_end,
       k.active_borrowers / n.officers,
       round(k.gross_loan_portfolio / n.officers, 2),
       round(k.par30_principal / n.officers, 2),
       k.par30_ratio,
       CASE WHEN extract(month FROM k.period_end) IN (3, 6) THEN 100 * k.branch_id ELSE 0 END
FROM analytics.kpi_branch_month k
JOIN analytics.dim_loan_officer o ON o.branch_id = k.branch_id
JOIN (SELECT branch_id, count(*) AS officers FROM analytics.dim_loan_officer GROUP BY branch_id) n
  ON n.branch_id = k.branch_id;

INSERT INTO analytics.kpi_segment_month
SELECT k.branch_id, k.branch_name, k.period_end, g.gender, a.area, bnd.band,
       (k.active_clients * g.w * a.w * bnd.w)::integer,
       (k.active_borrowers * g.w * a.w * bnd.w)::integer,
       (k.new_clients * g.w * a.w * bnd.w)::integer,
       (k.exited_clients * g.w * a.w * bnd.w)::integer
FROM analytics.kpi_branch_month k
CROSS JOIN (VALUES ('Female', 0.6), ('Male', 0.4)) AS g(gender, w)
CROSS JOIN (VALUES ('Rural', 0.7), ('Urban', 0.3)) AS a(area, w)
CROSS JOIN (VALUES ('Below 25%', 0.5), ('25-50%', 0.3), ('Above 50%', 0.2)) AS bnd(band, w);

INSERT INTO analytics.kpi_exit_reasons_branch_month
SELECT k.branch_id, k.branch_name, k.period_end, r.reason,
       CASE WHEN r.reason = 'Moved away' THEN k.exited_clients - 1 ELSE 1 END
FROM analytics.kpi_branch_month k
CROSS JOIN (VALUES ('Moved away'), ('Business closed')) AS r(reason);

INSERT INTO analytics.kpi_client_outcomes
SELECT b.branch_id, b.branch_name, d.product_id, d.product_name, g.gender, a.area, bnd.band,
       w.period_end, w.wave_from, w.wave_to,
       4 + b.branch_id, 3 + b.branch_id, (3 + b.branch_id) * (120 + 10 * b.branch_id * w.wave_to),
       4 + b.branch_id, (4 + b.branch_id) * (-0.02 * w.wave_to),
       2, 2 * 0.05
FROM analytics.dim_branch b
CROSS JOIN analytics.dim_product d
CROSS JOIN (VALUES ('Female'), ('Male')) AS g(gender)
CROSS JOIN (VALUES ('Rural'), ('Urban')) AS a(area)
CROSS JOIN (VALUES ('Below 25%'), ('25-50%'), ('Above 50%')) AS bnd(band)
CROSS JOIN (VALUES (date '2024-03-31', 1, 2), (date '2024-06-30', 2, 3)) AS w(period_end, wave_from, wave_to);

INSERT INTO analytics.fct_portfolio_month
SELECT 1000 * k.branch_id + d.product_id, k.period_end, k.branch_id, d.product_id,
       (SELECT min(loan_officer_id) FROM analytics.dim_loan_officer o WHERE o.branch_id = k.branch_id),
       round(k.gross_loan_portfolio / 2, 2), CASE WHEN d.product_id = 1 THEN 45 ELSE 0 END, d.product_id = 1
FROM analytics.kpi_branch_month k CROSS JOIN analytics.dim_product d;

INSERT INTO analytics.data_health_runs VALUES
  ('manual__2024-06-28', date '2024-06-28', timestamptz '2024-06-29 02:10:00+00', 'published', 118, 0, 3),
  ('manual__2024-06-29', date '2024-06-29', timestamptz '2024-06-30 02:12:00+00', 'blocked', 115, 3, 41),
  ('manual__2024-06-30', date '2024-06-30', timestamptz '2024-07-01 02:09:00+00', 'published', 118, 0, 5);

DROP TABLE analytics._periods;
"""


def create_fake_analytics(conn: psycopg.Connection) -> None:
    """Create and fill schema `analytics` on `conn` (the database must not have it yet)."""
    with conn.cursor() as cur:
        cur.execute(DDL)
        with cur.copy("COPY analytics.dim_branch (branch_key, branch_id, branch_name, region_name) FROM STDIN") as cp:
            for key, (branch_id, name, region) in enumerate(BRANCHES, start=100):
                cp.write_row((key, branch_id, name, region))
        with cur.copy("COPY analytics.dim_product (product_id, product_name) FROM STDIN") as cp:
            for row in PRODUCTS:
                cp.write_row(row)
        with cur.copy("COPY analytics.dim_loan_officer (loan_officer_id, loan_officer_name, branch_id) FROM STDIN") as cp:
            for row in LOAN_OFFICERS:
                cp.write_row(row)
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
