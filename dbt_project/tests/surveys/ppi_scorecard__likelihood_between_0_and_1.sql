{{ config(tags=['ppi_scorecard'], store_failures=true) }}
{#- Likelihoods are fractions 0..1 (official tables print percentages: divide them by 100). -#}

select scorecard_code,
       format('scorecard %s poverty line %s scores %s-%s: likelihood %s is not a fraction between 0 and 1%s',
              scorecard_code, poverty_line, score_from, score_to, coalesce(likelihood::text, 'empty'),
              case when likelihood > 1 and likelihood <= 100 then ' (percentages? divide by 100)' else '' end) as problem
from {{ ref('ppi_scorecard_likelihoods') }}
where likelihood is null or likelihood < 0 or likelihood > 1
