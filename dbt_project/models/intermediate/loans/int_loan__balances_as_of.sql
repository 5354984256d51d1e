{{ config(materialized='view') }}
-- depends_on: {{ ref('int_loan__balance_month') }}
-- depends_on: {{ ref('int_loan__known_loans') }}
-- depends_on: {{ ref('int_loan__known_transactions') }}
-- depends_on: {{ ref('int_loan__known_schedule') }}
{#-
  Loan balances per period as of as_of_date, whatever kind of run this is.
  Nightly runs and reruns read the persistent snapshots (int_loan__balance_month).
  A backfill (as_of_date before the snapshots' as-of date) cannot use them,
  since they include what was learnt later: it computes every loan from scratch
  with the backfill date's knowledge cutoff.
-#}
{%- set state = core_incremental_state(ref('int_loan__balance_month')) -%}
{%- if core_is_backfill(state) -%}
    {%- set scope_sql -%}
        select loan_id, date '1900-01-01' as from_month from {{ ref('int_loan__known_loans') }}
    {%- endset %}
select *
from (
    {{ core_loan_balance_rows(scope_sql) }}
) balances
where in_life
{%- else %}
select
    loan_id,
    period_month,
    period_end,
    in_life,
    first_disbursed_on,
    written_off_on,
    source_written_off_on,
    principal_disbursed_to_date,
    principal_repaid_to_date,
    outstanding_principal,
    days_in_arrears,
    first_unpaid_due_date,
    schedule_basis_hash
from {{ ref('int_loan__balance_month') }}
where period_month <= {{ core_as_of_month() }}
  and in_life
{%- endif %}
