{{ config(pre_hook=core_session_settings(), post_hook=["{{ core_index('client_id, covered_from') }}"]) }}
-- When each accepted PPI assessment is a client's latest one: from its interview
-- date until the next assessment's (latest = by interview date, then submission
-- time, then the higher kobo id; an assessment overtaken on its own interview day
-- covers nothing). At any date D the client's latest assessment interviewed on or
-- before D is the one span with covered_from <= D < covered_until (null = open).
select *
from (
    select
        a.client_id,
        a.kobo_id,
        a.interview_date                                    as covered_from,
        lead(a.interview_date) over (
            partition by a.client_id
            order by a.interview_date, a.submission_time nulls first, a.kobo_id
        )                                                   as covered_until,
        a.poverty_likelihood
    from {{ ref('int_client__ppi_assessments') }} a
    where exists (select 1 from {{ ref('int_client__current') }} c where c.client_id = a.client_id)
) spans
where covered_until is null or covered_until > covered_from
