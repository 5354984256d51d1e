{#-
    Accepted PPI submissions of Fineract's survey module: a PPI survey's
    submission that is not quarantined, of a client the surveys know
    (int_surveys__clients), with its score and poverty likelihood. They count
    for the PPI KPIs exactly like accepted Kobo submissions
    (int_surveys__ppi_assessments unions both channels).
-#}

with submissions as (

    select * from {{ ref('int_mis_surveys__submissions') }}
    where is_ppi_survey

)

select
    s.submission_key,
    'mis'::text                 as channel,
    s.survey_id,
    coalesce(s.survey_key, 'mis_survey_' || s.survey_id)   as survey_key,
    s.client_id,
    c.account_no,
    s.interview_date,
    s.created_on,
    s.ppi_score,
    s.poverty_likelihood,
    s.poverty_line,
    s.extracted_at              as loaded_at
from submissions as s
inner join {{ ref('int_surveys__clients') }} as c
    on c.client_id = s.client_id
where s.poverty_likelihood is not null
  and not exists (
      select 1 from {{ ref('int_mis_surveys__quarantine') }} as q
      where q.source_key = s.submission_key
  )
