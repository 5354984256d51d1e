{#-
    The MIS clients surveys are matched to, with the attributes the survey
    outcomes are sliced by.

    The one place the survey models read the Fineract staging models, so a
    change there is fixed here only. Attribution follows the KPI contract:
    branch, gender and product are the values current in the source; gender
    is the Gender code value, Female/Male compared case-insensitively, else
    unknown. product = the product of the client's most recent loan
    (disbursed loans first, then by date and id); null without loans.
-#}

with clients as (

    select * from {{ ref('stg_fineract__m_client') }}

),

gender_values as (

    select cv.code_value_id, cv.code_value
    from {{ ref('stg_fineract__m_code_value') }} as cv
    inner join {{ ref('stg_fineract__m_code') }} as c
        on c.code_id = cv.code_id
    where c.code_name = 'Gender'

),

latest_loan as (

    select distinct on (l.client_id)
        l.client_id,
        l.product_id
    from {{ ref('stg_fineract__m_loan') }} as l
    where l.client_id is not null
    order by l.client_id,
             (l.disbursed_on_date is not null) desc,
             l.disbursed_on_date desc nulls last,
             l.submitted_on_date desc nulls last,
             l.loan_id desc

)

select
    c.client_id,
    c.account_no,
    c.office_id                                     as branch_id,
    o.office_name                                   as branch_name,
    case lower(btrim(g.code_value))
        when 'female' then 'female'
        when 'male' then 'male'
        else 'unknown'
    end                                             as gender,
    c.activation_date,
    c.closed_on_date,
    ll.product_id,
    p.product_name
from clients as c
left join gender_values as g
    on g.code_value_id = c.gender_cv_id
left join {{ ref('stg_fineract__m_office') }} as o
    on o.office_id = c.office_id
left join latest_loan as ll
    on ll.client_id = c.client_id
left join {{ ref('stg_fineract__m_product_loan') }} as p
    on p.product_id = ll.product_id
