{{ config(pre_hook=core_session_settings(), post_hook=["{{ core_index('loan_id') }}"]) }}
-- The index on loan_id: the relationships tests of fct_loan_transaction and fct_portfolio_month look
-- it up from the rows a night wrote (see dim_client).
-- One row per loan known at as_of_date: who, where, what product and purpose,
-- cycle, amounts, term, key dates, status, and where it stands at as_of_date.
-- Attribution (branch, product, officer) as in the KPI contract: current values;
-- client_sk is the client's dim_client version on the disbursement date
-- (submission date when not disbursed). Missing references are -1.
-- loan_account_no is a keyed pseudonym (account_pseudonym): the real number is
-- only in the restricted schema (analytics_restricted.loan_account).
with balance_now as (
    select loan_id, outstanding_principal, days_in_arrears
    from {{ ref('int_loan__balances_as_of') }}
    where period_month = {{ core_as_of_month() }}
)

select
    l.loan_id,
    {{ account_pseudonym('l.loan_account_no') }}                  as loan_account_no,
    coalesce(l.client_id, -1)                                               as client_id,
    coalesce(dc.client_sk, cur.client_sk, -1)                               as client_sk,
    l.group_id,
    coalesce(l.branch_id, -1)                                               as branch_id,
    coalesce(l.product_id, -1)                                              as product_id,
    coalesce(l.loan_officer_id, -1)                                         as loan_officer_id,
    l.loan_type,
    coalesce(l.loan_purpose, 'unknown')                                     as loan_purpose,
    l.loan_cycle,
    l.loan_counter                                                          as source_loan_counter,
    l.loan_product_counter                                                  as source_loan_product_counter,
    l.currency_code,
    l.principal_proposed,
    l.principal_approved,
    l.principal_amount,
    l.principal_disbursed,
    l.principal_repaid,
    l.interest_repaid,
    l.written_off_principal,
    l.recovered_amount,
    l.annual_nominal_interest_rate,
    l.term_frequency,
    l.term_period_frequency,
    l.number_of_repayments,
    l.repay_every,
    l.repayment_frequency,
    l.submitted_on_date,
    l.approved_on_date,
    l.disbursed_on,
    l.expected_matured_on_date,
    l.matured_on_date,
    l.closed_on_date,
    l.written_off_on,
    {{ core_date_key('l.submitted_on_date') }}                             as submitted_date_key,
    {{ core_date_key('l.disbursed_on') }}                                  as disbursed_date_key,
    {{ core_date_key('l.expected_matured_on_date') }}                      as expected_maturity_date_key,
    {{ core_date_key('l.closed_on_date') }}                                as closed_date_key,
    l.status_as_of                                                          as loan_status,
    l.source_loan_status,
    coalesce(b.outstanding_principal, 0)::numeric(19, 6)                    as outstanding_principal,
    coalesce(b.days_in_arrears, 0)                                          as days_in_arrears,
    coalesce(b.days_in_arrears, 0) > 30                                     as is_par30
from {{ ref('int_loan__lifecycle') }} l
left join balance_now b on b.loan_id = l.loan_id
left join {{ ref('dim_client') }} dc
    on dc.client_id = l.client_id
   and coalesce(l.disbursed_on, l.submitted_on_date) between dc.valid_from and dc.valid_to
left join {{ ref('dim_client') }} cur
    on cur.client_id = l.client_id and cur.is_current
