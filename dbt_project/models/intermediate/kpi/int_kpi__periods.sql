{{ config(pre_hook=core_session_settings()) }}
-- The contract's reporting periods: one per calendar month from the month of the
-- earliest client activation or loan disbursement up to the month of as_of_date.
-- period_end is the month's last day, except as_of_date for the as-of month.
with starts as (
    select min(activation_date) as first_date
    from {{ ref('int_client__current') }}
    union all
    select min(transaction_date)
    from {{ ref('int_loan__known_transactions') }}
    where transaction_type_code = 1
    union all
    select min(disbursed_on_date)
    from {{ ref('int_loan__known_loans') }}
)

, bounds as (
    select date_trunc('month', min(first_date))::date as first_month
    from starts
)

, months as (
    select gs::date as period_month
    from bounds
    cross join lateral generate_series(bounds.first_month, {{ core_as_of_month() }}, interval '1 month') as gs
)

select
    period_month,
    {{ core_period_end('period_month') }}                         as period_end,
    (period_month - 1)                                             as previous_period_end,
    row_number() over (order by period_month)::int                as period_seq,
    {{ core_date_key(core_period_end('period_month')) }}          as period_end_date_key,
    period_month = {{ core_as_of_month() }}                        as is_as_of_period
from months
