{#-
    PPI scoring of every current submission, per the contract:
    score = sum of the points of the ten answers (ppi/q01..ppi/q10) in the
    scorecard the submission names (empty: var ppi_default_scorecard);
    likelihood = the row of seeds/ppi_scorecard_likelihoods for that
    scorecard, score and var ppi_poverty_line (banded or one row per score).

    Scorecard and answer codes must match the seeds exactly (surrounding
    spaces aside): 'B' is not the answer 'b' - the contract quarantines an
    answer that is not in the scorecard. A score exists only when all ten
    answers are in the scorecard; what is wrong otherwise is listed for the
    quarantine.
-#}

{{
  config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook=[
      "{{ core_mart_upgrade([['_loaded_until', 'timestamptz'], ['_inputs_fingerprint', 'text']]) or surveys_submissions_prepare() }}"
    ],
    post_hook=[
      "{{ core_index('submission_key', unique=true) }}",
      "{{ core_index('_loaded_until') }}",
      "analyze {{ this }}"
    ]
  )
}}
-- depends_on: {{ ref('survey_field_map') }}
-- depends_on: {{ ref('stg_kobo__spm_client_monitoring') }}
{#- the plain table of the previous version (no state columns) is rebuilt in full (core_mart_upgrade) -#}
{%- set upgrade = is_incremental() and core_relation_lacks_column(this, '_loaded_until') %}
{%- set state = surveys_state(this) if is_incremental() and not upgrade else none %}
{%- set nightly = surveys_mode(state) == 'nightly' %}

with submissions as (

    select *
    from {{ ref('int_surveys__submissions') }}
    {%- if nightly %}
    -- the keys raw rows loaded since this table's state touch (as int_surveys__submissions recomputes them)
    where submission_key in ({{ surveys_affected_keys(state) }})
    {%- endif %}

),

scorecards as (

    select distinct btrim(scorecard_code) as scorecard_code
    from {{ ref('ppi_scorecard_points') }}

),

points as (

    select
        btrim(scorecard_code)          as scorecard_code,
        btrim(question_code)           as question_code,
        btrim(answer_code)             as answer_code,
        min(points)                    as points
    from {{ ref('ppi_scorecard_points') }}
    group by 1, 2, 3

),

answers as (

    select
        s.submission_key,
        s.scorecard_code,
        q.question_code,
        q.answer
    from submissions as s
    cross join lateral (
        values
        {%- for n in range(1, 11) %}
            ('q{{ '%02d' % n }}', s.ppi_q{{ '%02d' % n }}){{ ',' if not loop.last }}
        {%- endfor %}
    ) as q (question_code, answer)

),

scored_answers as (

    select
        a.submission_key,
        a.question_code,
        a.answer,
        sc.scorecard_code is not null   as scorecard_known,
        p.points
    from answers as a
    left join scorecards as sc
        on sc.scorecard_code = a.scorecard_code
    left join points as p
        on p.scorecard_code = sc.scorecard_code
       and p.question_code = a.question_code
       and p.answer_code = a.answer

),

per_submission as (

    select
        submission_key,
        bool_and(scorecard_known)                                           as scorecard_known,
        count(*) filter (where answer is null)                              as missing_answers,
        string_agg('ppi/' || question_code, ', ' order by question_code)
            filter (where answer is null)                                   as missing_list,
        count(*) filter (where answer is not null and points is null)       as invalid_answers,
        string_agg(format('ppi/%s=%L', question_code, answer), ', ' order by question_code)
            filter (where answer is not null and points is null)            as invalid_list,
        case when count(points) = 10 then sum(points) end                   as ppi_score
    from scored_answers
    group by submission_key

)

select
    s.submission_key,
    s.instance_id,
    s.scorecard_code                                as scorecard_code_answered,
    sc.scorecard_code,
    ps.scorecard_known,
    ps.missing_answers,
    ps.missing_list,
    ps.invalid_answers,
    ps.invalid_list,
    ps.ppi_score::integer                           as ppi_score,
    lk.likelihood::numeric(9, 6)                    as poverty_likelihood,
    '{{ var("ppi_poverty_line") }}'::text           as poverty_line,
    {{ surveys_state_columns() }}
from submissions as s
inner join per_submission as ps
    on ps.submission_key = s.submission_key
left join scorecards as sc
    on sc.scorecard_code = s.scorecard_code
left join lateral (
    select l.likelihood
    from {{ ref('ppi_scorecard_likelihoods') }} as l
    where btrim(l.scorecard_code) = sc.scorecard_code
      and l.poverty_line = '{{ var("ppi_poverty_line") }}'
      and ps.ppi_score between l.score_from and l.score_to
    order by l.score_from desc, l.score_to
    limit 1
) as lk on true
