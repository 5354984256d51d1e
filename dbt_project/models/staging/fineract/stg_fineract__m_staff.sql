-- Staff; loan officers are the ones BI slices by. display_name is kept on purpose
-- (staff names are not client PII); no phone, e-mail or external id arrives here.
select
    id::bigint                  as staff_id,
    office_id::bigint           as office_id,
    display_name::text          as staff_name,
    coalesce(is_loan_officer, false) as is_loan_officer,
    coalesce(is_active, true)   as is_active,
    joining_date::date          as joining_date,
    _extracted_at               as extracted_at
from {{ source('fineract', 'm_staff') }}
where not _deleted
