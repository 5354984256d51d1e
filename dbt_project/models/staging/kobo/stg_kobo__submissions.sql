-- Every raw_kobo.submissions row as loaded, payload verbatim (any form). A
-- plain projection, no joins or aggregation, so that PostgreSQL flattens it
-- into the query reading it and a filter or max() on loaded_at reaches the
-- table's index. Read by the form drift counts (int_surveys__unknown_field_counts,
-- the rows loaded since their state) and the incremental state of
-- int_surveys__submissions; the SPM form's
-- answers are read through stg_kobo__spm_client_monitoring.
select
    content_hash,
    source,
    asset_uid,
    kobo_id,
    instance_id,
    submission_time,
    payload,
    loaded_at,
    run_id
from {{ source('raw_kobo', 'submissions') }}
