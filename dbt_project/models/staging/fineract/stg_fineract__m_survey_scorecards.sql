-- One row per answer given in Fineract's SPM survey module: a submission is the rows
-- of one survey_id, client_id and created_on (contract). created_on as stored (no zone).
select
    id::bigint              as scorecard_id,
    survey_id::bigint       as survey_id,
    question_id::bigint     as question_id,
    response_id::bigint     as response_id,
    client_id::bigint       as client_id,
    created_on::timestamp   as created_on,
    a_value::integer        as points,
    _extracted_at           as extracted_at
from {{ source('fineract', 'm_survey_scorecards') }}
where not _deleted
