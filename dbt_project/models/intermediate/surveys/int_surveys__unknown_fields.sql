{#-
    Form version drift report: answer fields present in raw submissions that
    the warehouse does not read, per form and version, over every raw
    submission: the sum of the per-run counts of int_surveys__unknown_field_counts
    (which says what is known and how the rows are read).
-#}

select
    c.asset_uid,
    c.form_version,
    c.field_name,
    sum(c.submissions)::bigint      as submissions,
    min(c.first_submission_time)    as first_submission_time,
    max(c.last_submission_time)     as last_submission_time
from {{ ref('int_surveys__unknown_field_counts') }} as c
where c.field_name is not null
group by 1, 2, 3
