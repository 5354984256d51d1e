{#-
    Drill-down behind the PAR figures: the loans in arrears at the as-of date
    (the latest period), one row per loan with days_in_arrears > 0 and
    principal outstanding, from fct_loan (same attribution: the client's
    current branch, m_loan's product and officer). par_bucket: 1-30, 31-90 or
    90+ days in arrears (PAR30 = the 31-90 and 90+ buckets).
    Account numbers are the keyed pseudonyms analytics publishes (fct_loan,
    dim_client); the real numbers of these loans are in
    analytics_restricted.at_risk_loans. client_id is the MIS's internal id,
    published like in fct_loan (docs/security.md).
-#}

with in_arrears as (

    select
        f.*,
        case
            when f.days_in_arrears > 90 then '90+'
            when f.days_in_arrears > 30 then '31-90'
            else '1-30'
        end                                                         as par_bucket
    from {{ ref('fct_loan') }} as f
    where f.days_in_arrears > 0
      and f.outstanding_principal > 0

)

select
    {{ core_as_of_date() }}                                         as period_end,
    f.loan_id,
    f.loan_account_no,
    f.client_id,
    c.account_no                                                    as client_account_no,
    f.branch_id,
    b.branch_name,
    b.region_id,
    b.region_name,
    f.loan_officer_id,
    o.loan_officer_name,
    f.product_id,
    p.product_name,
    f.outstanding_principal,
    f.days_in_arrears,
    f.par_bucket,
    {{ display_label('par_bucket', 'f.par_bucket') }}               as par_bucket_label,
    f.is_par30,
    f.disbursed_on,
    f.expected_matured_on_date
from in_arrears as f
left join {{ ref('dim_branch') }} as b
    on b.branch_id = f.branch_id
left join {{ ref('dim_loan_officer') }} as o
    on o.loan_officer_id = f.loan_officer_id
left join {{ ref('dim_product') }} as p
    on p.product_id = f.product_id
left join {{ ref('dim_client') }} as c
    on c.client_id = f.client_id
   and c.is_current
