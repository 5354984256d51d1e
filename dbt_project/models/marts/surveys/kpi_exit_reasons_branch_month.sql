{#-
    Why clients leave, by branch and month: accepted exit interviews by the
    exit reason given, per branch (the client's branch current in the MIS)
    and period (one per calendar month, period_end = last day of the month,
    or the as-of date for the as-of month; exits are counted in the period
    of their interview date). A client interviewed twice at exit in one
    period counts once, with the reason of the latest interview.
    Only branch-months with exit interviews have rows.
-#}

with exits as (

    select
        a.client_id,
        a.exit_reason,
        a.interview_date,
        a.submission_time,
        a.kobo_id,
        date_trunc('month', a.interview_date)::date                          as period_start
    from {{ ref('int_surveys__accepted') }} as a
    where a.survey_type = 'exit'
      and a.interview_date <= {{ core_as_of_date() }}

),

latest_per_client_period as (

    select distinct on (e.client_id, e.period_start) e.*
    from exits as e
    order by e.client_id, e.period_start, e.interview_date desc, e.submission_time desc nulls last, e.kobo_id desc

),

counted as (

    select
        c.branch_id,
        c.branch_name,
        e.period_start,
        least((e.period_start + interval '1 month - 1 day')::date,
              {{ core_as_of_date() }})                               as period_end,
        e.exit_reason,
        count(*)                                                             as exit_interviews
    from latest_per_client_period as e
    inner join {{ ref('int_surveys__clients') }} as c
        on c.client_id = e.client_id
    group by 1, 2, 3, 4, 5

)

select
    c.branch_id,
    c.branch_name,
    b.region_id,
    b.region_name,
    c.period_start,
    c.period_end,
    c.exit_reason,
    c.exit_interviews,
    sum(c.exit_interviews) over (partition by c.branch_id, c.period_start)   as branch_exit_interviews,
    round(c.exit_interviews::numeric
          / sum(c.exit_interviews) over (partition by c.branch_id, c.period_start), 6) as share_of_branch_exits
from counted as c
left join {{ ref('dim_branch') }} as b
    on b.branch_id = c.branch_id
