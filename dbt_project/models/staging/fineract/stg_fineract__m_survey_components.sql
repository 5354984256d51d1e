-- Sections of a survey of Fineract's SPM survey module.
select
    id::bigint              as component_id,
    survey_id::bigint       as survey_id,
    a_key::text             as component_key,
    a_text::text            as component_text,
    sequence_no::integer    as sequence_no,
    _extracted_at           as extracted_at
from {{ source('fineract', 'm_survey_components') }}
where not _deleted
