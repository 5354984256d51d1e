{#-
    One row per accepted submission carrying a complete PPI: what
    kpi_branch_month's ppi_assessed_clients and avg_poverty_likelihood are
    computed from (latest per client by interview_date, then
    submission_time, then the higher kobo_id).
-#}

select
    client_id,
    account_no,
    instance_id,
    kobo_id,
    interview_date,
    submission_time,
    scorecard_code,
    ppi_score,
    poverty_likelihood,
    poverty_line,
    survey_type
from {{ ref('int_surveys__accepted') }}
where ppi_score is not null
