{#-
    Why clients leave, by branch and month: every client who left, with the
    reason of their exit interview, per branch (the client's branch current in
    the MIS) and period (one per calendar month, period_end = last day of the
    month, or the as-of date for the as-of month).

    A client counts in a period when the MIS closed them in it (closedon_date,
    the exits of kpi_branch_month.exited_clients) or when they gave an accepted
    exit interview dated in it. The reason is that of their latest exit
    interview in the period (a client interviewed twice counts once); a client
    the MIS closed in the period with no exit interview in it counts under
    exit_reason 'not_recorded', so the exits of the MIS all appear and the
    reasons can be read against them. An interview without a reason counts
    under 'not_stated'. Only branch-months with exits have rows.
-#}

with interviews as (

    select
        a.client_id,
        coalesce(a.exit_reason, 'not_stated')                               as exit_reason,
        a.interview_date,
        a.submission_time,
        a.kobo_id,
        date_trunc('month', a.interview_date)::date                          as period_start
    from {{ ref('int_surveys__accepted') }} as a
    where a.survey_type = 'exit'
      and a.interview_date <= {{ core_as_of_date() }}

),

latest_interview as (

    select distinct on (i.client_id, i.period_start) i.*
    from interviews as i
    order by i.client_id, i.period_start, i.interview_date desc, i.submission_time desc nulls last, i.kobo_id desc

),

mis_exits as (

    -- closedon_date is blanked after the as-of date by int_client__current
    select
        c.client_id,
        date_trunc('month', c.closed_on_date)::date                          as period_start
    from {{ ref('int_client__current') }} as c
    where c.closed_on_date is not null

),

exits as (

    select
        coalesce(li.client_id, me.client_id)                                 as client_id,
        coalesce(li.period_start, me.period_start)                           as period_start,
        coalesce(li.exit_reason, 'not_recorded')                             as exit_reason,
        li.client_id is not null                                             as is_interviewed,
        me.client_id is not null                                             as is_mis_exit
    from latest_interview as li
    full outer join mis_exits as me
        on me.client_id = li.client_id
       and me.period_start = li.period_start

),

counted as (

    select
        coalesce(c.branch_id, -1)                                            as branch_id,
        c.branch_name,
        e.period_start,
        least((e.period_start + interval '1 month - 1 day')::date,
              {{ core_as_of_date() }})                                       as period_end,
        e.exit_reason,
        count(*)                                                             as exited_clients,
        count(*) filter (where e.is_interviewed)                             as exit_interviews,
        count(*) filter (where e.is_mis_exit)                                as mis_exits
    from exits as e
    inner join {{ ref('int_surveys__clients') }} as c
        on c.client_id = e.client_id
    group by 1, 2, 3, 4, 5

)

select
    ct.branch_id,
    ct.branch_name,
    b.region_id,
    b.region_name,
    ct.period_start,
    ct.period_end,
    ct.exit_reason,
    {{ display_label('exit_reason', 'ct.exit_reason') }}                    as exit_reason_label,
    ct.exited_clients,
    ct.exit_interviews,
    ct.mis_exits,
    sum(ct.exited_clients) over w_branch_period                              as branch_exited_clients,
    sum(ct.exit_interviews) over w_branch_period                             as branch_exit_interviews,
    round(ct.exited_clients::numeric / sum(ct.exited_clients) over w_branch_period, 6)
                                                                             as share_of_branch_exits,
    round(ct.exit_interviews::numeric / nullif(sum(ct.exit_interviews) over w_branch_period, 0), 6)
                                                                             as share_of_branch_exit_interviews
from counted as ct
left join {{ ref('dim_branch') }} as b
    on b.branch_id = ct.branch_id
window w_branch_period as (partition by ct.branch_id, ct.period_start)
