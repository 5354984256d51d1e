{{ config(pre_hook=core_session_settings()) }}
-- KPIs per branch, loan officer and period, with the contract's definitions.
-- Loans count for their m_loan.loan_officer_id and their client's branch;
-- clients for their m_client.staff_id and their branch; -1 = no loan officer.
-- One row per (branch, officer) pair that any client or loan names, every period;
-- summing over branches gives the officer's totals.
{%- set slices_sql -%}
    select coalesce(branch_id, -1) as branch_id, coalesce(loan_officer_id, -1) as loan_officer_id
    from {{ ref('int_client__current') }}
    union
    select coalesce(branch_id, -1), coalesce(loan_officer_id, -1)
    from {{ ref('int_loan__known_loans') }}
{%- endset %}
select
    k.branch_id,
    b.branch_name,
    b.region_id,
    b.region_name,
    k.loan_officer_id,
    d.loan_officer_name,
    d.branch_id                         as loan_officer_branch_id,
    d.branch_name                       as loan_officer_branch_name,
    {{ core_kpi_month_columns() }}
from ({{ core_kpi_month('loan_officer', slices_sql) }}) k
left join {{ ref('dim_branch') }} b on b.branch_id = k.branch_id
left join {{ ref('dim_loan_officer') }} d on d.loan_officer_id = k.loan_officer_id
