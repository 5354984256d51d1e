{{ config(tags=['ppi_scorecard'], store_failures=true) }}
{#- Every answer has exactly one whole, non-negative number of points. -#}

select scorecard_code,
       format('scorecard %s question %s answer %s: points missing or negative (%s)',
              scorecard_code, question_code, answer_code, coalesce(points::text, 'empty')) as problem
from {{ ref('ppi_scorecard_points') }}
where points is null or points < 0

union all

select scorecard_code,
       format('scorecard %s question %s answer %s is listed %s times; give each answer one row',
              scorecard_code, question_code, btrim(answer_code), count(*))
from {{ ref('ppi_scorecard_points') }}
group by scorecard_code, question_code, btrim(answer_code)
having count(*) > 1
