{#-
    Current submissions that count for no KPI, one row per submission with
    every reason found. The quality gate copies this into meta.quarantine.

    Reasons (stable code, then text), in this order:
      missing_instance_id      no meta/instanceID (nor _uuid): cannot be deduplicated or edited
      unknown_client           client/account_no empty or not an m_client.account_no
      unknown_scorecard        ppi/scorecard names no scorecard in seeds/ppi_scorecard_points
      missing_ppi_answer       one of ppi/q01..ppi/q10 is empty
      answer_not_in_scorecard  an answer is not an answer of that question in the scorecard
    reason_code is the first of them; reason lists them all ("code: detail; code: detail").
-#}

with submissions as (

    select * from {{ ref('int_surveys__submissions') }}

),

scored as (

    select * from {{ ref('int_surveys__ppi_scored') }}

),

clients as (

    select account_no from {{ ref('int_surveys__clients') }}

),

reasons as (

    select s.submission_key, 1 as priority, 'missing_instance_id' as reason_code,
           'missing_instance_id: no meta/instanceID or _uuid' as reason_text
    from submissions as s
    where s.instance_id is null

    union all

    select s.submission_key, 2, 'unknown_client',
           case when s.account_no is null then 'unknown_client: client/account_no is empty'
                else format('unknown_client: account_no %L not in m_client', s.account_no) end
    from submissions as s
    where s.account_no is null
       or not exists (select 1 from clients as c where c.account_no = s.account_no)

    union all

    select p.submission_key, 3, 'unknown_scorecard',
           format('unknown_scorecard: scorecard %L not in ppi_scorecard_points', p.scorecard_code_answered)
    from scored as p
    where not p.scorecard_known

    union all

    select p.submission_key, 4, 'missing_ppi_answer',
           'missing_ppi_answer: ' || p.missing_list || ' empty'
    from scored as p
    where p.missing_answers > 0

    union all

    select p.submission_key, 5, 'answer_not_in_scorecard',
           format('answer_not_in_scorecard: %s not in scorecard %s', p.invalid_list, p.scorecard_code)
    from scored as p
    where p.scorecard_known
      and p.invalid_answers > 0

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
    'kobo:' || coalesce(s.asset_uid, 'unknown_form')     as source,
    s.submission_key                                     as source_key,
    q.reason_code,
    q.reason,
    q.reason_codes,
    s.kobo_id,
    s.loaded_at,
    s.instance_id,
    s.asset_uid,
    s.load_source,
    s.account_no,
    s.survey_type,
    s.interview_date,
    s.submission_time
from per_submission as q
inner join submissions as s
    on s.submission_key = q.submission_key
