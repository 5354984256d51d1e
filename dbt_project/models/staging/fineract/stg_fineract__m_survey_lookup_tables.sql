-- Score bands of a survey: for the line a_key, scores value_from..value_to (inclusive)
-- have the likelihood `score`, a percentage (likelihood_pct).
select
    id::bigint              as lookup_id,
    survey_id::bigint       as survey_id,
    a_key::text             as lookup_key,
    value_from::integer     as value_from,
    value_to::integer       as value_to,
    score::numeric(5, 2)    as likelihood_pct,
    _extracted_at           as extracted_at
from {{ source('fineract', 'm_survey_lookup_tables') }}
where not _deleted
