{{ config(post_hook=["{{ core_index('loan_id', unique=true) }}"]) }}
-- Loans the warehouse may know at the as-of date: created (created_on_utc) and
-- submitted (submittedon_date) by then. Dates after as_of_date are blanked so that
-- a backfill never sees a later event. Attribution follows the contract: the
-- loan belongs to its client's current branch (the group's office for a group
-- loan without a client) and is served by m_loan.loan_officer_id.
with loans as (
    select *
    from {{ ref('stg_fineract__m_loan') }}
    where {{ core_known_at_cutoff('created_on_utc') }}
      and (submitted_on_date is null or submitted_on_date <= {{ core_as_of_date() }})
)

select
    l.loan_id,
    l.loan_account_no,
    l.client_id,
    l.group_id,
    coalesce(c.branch_id, g.office_id)              as branch_id,
    l.product_id,
    l.loan_officer_id,
    l.loan_purpose_cv_id,
    purpose.code_value                              as loan_purpose,
    l.loan_status_code,
    l.loan_status,
    l.loan_type,
    l.currency_code,
    l.principal_proposed,
    l.principal_approved,
    l.principal_amount,
    l.annual_nominal_interest_rate,
    l.term_frequency,
    l.term_period_frequency,
    l.repay_every,
    l.repayment_frequency,
    l.number_of_repayments,
    l.loan_counter,
    l.loan_product_counter,
    l.submitted_on_date,
    case when l.approved_on_date <= {{ core_as_of_date() }} then l.approved_on_date end           as approved_on_date,
    l.expected_disbursed_on_date,
    case when l.disbursed_on_date <= {{ core_as_of_date() }} then l.disbursed_on_date end         as disbursed_on_date,
    l.expected_matured_on_date,
    case when l.matured_on_date <= {{ core_as_of_date() }} then l.matured_on_date end             as matured_on_date,
    case when l.closed_on_date <= {{ core_as_of_date() }} then l.closed_on_date end               as closed_on_date,
    case when l.rejected_on_date <= {{ core_as_of_date() }} then l.rejected_on_date end           as rejected_on_date,
    case when l.withdrawn_on_date <= {{ core_as_of_date() }} then l.withdrawn_on_date end         as withdrawn_on_date,
    case when l.written_off_on_date <= {{ core_as_of_date() }} then l.written_off_on_date end     as written_off_on_date
from loans l
left join {{ ref('int_client__current') }} c on c.client_id = l.client_id
left join {{ ref('stg_fineract__m_group') }} g on g.group_id = l.group_id
left join {{ ref('int_fineract__code_values') }} purpose on purpose.code_value_id = l.loan_purpose_cv_id
