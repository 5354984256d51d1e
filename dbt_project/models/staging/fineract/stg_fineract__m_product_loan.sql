-- Loan products. Reference table copied whole.
select
    p.id::bigint                                    as product_id,
    p.short_name::text                              as product_short_name,
    p.name::text                                    as product_name,
    p.currency_code::text                           as currency_code,
    p.principal_amount::numeric(19, 6)              as default_principal_amount,
    p.nominal_interest_rate_per_period::numeric(19, 6) as nominal_interest_rate_per_period,
    p.annual_nominal_interest_rate::numeric(19, 6)  as annual_nominal_interest_rate,
    p.repay_every::int                              as repay_every,
    p.repayment_period_frequency_enum::int          as repayment_frequency_code,
    rf.enum_value                                   as repayment_frequency,
    p.number_of_repayments::int                     as number_of_repayments,
    p.start_date::date                              as start_date,
    p.close_date::date                              as close_date,
    p._extracted_at                                 as extracted_at
from {{ source('fineract', 'm_product_loan') }} p
left join {{ ref('fineract_enum_labels') }} rf
    on rf.enum_name = 'period_frequency' and rf.enum_code = p.repayment_period_frequency_enum
where not p._deleted
