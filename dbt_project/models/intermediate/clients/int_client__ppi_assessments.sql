{{ config(materialized='view') }}
-- The surveys models' accepted PPI assessments (both channels: Kobo and the
-- MIS survey module) that the warehouse may know at the as-of date: interviewed
-- on or before it and (Kobo) submitted by its end. The client must be a known
-- Fineract client. An MIS submission entered late with an older created_on
-- counts from its interview date: the models downstream are rebuilt whole, so
-- the months since then are restated.
select
    a.client_id,
    a.instance_id,
    a.channel,
    a.kobo_id,
    a.mis_survey_id,
    a.mis_created_on,
    a.interview_date,
    a.submission_time,
    a.scorecard_code,
    a.ppi_score,
    a.poverty_likelihood::numeric                                       as poverty_likelihood
from {{ ref('int_surveys__ppi_assessments') }} a
where a.client_id is not null
  and a.poverty_likelihood is not null
  and a.interview_date <= {{ core_as_of_date() }}
  and {{ core_known_at_cutoff('a.submission_time') }}
