-- Surveys of Fineract's SPM survey module. a_key is the survey's code (e.g. a PPI's).
select
    id::bigint              as survey_id,
    a_key::text             as survey_key,
    a_name::text            as survey_name,
    country_code::text      as country_code,
    valid_from::date        as valid_from,
    valid_to::date          as valid_to,
    _extracted_at           as extracted_at
from {{ source('fineract', 'm_surveys') }}
where not _deleted
