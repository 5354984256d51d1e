-- Code lists (Gender, ClientClassification, LoanPurpose, ...).
select
    id::bigint                  as code_id,
    code_name::text             as code_name,
    coalesce(is_system_defined, false) as is_system_defined,
    _extracted_at               as extracted_at
from {{ source('fineract', 'm_code') }}
where not _deleted
