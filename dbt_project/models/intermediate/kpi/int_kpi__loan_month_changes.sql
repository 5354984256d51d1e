{{
  config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook=core_session_settings() + ["{{ core_kpi_changes_prepare() }}"],
    post_hook=[
      "{{ core_index('_change_at') }}",
      "analyze {{ this }}"
    ]
  )
}}
-- The inputs of the nightly diff, which only incremental runs render:
-- depends_on: {{ ref('stg_fineract__m_loan_with_deleted') }}
-- depends_on: {{ ref('stg_fineract__m_loan_transaction_with_deleted') }}
-- depends_on: {{ ref('stg_fineract__m_loan_repayment_schedule_with_deleted') }}
-- depends_on: {{ ref('stg_fineract__m_client_with_deleted') }}
-- depends_on: {{ ref('stg_fineract__m_group_with_deleted') }}
-- depends_on: {{ ref('fct_portfolio_month') }}
-- depends_on: {{ ref('fct_loan_transaction') }}
-- depends_on: {{ ref('int_loan__lifecycle') }}
-- depends_on: {{ ref('int_kpi__client_attrs') }}
-- Each night's changes to int_kpi__loan_month, one batch per run (_change_at):
-- op '-' a row as stored, '+' a row as it must be now, only where they differ,
-- for the loans that may have changed since int_kpi__loan_month's state and
-- the moving months; one op '*' row when int_kpi__loan_month is built in full.
-- The base tables recompute the (slice, month) pairs of both, and a batch is
-- kept until every base table has consumed it
-- (macros/incremental/core_kpi_loan_month.sql).
{%- set state = core_kpi_loan_month_state() if is_incremental() else none %}
{%- set mode = core_mart_mode(state) %}
{%- set values = core_kpi_loan_month_values() %}

{%- if mode == 'full' %}
select
    now()               as _change_at,
    '*'::text           as op,
    null::text          as kind,
    null::bigint        as loan_id,
    null::date          as period_month,
    null::bigint        as client_id,
    null::bigint        as branch_id,
    null::bigint        as loan_officer_id,
    null::bigint        as product_id,
    null::text          as segment_key,
    null::text          as gender,
    null::bigint        as serving_officer_id,
    null::numeric       as outstanding_principal,
    null::int           as days_in_arrears,
    null::numeric       as disbursed_amount
{%- else %}
{%- set moving = core_mart_moving_month(state) %}
{%- set stored_relation = core_kpi_sibling('int_kpi__loan_month') %}
with scope as (
    {{ core_kpi_loan_month_scope(state) }}
)

, fresh as (
    -- two index-driven parts rather than one OR: the scope's loans (any month), the moving months
    {{ core_kpi_loan_month_rows(
        where_p="pm.loan_id in (select s.loan_id from scope s)",
        where_d="t.loan_id in (select s.loan_id from scope s)") }}
    union all
    {{ core_kpi_loan_month_rows(
        where_p="pm.period_month >= " ~ moving ~ " and not exists (select 1 from scope s where s.loan_id = pm.loan_id)",
        where_d="t.transaction_date >= " ~ moving ~ " and not exists (select 1 from scope s where s.loan_id = t.loan_id)") }}
)

, stored as (
    select
        m.kind,
        m.loan_id,
        m.period_month,
        {{ core_kpi_month_columns(alias='m', only=values) }}
    from {{ stored_relation }} m
    where m.loan_id in (select s.loan_id from scope s)
    union all
    select
        m.kind,
        m.loan_id,
        m.period_month,
        {{ core_kpi_month_columns(alias='m', only=values) }}
    from {{ stored_relation }} m
    where m.period_month >= {{ moving }}
      and not exists (select 1 from scope s where s.loan_id = m.loan_id)
)

select now() as _change_at, '-'::text as op, s.*
from stored s
where not exists (
    select 1 from fresh f
    where f.kind = s.kind and f.loan_id = s.loan_id and f.period_month = s.period_month
      and ({{ core_kpi_month_columns(alias='f', only=values) }})
          is not distinct from ({{ core_kpi_month_columns(alias='s', only=values) }})
)
union all
select now(), '+', f.*
from fresh f
where not exists (
    select 1 from stored s
    where s.kind = f.kind and s.loan_id = f.loan_id and s.period_month = f.period_month
      and ({{ core_kpi_month_columns(alias='s', only=values) }})
          is not distinct from ({{ core_kpi_month_columns(alias='f', only=values) }})
)
{%- endif %}
