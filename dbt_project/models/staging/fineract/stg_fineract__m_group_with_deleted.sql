-- Every raw m_group row, deleted ones included, with the bookkeeping columns:
-- the change feed of the incremental models (macros/incremental/). A plain
-- rename (see stg_fineract__m_loan_with_deleted).
select
    id                      as group_id,
    _extracted_at           as extracted_at,
    _deleted                as is_deleted
from {{ source('fineract', 'm_group') }}
