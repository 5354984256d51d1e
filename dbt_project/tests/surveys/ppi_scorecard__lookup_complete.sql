{{ config(tags=['ppi_scorecard'], store_failures=true) }}
{#-
    Points and likelihoods describe the same scorecards; every scorecard has
    the poverty line the KPIs use (var ppi_poverty_line); the default
    scorecard (var ppi_default_scorecard) exists.
-#}

with point_cards as (

    select distinct scorecard_code from {{ ref('ppi_scorecard_points') }}

),

likelihood_cards as (

    select scorecard_code,
           bool_or(poverty_line = '{{ var("ppi_poverty_line") }}') as has_kpi_line,
           string_agg(distinct poverty_line, ', ') as lines
    from {{ ref('ppi_scorecard_likelihoods') }}
    group by scorecard_code

)

select p.scorecard_code,
       format('scorecard %s has points but no likelihood table', p.scorecard_code) as problem
from point_cards as p
where not exists (select 1 from likelihood_cards as l where l.scorecard_code = p.scorecard_code)

union all

select l.scorecard_code,
       format('scorecard %s has likelihoods but no points', l.scorecard_code)
from likelihood_cards as l
where not exists (select 1 from point_cards as p where p.scorecard_code = l.scorecard_code)

union all

select l.scorecard_code,
       format('scorecard %s has no likelihoods for poverty line %s (var ppi_poverty_line); it has: %s',
              l.scorecard_code, '{{ var("ppi_poverty_line") }}', l.lines)
from likelihood_cards as l
where not l.has_kpi_line

union all

select '{{ var("ppi_default_scorecard") }}',
       format('the default scorecard %s (var ppi_default_scorecard) is not in ppi_scorecard_points',
              '{{ var("ppi_default_scorecard") }}')
where not exists (
    select 1 from point_cards
    where btrim(scorecard_code) = '{{ var("ppi_default_scorecard") }}'
)
