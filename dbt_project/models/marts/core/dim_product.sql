{{ config(post_hook=["{{ core_index('product_id') }}"]) }}
-- Loan products; products that loans name but the source no longer has are
-- inferred members; -1 is the unknown member.
with products as (
    select * from {{ ref('stg_fineract__m_product_loan') }}
)

, referenced as (
    select distinct product_id from {{ ref('int_loan__known_loans') }}
)

select
    p.product_id,
    p.product_name,
    p.product_short_name,
    p.currency_code,
    p.default_principal_amount,
    p.nominal_interest_rate_per_period,
    p.annual_nominal_interest_rate,
    p.repay_every,
    p.repayment_frequency,
    p.number_of_repayments,
    p.start_date,
    p.close_date,
    false                       as is_inferred
from products p

union all

select r.product_id, 'Unknown product ' || r.product_id, null, null, null, null, null, null, null, null, null, null, true
from referenced r
where r.product_id is not null
  and r.product_id <> -1
  and not exists (select 1 from products p where p.product_id = r.product_id)

union all

select -1, 'Unknown', null, null, null, null, null, null, null, null, null, null, true
