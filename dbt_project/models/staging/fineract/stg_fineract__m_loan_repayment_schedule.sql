-- Repayment schedule installments of every loan.
select
    id::bigint                                      as installment_id,
    loan_id::bigint                                 as loan_id,
    fromdate::date                                  as from_date,
    duedate::date                                   as due_date,
    installment::int                                as installment_number,
    coalesce(principal_amount, 0)::numeric(19, 6)   as principal_due,
    coalesce(principal_completed_derived, 0)::numeric(19, 6) as principal_completed,
    coalesce(principal_writtenoff_derived, 0)::numeric(19, 6) as principal_written_off,
    coalesce(interest_amount, 0)::numeric(19, 6)    as interest_due,
    coalesce(interest_completed_derived, 0)::numeric(19, 6) as interest_completed,
    coalesce(completed_derived, false)              as is_completed,
    obligations_met_on_date::date                   as obligations_met_on_date,
    created_on_utc::timestamptz                     as created_on_utc,
    last_modified_on_utc::timestamptz               as last_modified_on_utc,
    _extracted_at                                   as extracted_at
from {{ source('fineract', 'm_loan_repayment_schedule') }}
where not _deleted
