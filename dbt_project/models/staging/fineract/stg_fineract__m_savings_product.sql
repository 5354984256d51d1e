-- Savings products. Reference table copied whole.
select
    id::bigint                                      as savings_product_id,
    name::text                                      as savings_product_name,
    short_name::text                                as savings_product_short_name,
    currency_code::text                             as currency_code,
    nominal_annual_interest_rate::numeric(19, 6)    as nominal_annual_interest_rate,
    _extracted_at                                   as extracted_at
from {{ source('fineract', 'm_savings_product') }}
where not _deleted
