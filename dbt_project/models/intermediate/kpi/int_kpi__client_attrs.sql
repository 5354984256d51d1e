{{
  config(
    materialized='incremental',
    unique_key='client_id',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    pre_hook=core_session_settings() + [
      "{% if is_incremental() %}delete from {{ this }} t where not exists (select 1 from {{ ref('int_client__current') }} c where c.client_id = t.client_id){% else %}select 1{% endif %}"
    ],
    post_hook=[
      "{{ core_index('client_id', unique=true) }}",
      "{{ core_index('_changed_at') }}",
      "analyze {{ this }}"
    ]
  )
}}
-- The attributes the kpi_*_month marts slice clients by, as current in the source
-- (the contract restates history with current values): branch, loan officer,
-- entry product (-1 = no disbursed loan), segment, gender. Incremental: a night
-- rewrites only the clients whose attributes changed, stamped _changed_at, so that
-- int_kpi__loan_month_changes finds the loans whose slices moved without a scan
-- (macros/incremental/core_kpi_loan_month.sql); the pre-hook removes clients the
-- warehouse no longer knows.
with attrs as (
    select
        c.client_id,
        coalesce(c.branch_id, -1)           as branch_id,
        coalesce(c.loan_officer_id, -1)     as loan_officer_id,
        coalesce(ep.entry_product_id, -1)   as product_id,
        c.segment_key,
        c.gender
    from {{ ref('int_client__current') }} c
    left join {{ ref('int_client__entry_product') }} ep on ep.client_id = c.client_id
)

select
    a.client_id,
    a.branch_id,
    a.loan_officer_id,
    a.product_id,
    a.segment_key,
    a.gender,
    now() as _changed_at
from attrs a
{%- if is_incremental() %}
where not exists (
    select 1
    from {{ this }} t
    where t.client_id = a.client_id
      and (t.branch_id, t.loan_officer_id, t.product_id, t.segment_key, t.gender)
          is not distinct from (a.branch_id, a.loan_officer_id, a.product_id, a.segment_key, a.gender)
)
{%- endif %}
