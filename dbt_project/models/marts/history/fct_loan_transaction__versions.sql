{{
  config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook=core_session_settings() + [
      "{{ core_mart_upgrade([['period_month', 'date']], ['period_end']) or core_mart_prepare(keep=core_loan_transaction_unchanged) }}"
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
-- The rows (macros/incremental/core_loan_transactions.sql):
-- depends_on: {{ ref('int_loan__known_transactions') }}
-- depends_on: {{ ref('int_loan__known_loans') }}
-- One row per loan transaction that exists at as_of_date (reversed ones never
-- do; entered by the end of as_of_date). Attribution as in the KPI contract
-- (current branch of the client, m_loan product and officer); -1 when missing.
-- Incremental (macros/incremental/core_incremental_marts.sql): a night reads the
-- transactions of changed loans only. Every column is fixed by the loan's own
-- inputs: the row carries period_month, not the period_end of the as-of month,
-- which moves every night (dim_date.period_end on transaction_date_key gives it),
-- so an unchanged loan's rows are never written again; of a changed loan, only the
-- rows that are new or differ are written (macros/incremental/core_loan_transactions.sql).
{#- a table of the version that stored period_end is rebuilt in full (core_mart_upgrade) -#}
{%- set upgrade = is_incremental() and core_relation_lacks_column(this, 'period_month') %}
{%- set state = core_mart_state(this) if is_incremental() and not upgrade else none %}
{%- set mode = core_mart_mode(state) %}
with tonight as (
    {{ core_loan_transaction_rows(core_mart_changed_loans(state) if mode == 'nightly' else none) | indent(4) }}
)

select
    n.*,
    {{ core_mart_state_columns(state, ['m_loan', 'm_loan_transaction', 'm_client', 'm_group']) }},
    {{ history_version_columns(history_next_version()) }}
from tonight n
{%- if mode == 'nightly' %}
-- the rows the pre-hook left current are identical tonight: not written again
where not exists (
    select 1 from {{ this }} c
    where c.transaction_id = n.transaction_id and {{ history_is_open('c') }}
)
{%- endif %}
