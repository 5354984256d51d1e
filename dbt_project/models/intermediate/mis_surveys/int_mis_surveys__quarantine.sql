{#-
    Submissions of PPI surveys of Fineract's survey module that count for no
    KPI, one row per submission with every reason found (contract, section
    "Surveys kept in the MIS"). The quality gate copies this into
    meta.quarantine (source fineract:m_survey_scorecards). Submissions of
    surveys that are not PPI surveys are never quarantined.

    Reasons (stable code, then text), in this order:
      missing_created_on          created_on is empty: no interview date
      question_not_answered_once  a question of the survey answered 0 or 2+ times, or a row answers a question of another survey
      response_of_other_question  a row's response_id belongs to another question (or does not exist)
      no_single_lookup_row        the PPI score matches no lookup row of the poverty line (a gap) or several (an overlap)
    reason_code is the first of them; reason lists them all ("code: detail; code: detail").
-#}

with submissions as (

    select * from {{ ref('int_mis_surveys__submissions') }}
    where is_ppi_survey

),

reasons as (

    select submission_key, 1 as priority, 'missing_created_on' as reason_code,
           format('missing_created_on: survey %s answers of client %s have no created_on',
                  survey_key, client_id) as reason_text
    from submissions
    where created_on is null

    union all

    select submission_key, 2, 'question_not_answered_once',
           format('question_not_answered_once: survey %s: %s', survey_key, question_problems)
    from submissions
    where question_problems is not null

    union all

    select submission_key, 3, 'response_of_other_question',
           format('response_of_other_question: survey %s: %s', survey_key, response_problems)
    from submissions
    where response_problems is not null

    union all

    select submission_key, 4, 'no_single_lookup_row',
           case when lookup_matches = 0
                then format('no_single_lookup_row: score %s of survey %s is in no band of m_survey_lookup_tables for %L (a gap)',
                            ppi_score, survey_key, poverty_line)
                else format('no_single_lookup_row: score %s of survey %s is in %s bands (%s) of m_survey_lookup_tables for %L (an overlap)',
                            ppi_score, survey_key, lookup_matches, matched_bands, poverty_line) end
    from submissions
    where lookup_matches <> 1

),

per_submission as (

    select
        submission_key,
        (array_agg(reason_code order by priority))[1]            as reason_code,
        string_agg(reason_text, '; ' order by priority)          as reason,
        array_agg(reason_code order by priority)                 as reason_codes
    from reasons
    group by submission_key

)

select
    'fineract:m_survey_scorecards'                       as source,
    s.submission_key                                     as source_key,
    q.reason_code,
    q.reason,
    q.reason_codes,
    'mis'::text                                          as channel,
    s.survey_id,
    s.survey_key,
    s.client_id,
    s.interview_date,
    s.created_on,
    s.ppi_score,
    s.extracted_at                                       as loaded_at
from per_submission as q
inner join submissions as s
    on s.submission_key = q.submission_key
