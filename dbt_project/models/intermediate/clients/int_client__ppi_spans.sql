{{ config(pre_hook=core_session_settings(), post_hook=["{{ core_index('client_id, covered_from') }}"]) }}
-- When each accepted PPI assessment is a client's latest one: from its interview
-- date until the next assessment's (latest = macro surveys_order across both
-- channels: interview date, MIS after Kobo on one date, then submission time and
-- kobo id, or created_on and survey id; an assessment overtaken on its own
-- interview day covers nothing). At any date D the client's latest assessment interviewed on or
-- before D is the one span with covered_from <= D < covered_until (null = open).
select *
from (
    select
        a.client_id,
        a.channel,
        a.kobo_id,
        a.mis_survey_id,
        a.interview_date                                    as covered_from,
        lead(a.interview_date) over (
            partition by a.client_id
            order by {{ surveys_order('a') }}
        )                                                   as covered_until,
        a.poverty_likelihood
    from {{ ref('int_client__ppi_assessments') }} a
    where exists (select 1 from {{ ref('int_client__current') }} c where c.client_id = a.client_id)
) spans
where covered_until is null or covered_until > covered_from
