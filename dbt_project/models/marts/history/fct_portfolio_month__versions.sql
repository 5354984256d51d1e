{{
  config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook=core_session_settings() + ["{{ core_mart_prepare('period_month', with_schedule=true) }}"],
    post_hook=[
      "{{ core_index('period_end, branch_id') }}",
      "{{ history_index('loan_id, period_month', unique=true) }}",
      "{{ core_index('period_month') }}",
      "{{ core_index('_as_of_date, _cutoff_ts, _watermark') }}",
      "{{ history_closed_index() }}",
      "analyze {{ this }}"
    ]
  )
}}
-- The change feeds that the incremental scope reads (macros/incremental/):
-- depends_on: {{ ref('stg_fineract__m_loan_with_deleted') }}
-- depends_on: {{ ref('stg_fineract__m_loan_transaction_with_deleted') }}
-- depends_on: {{ ref('stg_fineract__m_loan_repayment_schedule_with_deleted') }}
-- depends_on: {{ ref('stg_fineract__m_client_with_deleted') }}
-- depends_on: {{ ref('stg_fineract__m_group_with_deleted') }}
-- KPI contract table: one row per loan per period in which the loan's
-- outstanding principal at period_end is > 0. Branch = the client's current
-- branch, product and officer = m_loan's (officer null if none).
-- Extra columns: client_id, period_month and period_end_date_key.
-- Incremental (macros/incremental/core_incremental_marts.sql): a night rewrites the rows
-- of changed loans and the rows from the month of the last as-of date on.
{%- set state = core_mart_state(this) if is_incremental() else none %}
{%- set mode = core_mart_mode(state) %}
with scoped as (
{%- if mode == 'nightly' %}
    -- two index-driven parts rather than one OR over every loan-month (see fct_loan_transaction)
    select b.*
    from {{ ref('int_loan__balances_as_of') }} b
    where b.period_month >= {{ core_mart_moving_month(state) }}
    union all
    select b.*
    from {{ ref('int_loan__balances_as_of') }} b
    where b.loan_id = any(array({{ core_mart_changed_loans(state, with_schedule=true) }}))
      and b.period_month < {{ core_mart_moving_month(state) }}
{%- else %}
    select b.*
    from {{ ref('int_loan__balances_as_of') }} b
{%- endif %}
)

select
    b.loan_id,
    b.period_end,
    l.branch_id,
    l.product_id,
    l.loan_officer_id,
    b.outstanding_principal,
    b.days_in_arrears,
    b.days_in_arrears > 30                                          as is_par30,
    l.client_id,
    b.period_month,
    {{ core_date_key('b.period_end') }}                            as period_end_date_key,
    {{ core_mart_state_columns(state, ['m_loan', 'm_loan_transaction', 'm_loan_repayment_schedule', 'm_client', 'm_group']) }},
    {{ history_version_columns(history_next_version()) }}
from scoped b
join {{ ref('int_loan__known_loans') }} l on l.loan_id = b.loan_id
where b.outstanding_principal > 0
