{#-
    One row per accepted submission carrying a complete PPI, from both
    channels: Kobo (int_surveys__accepted) and Fineract's survey module
    (int_mis_surveys__accepted, contract section "Surveys kept in the MIS").
    What kpi_branch_month's ppi_assessed_clients and avg_poverty_likelihood
    are computed from; the latest per client follows macro surveys_order
    (interview date; MIS after Kobo on the same date; Kobo: submission_time
    then the higher kobo_id; MIS: created_on then the higher survey_id).
-#}

select
    client_id,
    account_no,
    instance_id,
    'kobo'::text                    as channel,
    kobo_id,
    null::bigint                    as mis_survey_id,
    null::timestamp                 as mis_created_on,
    interview_date,
    submission_time,
    scorecard_code,
    ppi_score,
    poverty_likelihood,
    poverty_line,
    survey_type
from {{ ref('int_surveys__accepted') }}
where ppi_score is not null

union all

select
    client_id,
    account_no,
    submission_key,
    channel,
    null::bigint,
    survey_id,
    created_on,
    interview_date,
    null::timestamptz,
    survey_key,
    ppi_score,
    poverty_likelihood,
    poverty_line,
    null::text
from {{ ref('int_mis_surveys__accepted') }}
