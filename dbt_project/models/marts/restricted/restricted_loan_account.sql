{{ config(alias='loan_account') }}
-- Real loan account numbers, for follow-up lists: restricted schema only
-- (analytics_restricted), readable by branch roles under row-level security and
-- never by bi_reader. Joins to analytics.fct_loan on loan_id or on the pseudonym
-- analytics publishes (loan_account_no_pseudonym = fct_loan.loan_account_no).
select
    f.loan_id,
    f.client_id,
    f.branch_id,
    l.loan_account_no,
    f.loan_account_no as loan_account_no_pseudonym
from {{ ref('fct_loan') }} f
join {{ ref('int_loan__lifecycle') }} l on l.loan_id = f.loan_id
