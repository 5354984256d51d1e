{#- Every current submission is either accepted or quarantined, never both, never neither. -#}

with current_submissions as (

    select submission_key, instance_id from {{ ref('int_surveys__submissions') }}

),

outcomes as (

    select c.submission_key,
           (a.instance_id is not null)::int + (q.source_key is not null)::int as outcomes
    from current_submissions as c
    left join {{ ref('int_surveys__accepted') }} as a
        on a.instance_id = c.instance_id
    left join {{ ref('int_surveys__quarantine') }} as q
        on q.source_key = c.submission_key

)

select submission_key,
       format('submission %s is %s', submission_key,
              case when outcomes = 0 then 'neither accepted nor quarantined' else 'both accepted and quarantined' end) as problem
from outcomes
where outcomes <> 1
