-- Answer choices of each survey question, with their points (a_value).
select
    id::bigint              as response_id,
    question_id::bigint     as question_id,
    a_text::text            as response_text,
    a_value::integer        as points,
    sequence_no::integer    as sequence_no,
    _extracted_at           as extracted_at
from {{ source('fineract', 'm_survey_responses') }}
where not _deleted
