{{
  config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook=core_session_settings() + [
      "{{ core_mart_upgrade([['period_month', 'date']], ['period_end']) or core_mart_prepare() }}"
    ],
    post_hook=[
      "{{ history_index('transaction_id', unique=true) }}",
      "{{ core_index('loan_id, transaction_date') }}",
      "{{ core_index('transaction_date') }}",
      "{{ core_index('_as_of_date, _cutoff_ts, _watermark') }}",
      "{{ history_closed_index() }}",
      "analyze {{ this }}"
    ]
  )
}}
-- The change feeds that the incremental scope reads (macros/incremental/):
-- depends_on: {{ ref('stg_fineract__m_loan_with_deleted') }}
-- depends_on: {{ ref('stg_fineract__m_loan_transaction_with_deleted') }}
-- depends_on: {{ ref('stg_fineract__m_client_with_deleted') }}
-- depends_on: {{ ref('stg_fineract__m_group_with_deleted') }}
-- One row per loan transaction that exists at as_of_date (reversed ones never
-- do; entered by the end of as_of_date). Attribution as in the KPI contract
-- (current branch of the client, m_loan product and officer); -1 when missing.
-- Incremental (macros/incremental/core_incremental_marts.sql): a night rewrites the
-- transactions of changed loans only. Every column is fixed by the loan's own
-- inputs: the row carries period_month, not the period_end of the as-of month,
-- which moves every night (dim_date.period_end on transaction_date_key gives it),
-- so an unchanged loan's rows are never written again.
{#- a table of the version that stored period_end is rebuilt in full (core_mart_upgrade) -#}
{%- set upgrade = is_incremental() and core_relation_lacks_column(this, 'period_month') %}
{%- set state = core_mart_state(this) if is_incremental() and not upgrade else none %}
{%- set mode = core_mart_mode(state) %}
with scoped as (
{%- if mode == 'nightly' %}
    -- the changed loans (found from the raw deltas), read through the index on loan_id (one array:
    -- a join to the set can be planned as a hash join over every transaction)
    select t.*
    from {{ ref('int_loan__known_transactions') }} t
    where t.loan_id = any(array({{ core_mart_changed_loans(state) }}))
{%- else %}
    select t.*
    from {{ ref('int_loan__known_transactions') }} t
{%- endif %}
)

select
    t.transaction_id,
    t.loan_id,
    coalesce(l.client_id, -1)                                       as client_id,
    coalesce(l.branch_id, -1)                                       as branch_id,
    coalesce(l.product_id, -1)                                      as product_id,
    coalesce(l.loan_officer_id, -1)                                 as loan_officer_id,
    t.transaction_date,
    {{ core_date_key('t.transaction_date') }}                      as transaction_date_key,
    {{ core_period_month('t.transaction_date') }}                  as period_month,
    t.transaction_type_code,
    t.transaction_type,
    t.amount,
    t.principal_portion,
    t.interest_portion,
    t.fee_charges_portion,
    t.penalty_charges_portion,
    t.overpayment_portion,
    t.submitted_on_date,
    {{ core_mart_state_columns(state, ['m_loan', 'm_loan_transaction', 'm_client', 'm_group']) }},
    {{ history_version_columns(history_next_version()) }}
from scoped t
join {{ ref('int_loan__known_loans') }} l on l.loan_id = t.loan_id
