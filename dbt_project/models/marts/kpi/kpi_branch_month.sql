{{ config(pre_hook=core_session_settings()) }}
-- KPI contract table: one row per branch that any client names as its office,
-- for every period (zeros before the branch's first client). Definitions in
-- macros/core_kpi_month.sql and docs/kpi-contract.md.
{%- set slices_sql -%}
    select coalesce(branch_id, -1) as branch_id from {{ ref('int_client__current') }}
{%- endset %}
select
    k.branch_id,
    o.office_name                       as branch_name,
    {{ core_kpi_month_columns(only=core_kpi_contract_columns()) }},
    -- beyond the contract
    b.region_id,
    b.region_name,
    {{ core_kpi_month_columns(except=core_kpi_contract_columns()) }}
from ({{ core_kpi_month('branch', slices_sql) }}) k
left join {{ ref('stg_fineract__m_office') }} o on o.office_id = k.branch_id
left join {{ ref('dim_branch') }} b on b.branch_id = k.branch_id
