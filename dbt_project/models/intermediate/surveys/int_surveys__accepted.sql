{#-
    Accepted submissions: current (after duplicates and edits) and not
    quarantined, matched to their MIS client and scored. Every accepted
    submission carries a complete PPI, because a missing or unknown answer
    quarantines it.

    Answers outside their form's range (a negative income, more children in
    school than of school age, an NPS above 10, a survey type or loan use
    not in the form's choices) are set to null here rather than quarantined:
    the contract quarantines only for the client and the PPI, and one bad
    answer must not hide the rest of the interview.
-#}

with submissions as (

    select * from {{ ref('int_surveys__submissions') }}

),

scored as (

    select * from {{ ref('int_surveys__ppi_scored') }}

),

clients as (

    select * from {{ ref('int_surveys__clients') }}

)

select
    s.instance_id,
    s.kobo_id,
    s.asset_uid,
    c.client_id,
    s.account_no,
    case when s.survey_type in ('baseline', 'followup', 'exit') then s.survey_type end      as survey_type,
    s.interview_date,
    s.submission_time,
    s.form_version,
    p.scorecard_code,
    s.scorecard_defaulted,
    p.ppi_score,
    p.poverty_likelihood,
    p.poverty_line,
    case when s.hh_members between 1 and 100 then s.hh_members end                           as hh_members,
    case when s.children_school_age between 0 and 100 then s.children_school_age end         as children_school_age,
    case when s.children_in_school between 0 and coalesce(s.children_school_age, -1)
         then s.children_in_school end                                                       as children_in_school,
    case when s.children_school_age > 0
          and s.children_in_school between 0 and s.children_school_age
         then round(s.children_in_school::numeric / s.children_school_age, 6) end            as school_enrolment_rate,
    case when s.monthly_hh_income >= 0 then s.monthly_hh_income end                          as monthly_hh_income,
    case when s.loan_main_purpose in ('business', 'education', 'health', 'housing', 'consumption', 'other')
         then s.loan_main_purpose end                                                        as loan_main_purpose,
    case when s.nps between 0 and 10 then s.nps end                                          as nps,
    case when s.survey_type = 'exit' then coalesce(s.exit_reason, 'not_stated') end          as exit_reason,
    s.copies_seen,
    s.load_source,
    s.loaded_at
from submissions as s
inner join scored as p
    on p.submission_key = s.submission_key
inner join clients as c
    on c.account_no = s.account_no
where not exists (
    select 1 from {{ ref('int_surveys__quarantine') }} as q
    where q.source_key = s.submission_key
)
