{#-
    Wave-to-wave change per client and indicator: from the client's baseline
    to the client's latest follow-up, for monthly household income, poverty
    likelihood and school enrolment.

    baseline        = the client's first accepted baseline survey (by
                      interview date, submission time, lower _id)
    latest follow-up = the client's last accepted follow-up interviewed after
                      the baseline and on or before the as-of date (by
                      interview date, submission time, higher _id - the
                      contract's tie rule)
    A client counts for an indicator only when both surveys carry a value
    (school enrolment needs school-age children at both). Exit interviews
    are not follow-ups. improved/worsened follow the catalogue's
    better_direction.
-#}

with accepted as (

    select * from {{ ref('int_surveys__accepted') }}
    where interview_date <= {{ core_as_of_date() }}

),

baseline as (

    select distinct on (client_id) *
    from accepted
    where survey_type = 'baseline'
    order by client_id, interview_date, submission_time nulls last, kobo_id

),

latest_followup as (

    select distinct on (f.client_id) f.*
    from accepted as f
    inner join baseline as b
        on b.client_id = f.client_id
    where f.survey_type = 'followup'
      and (f.interview_date, coalesce(f.submission_time, '-infinity'))
          > (b.interview_date, coalesce(b.submission_time, '-infinity'))
    order by f.client_id, f.interview_date desc, f.submission_time desc nulls last, f.kobo_id desc

),

pairs as (

    select
        b.client_id,
        b.instance_id               as baseline_instance_id,
        b.interview_date            as baseline_date,
        f.instance_id               as followup_instance_id,
        f.interview_date            as followup_date,
        v.indicator_code,
        v.baseline_value,
        v.followup_value
    from baseline as b
    inner join latest_followup as f
        on f.client_id = b.client_id
    cross join lateral (
        values
            ('monthly_hh_income', b.monthly_hh_income, f.monthly_hh_income),
            ('poverty_likelihood', b.poverty_likelihood::numeric, f.poverty_likelihood::numeric),
            ('school_enrolment_rate', b.school_enrolment_rate, f.school_enrolment_rate)
    ) as v (indicator_code, baseline_value, followup_value)
    where v.baseline_value is not null
      and v.followup_value is not null

)

select
    p.client_id,
    p.indicator_code,
    p.baseline_instance_id,
    p.baseline_date,
    p.followup_instance_id,
    p.followup_date,
    round((p.followup_date - p.baseline_date) / 365.25, 2)        as years_between,
    p.baseline_value,
    p.followup_value,
    p.followup_value - p.baseline_value                          as change,
    case
        when p.followup_value = p.baseline_value then 'unchanged'
        when (p.followup_value > p.baseline_value) = (i.better_direction = 'higher') then 'improved'
        else 'worsened'
    end                                                          as direction_of_change
from pairs as p
inner join {{ ref('indicator_catalogue') }} as i
    on i.indicator_code = p.indicator_code
