-- Values of the code lists; m_client/m_loan point at them through *_cv_id columns.
select
    id::bigint                  as code_value_id,
    code_id::bigint             as code_id,
    code_value::text            as code_value,
    code_description::text      as code_description,
    order_position::int         as order_position,
    coalesce(is_active, true)   as is_active,
    _extracted_at               as extracted_at
from {{ source('fineract', 'm_code_value') }}
where not _deleted
