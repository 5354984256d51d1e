-- Which officer served a loan when (Fineract keeps one row per assignment).
select
    id::bigint              as assignment_id,
    loan_id::bigint         as loan_id,
    loan_officer_id::bigint as loan_officer_id,
    start_date::date        as start_date,
    end_date::date          as end_date,
    _extracted_at           as extracted_at
from {{ source('fineract', 'm_loan_officer_assignment_history') }}
where not _deleted
