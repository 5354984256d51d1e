{{ config(tags=['ppi_scorecard'], store_failures=true) }}
{#- For each scorecard and poverty line, the likelihood never rises as the score rises. -#}

with ordered as (

    select
        scorecard_code, poverty_line, score_from, score_to, likelihood,
        lag(likelihood) over (partition by scorecard_code, poverty_line order by score_from, score_to) as previous_likelihood,
        lag(score_to) over (partition by scorecard_code, poverty_line order by score_from, score_to) as previous_score_to
    from {{ ref('ppi_scorecard_likelihoods') }}

)

select scorecard_code,
       format('scorecard %s poverty line %s: likelihood rises from %s (scores up to %s) to %s (scores %s-%s); it must not increase with the score',
              scorecard_code, poverty_line, previous_likelihood, previous_score_to, likelihood, score_from, score_to) as problem
from ordered
where likelihood > previous_likelihood
