{#-
    One row per client, indicator and accepted survey interviewed on or
    before the as-of date: the value an indicator took in that interview.
    Surveys come from both channels (column channel): Kobo submissions
    (int_surveys__accepted) and PPI submissions of Fineract's survey module
    (int_mis_surveys__accepted: ppi_score and poverty_likelihood). Values of
    the MIS datatable columns mapped in seeds/datatable_indicator_map.csv
    (int_mis_surveys__datatable_values) are rows too: channel 'mis',
    instance_id 'datatable:<datatable>:<row>', survey_sequence 0, dated at the
    as-of date (a datatable holds current values).

    Numeric indicators carry value_numeric; categorical ones (loan main
    purpose, exit reason) value_text. Indicators a survey has no value for
    (e.g. no school-age children, NPS not asked at baseline) have no row.
    branch_id is the client's branch current in the MIS (contract attribution).
    client_sk is the client's current dim_client row (-1, the unknown member,
    when dim_client does not know the client at the as-of date).

    Incremental (macros/incremental/surveys_client_indicator.sql): a night
    rewrites the survey rows of the clients whose inputs changed since the
    table was written (int_surveys__client_indicator_inputs) and every
    datatable row. _as_of_date and _cutoff_ts record the run that wrote a row,
    _inputs_changed_at the stamp of the client's inputs it was made from.
-#}
{{
  config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook=core_session_settings() + ["{{ surveys_indicator_prepare() }}"],
    post_hook=[
      "{{ history_index('client_id, indicator_code, instance_id', unique=true) }}",
      "{{ core_index('survey_sequence', where='survey_sequence = 0', where_def='(survey_sequence = 0)') }}",
      "{{ core_index('_as_of_date, _cutoff_ts, _inputs_changed_at') }}",
      "{{ history_closed_index() }}",
      "analyze {{ this }}"
    ]
  )
}}


{%- set state = surveys_indicator_state(this) if is_incremental() else none %}

with surveys as (

    select
        client_id,
        instance_id,
        'kobo'::text                    as channel,
        kobo_id,
        asset_uid,
        null::bigint                    as mis_survey_id,
        null::timestamp                 as mis_created_on,
        survey_type,
        interview_date,
        submission_time,
        scorecard_code,
        poverty_likelihood::numeric     as poverty_likelihood,
        ppi_score,
        hh_members,
        children_school_age,
        school_enrolment_rate,
        monthly_hh_income,
        loan_main_purpose,
        nps,
        exit_reason
    from {{ ref('int_surveys__accepted') }}
    where interview_date <= {{ core_as_of_date() }}
    {%- if state is not none %}
      -- a semi-join, not = any(array(...)): no index on client_id here, and = any() of an array is a
      -- linear search for every row of the scan
      and client_id in ({{ surveys_indicator_changed_clients(state) }})
    {%- endif %}

    union all

    select
        client_id,
        submission_key,
        channel,
        null::bigint,
        null::text,
        survey_id,
        created_on,
        null::text,
        interview_date,
        null::timestamptz,
        survey_key,
        poverty_likelihood::numeric,
        ppi_score,
        null::integer,
        null::integer,
        null::numeric,
        null::numeric,
        null::text,
        null::integer,
        null::text
    from {{ ref('int_mis_surveys__accepted') }}
    where interview_date <= {{ core_as_of_date() }}
    {%- if state is not none %}
      -- a semi-join, not = any(array(...)): no index on client_id here, and = any() of an array is a
      -- linear search for every row of the scan
      and client_id in ({{ surveys_indicator_changed_clients(state) }})
    {%- endif %}

),

waves as (

    -- the contract's order of a client's surveys across channels (macro surveys_order), with
    -- a missing Kobo submission time last, as this fact always numbered them
    select
        surveys.*,
        row_number() over (
            partition by client_id
            order by interview_date, (channel = 'mis'), submission_time nulls last, kobo_id,
                     mis_created_on nulls first, mis_survey_id
        ) as survey_sequence
    from surveys

),

values_long as (

    select
        w.client_id,
        w.instance_id,
        w.channel,
        w.kobo_id,
        w.asset_uid,
        w.survey_type,
        w.survey_sequence,
        w.interview_date,
        w.submission_time,
        w.scorecard_code,
        v.indicator_code,
        v.value_numeric,
        v.value_text
    from waves as w
    cross join lateral (
        values
            ('poverty_likelihood',        w.poverty_likelihood,          null::text),
            ('ppi_score',                 w.ppi_score::numeric,          null),
            ('household_size',            w.hh_members::numeric,         null),
            ('school_age_children',       w.children_school_age::numeric, null),
            ('school_enrolment_rate',     w.school_enrolment_rate,       null),
            ('monthly_hh_income',         w.monthly_hh_income,           null),
            ('loan_use_business',
                case when w.loan_main_purpose is not null
                     then (w.loan_main_purpose = 'business')::integer::numeric end, null),
            ('loan_main_purpose',         null,                          w.loan_main_purpose),
            ('nps',                       w.nps::numeric,                null),
            ('exit_reason',               null,                          w.exit_reason),
            ('exit_repayment_difficulty',
                case when w.exit_reason is not null
                     then (w.exit_reason = 'repayment_difficulty')::integer::numeric end, null)
    ) as v (indicator_code, value_numeric, value_text)
    where v.value_numeric is not null
       or v.value_text is not null

    union all

    select
        d.client_id,
        d.instance_id,
        'mis'::text,
        null::bigint,
        null::text,
        null::text,
        0::bigint,
        {{ core_as_of_date() }},
        null::timestamptz,
        null::text,
        d.indicator_code,
        d.value_numeric,
        d.value_text
    from {{ ref('int_mis_surveys__datatable_values') }} as d
    where d.client_id is not null
      and (d.value_numeric is not null or d.value_text is not null)

)

select
    coalesce(d.client_sk, -1)                                   as client_sk,
    l.client_id,
    c.branch_id,
    l.indicator_code,
    l.instance_id,
    l.channel,
    l.kobo_id,
    l.asset_uid,
    l.survey_type,
    l.survey_sequence,
    l.interview_date,
    l.submission_time,
    l.value_numeric,
    l.value_text,
    case when l.indicator_code in ('poverty_likelihood', 'ppi_score') then l.scorecard_code end as scorecard_code,
    case when l.indicator_code = 'poverty_likelihood' then '{{ var("ppi_poverty_line") }}' end as poverty_line,
    {{ core_as_of_date() }}                                     as _as_of_date,
    {{ core_knowledge_cutoff() }}                               as _cutoff_ts,
    ci._changed_at                                              as _inputs_changed_at,
    {{ history_version_columns(history_next_version()) }}
from values_long as l
inner join {{ ref('int_surveys__clients') }} as c
    on c.client_id = l.client_id
-- the stamp of the inputs a survey row is made from (datatable rows, survey_sequence 0, have none)
left join {{ ref('int_surveys__client_indicator_inputs') }} as ci
    on ci.client_id = l.client_id
   and l.survey_sequence > 0
inner join {{ ref('dim_indicator') }} as i
    on i.indicator_code = l.indicator_code
left join {{ ref('dim_client') }} as d
    on d.client_id = l.client_id
   and d.is_current
