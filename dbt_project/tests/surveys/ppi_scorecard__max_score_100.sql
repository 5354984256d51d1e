{{ config(tags=['ppi_scorecard'], store_failures=true) }}
{#- The best answer of every question adds up to 100 and the worst to at least 0. -#}

with per_question as (

    select scorecard_code, question_code, max(points) as best, min(points) as worst
    from {{ ref('ppi_scorecard_points') }}
    group by 1, 2

)

select scorecard_code,
       format('scorecard %s: the highest possible score is %s and the lowest %s; a PPI scorecard runs from 0 to 100',
              scorecard_code, sum(best), sum(worst)) as problem
from per_question
group by scorecard_code
having sum(best) <> 100 or sum(worst) < 0
