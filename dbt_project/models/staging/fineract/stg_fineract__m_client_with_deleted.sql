-- Every raw m_client row, deleted ones included, with the bookkeeping columns:
-- the change feed of the incremental models (macros/incremental/). A plain
-- rename (see stg_fineract__m_loan_with_deleted).
select
    id                      as client_id,
    submittedon_date        as submitted_on_date,
    created_on_utc,
    _extracted_at           as extracted_at,
    _deleted                as is_deleted
from {{ source('fineract', 'm_client') }}
