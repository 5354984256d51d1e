-- Code values with the name of their code list, for label lookups (Gender, LoanPurpose, ...).
select
    cv.code_value_id,
    cv.code_id,
    c.code_name,
    cv.code_value,
    cv.code_description,
    cv.order_position,
    cv.is_active
from {{ ref('stg_fineract__m_code_value') }} cv
left join {{ ref('stg_fineract__m_code') }} c on c.code_id = cv.code_id
