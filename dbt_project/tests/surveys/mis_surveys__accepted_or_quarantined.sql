{#- Every submission of a PPI survey of the MIS survey module, of a known client, is either accepted or
    quarantined, never both, never neither (contract, "Surveys kept in the MIS"). -#}

with ppi_submissions as (

    select s.submission_key
    from {{ ref('int_mis_surveys__submissions') }} as s
    inner join {{ ref('int_surveys__clients') }} as c
        on c.client_id = s.client_id
    where s.is_ppi_survey

),

outcomes as (

    select
        p.submission_key,
        (a.submission_key is not null)::int + (q.source_key is not null)::int as outcomes
    from ppi_submissions as p
    left join {{ ref('int_mis_surveys__accepted') }} as a
        on a.submission_key = p.submission_key
    left join {{ ref('int_mis_surveys__quarantine') }} as q
        on q.source_key = p.submission_key

)

select
    submission_key,
    format('MIS submission %s is %s', submission_key,
           case when outcomes = 0 then 'neither accepted nor quarantined'
                else 'both accepted and quarantined' end) as problem
from outcomes
where outcomes <> 1
