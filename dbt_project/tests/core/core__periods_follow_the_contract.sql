-- Periods: consecutive months, each ending on its last day except the month of
-- as_of_date, which ends on as_of_date; the first is the month of the earliest
-- activation or disbursement.
with p as (
    select period_month, period_end, lag(period_month) over (order by period_month) as previous_month
    from {{ ref('int_kpi__periods') }}
)

select period_month, period_end, 'not consecutive' as problem
from p
where previous_month is not null and period_month <> (previous_month + interval '1 month')::date
union all
select period_month, period_end, 'wrong period_end'
from p
where period_end <> case when period_month = date_trunc('month', {{ core_as_of_date() }})::date
                         then {{ core_as_of_date() }}
                         else (period_month + interval '1 month' - interval '1 day')::date end
union all
select max(period_month), max(period_end), 'last period is not the as-of month'
from p
having max(period_month) <> date_trunc('month', {{ core_as_of_date() }})::date
union all
select min(p.period_month), null, 'first period is not the month of the first activation/disbursement'
from p
having min(p.period_month) <> (
    select date_trunc('month', min(d))::date from (
        select min(activation_date) as d from {{ ref('int_client__current') }}
        union all
        select min(disbursed_on) from {{ ref('int_loan__lifecycle') }}
    ) firsts
)
