{{ config(alias='at_risk_loans') }}
-- Real account numbers of the loans in arrears (analytics.kpi_at_risk_loans), for the
-- branch's follow-up visits: restricted schema only (analytics_restricted), readable by
-- branch roles under row-level security (branch_id) and never by bi_reader. Joins to
-- analytics.kpi_at_risk_loans on loan_id or on the pseudonyms analytics publishes.
select
    r.loan_id,
    r.client_id,
    r.branch_id,
    r.loan_officer_id,
    l.loan_account_no,
    r.loan_account_no                   as loan_account_no_pseudonym,
    c.account_no                        as client_account_no,
    r.client_account_no                 as client_account_no_pseudonym,
    r.outstanding_principal,
    r.days_in_arrears,
    r.par_bucket
from {{ ref('kpi_at_risk_loans') }} as r
inner join {{ ref('int_loan__lifecycle') }} as l
    on l.loan_id = r.loan_id
left join {{ ref('int_client__current') }} as c
    on c.client_id = r.client_id
