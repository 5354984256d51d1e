{{ config(post_hook=["{{ core_index('date_key') }}"]) }}
-- Calendar from the earliest date a fact carries to the end of the later of the
-- as-of month and the last expected maturity. date_key = yyyymmdd; -1 is the
-- unknown member (a missing date). period_end is the contract period the date
-- belongs to (null after as_of_date).
with bounds as (
    select
        least(
            (select min(period_month) from {{ ref('int_kpi__periods') }}),
            (select min(least(submitted_on_date, approved_on_date, disbursed_on, closed_on_date,
                              rejected_on_date, withdrawn_on_date, written_off_on, expected_disbursed_on_date))
             from {{ ref('int_loan__lifecycle') }}),
            (select min(least(submitted_on_date, activation_date, closed_on_date))
             from {{ ref('int_client__current') }}),
            (select min(transaction_date) from {{ ref('int_loan__known_transactions') }}),
            {{ core_as_of_month() }}
        )                                                                           as first_day,
        greatest(
            (select max(greatest(expected_matured_on_date, expected_disbursed_on_date)) from {{ ref('int_loan__lifecycle') }}),
            ({{ core_as_of_month() }} + interval '1 month' - interval '1 day')::date
        )                                                                           as last_day
)

, days as (
    select gs::date as calendar_date
    from bounds
    cross join lateral generate_series(date_trunc('year', bounds.first_day), bounds.last_day, interval '1 day') as gs
)

select
    {{ core_date_key('calendar_date') }}                                           as date_key,
    calendar_date,
    extract(year from calendar_date)::int                                          as year,
    extract(quarter from calendar_date)::int                                       as quarter,
    extract(month from calendar_date)::int                                         as month,
    to_char(calendar_date, 'FMMonth')                                              as month_name,
    to_char(calendar_date, 'YYYY-MM')                                              as year_month,
    extract(day from calendar_date)::int                                           as day_of_month,
    extract(isodow from calendar_date)::int                                        as iso_day_of_week,
    to_char(calendar_date, 'FMDay')                                                as day_name,
    extract(week from calendar_date)::int                                          as iso_week,
    {{ core_period_month('calendar_date') }}                                       as period_month,
    case when calendar_date <= {{ core_as_of_date() }}
         then {{ core_period_end(core_period_month('calendar_date')) }} end        as period_end,
    calendar_date = {{ core_period_end(core_period_month('calendar_date')) }}
        and calendar_date <= {{ core_as_of_date() }}                               as is_period_end,
    calendar_date = (date_trunc('month', calendar_date) + interval '1 month' - interval '1 day')::date as is_month_end
from days

union all

select -1, null, null, null, null, null, null, null, null, null, null, null, null, false, false
