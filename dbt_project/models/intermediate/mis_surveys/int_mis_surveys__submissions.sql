{#-
    Submissions of Fineract's SPM survey module, scored per the KPI contract
    (section "Surveys kept in the MIS"; doc block mis_survey_scoring):

    * a submission = the m_survey_scorecards rows of one survey_id, client_id
      and created_on; interview date = the date part of created_on as stored;
    * a PPI survey = a survey with m_survey_lookup_tables rows whose a_key is
      var ppi_poverty_line;
    * PPI score = sum of the rows' a_value; poverty likelihood = score / 100 of
      the one lookup row of that line with value_from <= PPI score <= value_to.

    What prevents a score is listed here for int_mis_surveys__quarantine:
    questions of the survey not answered exactly once (or answers to a
    question of another survey), a response_id that belongs to another
    question, and a score matched by no lookup row (a gap) or by several
    (an overlap). A table rebuilt every night: a late entry with an older
    created_on restates everything from its interview date on.
-#}

with answers as (

    -- created_key: created_on with an empty one as -infinity, so that submissions join by equality
    select
        *,
        coalesce(created_on, '-infinity'::timestamp) as created_key
    from {{ ref('stg_fineract__m_survey_scorecards') }}

),

questions as (

    select * from {{ ref('stg_fineract__m_survey_questions') }}

),

responses as (

    select * from {{ ref('stg_fineract__m_survey_responses') }}

),

surveys as (

    select * from {{ ref('stg_fineract__m_surveys') }}

),

lookups as (

    select *
    from {{ ref('stg_fineract__m_survey_lookup_tables') }}
    where lookup_key = '{{ var("ppi_poverty_line") }}'

),

submissions as (

    select
        survey_id,
        client_id,
        created_key,
        min(created_on)             as created_on,
        count(*)                    as answer_rows,
        sum(points)                 as ppi_score,
        max(extracted_at)           as extracted_at
    from answers
    group by survey_id, client_id, created_key

),

-- every question of the survey, and every question answered, with how often it was answered
question_counts as (

    select
        s.survey_id,
        s.client_id,
        s.created_key,
        coalesce(q.question_key, 'question ' || q.question_id)     as question_label,
        q.sequence_no,
        true                                                        as in_survey,
        count(a.scorecard_id)                                       as times_answered
    from submissions as s
    inner join questions as q
        on q.survey_id = s.survey_id
    left join answers as a
        on a.survey_id = s.survey_id
       and a.client_id = s.client_id
       and a.created_key = s.created_key
       and a.question_id = q.question_id
    group by 1, 2, 3, 4, 5, 6

    union all

    select
        a.survey_id,
        a.client_id,
        a.created_key,
        'question ' || a.question_id,
        2147483647,
        false,
        count(*)
    from answers as a
    where not exists (
        select 1 from questions as q
        where q.question_id = a.question_id
          and q.survey_id = a.survey_id
    )
    group by 1, 2, 3, 4, 5, 6

),

question_problems as (

    select
        survey_id,
        client_id,
        created_key,
        string_agg(
            case when in_survey then format('%s answered %s times', question_label, times_answered)
                 else format('%s (not a question of this survey) answered', question_label) end,
            ', ' order by sequence_no, question_label
        )                                                           as question_problems
    from question_counts
    where times_answered <> 1 or not in_survey
    group by 1, 2, 3

),

response_problems as (

    select
        a.survey_id,
        a.client_id,
        a.created_key,
        string_agg(
            case when r.response_id is null
                 then format('response %s (question %s) does not exist', a.response_id, a.question_id)
                 else format('response %s given to question %s belongs to question %s',
                             a.response_id, a.question_id, r.question_id) end,
            ', ' order by a.scorecard_id
        )                                                           as response_problems
    from answers as a
    left join responses as r
        on r.response_id = a.response_id
    where r.question_id is distinct from a.question_id
    group by 1, 2, 3

),

matches as (

    select
        s.survey_id,
        s.client_id,
        s.created_key,
        count(l.lookup_id)                                                  as lookup_matches,
        min(l.likelihood_pct)                                               as likelihood_pct,
        string_agg(format('%s-%s', l.value_from, l.value_to), ', '
                   order by l.value_from, l.value_to, l.lookup_id)          as matched_bands
    from submissions as s
    left join lookups as l
        on l.survey_id = s.survey_id
       and s.ppi_score between l.value_from and l.value_to
    group by 1, 2, 3

)

select
    format('mis:%s:%s:%s', s.survey_id, s.client_id,
           coalesce(to_char(s.created_on, 'YYYY-MM-DD"T"HH24:MI:SS.US'), 'null'))  as submission_key,
    s.survey_id,
    sv.survey_key,
    s.client_id,
    s.created_on,
    s.created_on::date                                                  as interview_date,
    coalesce(ppi.is_ppi_survey, false)                                  as is_ppi_survey,
    s.answer_rows,
    s.ppi_score::integer                                                as ppi_score,
    m.lookup_matches,
    m.matched_bands,
    qp.question_problems,
    rp.response_problems,
    case when m.lookup_matches = 1 and qp.question_problems is null and rp.response_problems is null
         then (m.likelihood_pct / 100)::numeric(9, 6) end               as poverty_likelihood,
    '{{ var("ppi_poverty_line") }}'::text                               as poverty_line,
    s.extracted_at
from submissions as s
left join surveys as sv
    on sv.survey_id = s.survey_id
left join (select distinct survey_id, true as is_ppi_survey from lookups) as ppi
    on ppi.survey_id = s.survey_id
left join matches as m
    on m.survey_id = s.survey_id
   and m.client_id = s.client_id
   and m.created_key = s.created_key
left join question_problems as qp
    on qp.survey_id = s.survey_id
   and qp.client_id = s.client_id
   and qp.created_key = s.created_key
left join response_problems as rp
    on rp.survey_id = s.survey_id
   and rp.client_id = s.client_id
   and rp.created_key = s.created_key
