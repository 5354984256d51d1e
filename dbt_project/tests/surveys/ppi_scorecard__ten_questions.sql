{{ config(tags=['ppi_scorecard'], store_failures=true) }}
{#- A PPI scorecard has exactly ten questions, q01 .. q10, each with at least two answers. -#}

with questions as (

    select scorecard_code, question_code, count(*) as answers
    from {{ ref('ppi_scorecard_points') }}
    group by 1, 2

)

select scorecard_code,
       format('scorecard %s has %s questions (%s); a PPI scorecard has exactly ten, q01..q10',
              scorecard_code, count(*), string_agg(question_code, ',' order by question_code)) as problem
from questions
group by scorecard_code
having count(*) <> 10
    or count(*) filter (where question_code ~ '^q(0[1-9]|10)$') <> 10

union all

select scorecard_code,
       format('scorecard %s question %s has only %s answer; every question needs at least two',
              scorecard_code, question_code, answers)
from questions
where answers < 2
