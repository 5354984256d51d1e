{{ config(pre_hook=core_session_settings(), post_hook=["{{ core_index('period_end, branch_id') }}"]) }}
-- KPI contract table: one row per loan per period in which the loan's
-- outstanding principal at period_end is > 0. Branch = the client's current
-- branch, product and officer = m_loan's (officer null if none).
-- Extra columns: client_id, period_month and period_end_date_key.
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
    {{ core_date_key('b.period_end') }}                            as period_end_date_key
from {{ ref('int_loan__balances_as_of') }} b
join {{ ref('int_loan__known_loans') }} l on l.loan_id = b.loan_id
where b.outstanding_principal > 0
