-- Questions of a survey of Fineract's SPM survey module.
select
    id::bigint              as question_id,
    survey_id::bigint       as survey_id,
    component_key::text     as component_key,
    a_key::text             as question_key,
    a_text::text            as question_text,
    sequence_no::integer    as sequence_no,
    _extracted_at           as extracted_at
from {{ source('fineract', 'm_survey_questions') }}
where not _deleted
