-- Every raw m_loan row, those marked deleted included, with the bookkeeping
-- columns: the change feed that the incremental models' scope and watermark
-- read (macros/incremental/). A plain rename of one table, no joins, casts or
-- aggregation, so that PostgreSQL flattens it into the query reading it and
-- their _extracted_at / created_on_utc filters reach raw_mis directly.
select
    id                      as loan_id,
    client_id,
    group_id,
    submittedon_date        as submitted_on_date,
    writtenoffon_date       as written_off_on_date,
    created_on_utc,
    _extracted_at           as extracted_at,
    _deleted                as is_deleted
from {{ source('fineract', 'm_loan') }}
