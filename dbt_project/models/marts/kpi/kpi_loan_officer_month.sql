{{ config(pre_hook=core_session_settings()) }}
-- KPIs per loan officer and period, with the contract's definitions. Loans count
-- for their m_loan.loan_officer_id, clients for their m_client.staff_id; -1 is
-- "no loan officer". One row per officer named by any client or loan.
{%- set slices_sql -%}
    select coalesce(loan_officer_id, -1) as slice_key from {{ ref('int_client__current') }}
    union
    select coalesce(loan_officer_id, -1) from {{ ref('int_loan__known_loans') }}
{%- endset %}
select
    k.slice_key                         as loan_officer_id,
    d.loan_officer_name,
    d.branch_id                         as loan_officer_branch_id,
    d.branch_name                       as loan_officer_branch_name,
    k.period_end,
    k.period_month,
    k.active_clients,
    k.new_clients,
    k.exited_clients,
    k.active_clients_previous,
    k.retention_rate,
    k.retention_rate_contract,
    k.retention_rate_iris,
    k.retention_rate_followon,
    k.repaid_loans_decided,
    k.dropouts,
    k.active_borrowers,
    k.women_borrowers,
    k.loans_outstanding,
    k.gross_loan_portfolio,
    k.par30_principal,
    k.par30_ratio,
    k.write_off_amount,
    k.loans_written_off,
    k.disbursed_amount,
    k.loans_disbursed,
    k.ppi_assessed_clients,
    k.avg_poverty_likelihood
from ({{ core_kpi_month('loan_officer_id', slices_sql) }}) k
left join {{ ref('dim_loan_officer') }} d on d.loan_officer_id = k.slice_key
