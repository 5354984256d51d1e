{{ config(pre_hook=core_session_settings()) }}
-- KPI contract table: one row per branch that any client names as its office,
-- for every period (zeros before the branch's first client). Definitions in
-- macros/core_kpi_month.sql and ../shared/spec/kpi-contract.md.
{%- set slices_sql -%}
    select coalesce(branch_id, -1) as branch_id from {{ ref('int_client__current') }}
{%- endset %}
select
    k.branch_id,
    o.office_name                       as branch_name,
    k.period_end,
    k.active_clients,
    k.new_clients,
    k.exited_clients,
    k.retention_rate,
    k.active_borrowers,
    k.women_borrowers,
    k.gross_loan_portfolio,
    k.par30_principal,
    k.par30_ratio,
    k.ppi_assessed_clients,
    k.avg_poverty_likelihood,
    -- beyond the contract
    b.region_id,
    b.region_name,
    k.period_month,
    k.is_latest_period,
    k.active_clients_previous,
    k.retention_rate_contract,
    k.retention_rate_iris,
    k.retention_rate_followon,
    k.repaid_loans_decided,
    k.dropouts,
    k.loans_outstanding,
    k.write_off_amount,
    k.loans_written_off,
    k.disbursed_amount,
    k.loans_disbursed
from ({{ core_kpi_month(['branch_id'], slices_sql) }}) k
left join {{ ref('stg_fineract__m_office') }} o on o.office_id = k.branch_id
left join {{ ref('dim_branch') }} b on b.branch_id = k.branch_id
