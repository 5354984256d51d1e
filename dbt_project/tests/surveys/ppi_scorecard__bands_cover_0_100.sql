{{ config(tags=['ppi_scorecard'], store_failures=true) }}
{#- For each scorecard and poverty line, the score bands cover 0..100 exactly once: no gap, no overlap. -#}

with bands as (

    select
        scorecard_code, poverty_line, score_from, score_to,
        lag(score_to) over (partition by scorecard_code, poverty_line order by score_from, score_to) as previous_to,
        row_number() over (partition by scorecard_code, poverty_line order by score_from, score_to) as band_number,
        count(*) over (partition by scorecard_code, poverty_line) as bands
    from {{ ref('ppi_scorecard_likelihoods') }}

)

select scorecard_code,
       format('scorecard %s poverty line %s: band %s-%s has its end before its start',
              scorecard_code, poverty_line, score_from, score_to) as problem
from bands
where score_to < score_from

union all

select scorecard_code,
       format('scorecard %s poverty line %s: the first band starts at %s, not 0', scorecard_code, poverty_line, score_from)
from bands
where band_number = 1 and score_from <> 0

union all

select scorecard_code,
       format('scorecard %s poverty line %s: the last band ends at %s, not 100', scorecard_code, poverty_line, score_to)
from bands
where band_number = bands and score_to <> 100

union all

select scorecard_code,
       format('scorecard %s poverty line %s: %s after a band ending at %s (scores %s)',
              scorecard_code, poverty_line,
              case when score_from <= previous_to then 'overlap: band ' || score_from || '-' || score_to || ' starts'
                   else 'gap: band ' || score_from || '-' || score_to || ' starts' end,
              previous_to,
              case when score_from <= previous_to then 'counted twice' else 'without a likelihood' end)
from bands
where previous_to is not null and score_from <> previous_to + 1
