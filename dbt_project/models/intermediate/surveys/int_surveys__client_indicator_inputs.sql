{{
  config(
    materialized='incremental',
    unique_key='client_id',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    pre_hook=core_session_settings() + ["{{ surveys_indicator_inputs_prepare() }}"],
    post_hook=[
      "{{ core_index('client_id', unique=true) }}",
      "{{ core_index('_changed_at') }}",
      "analyze {{ this }}"
    ]
  )
}}
-- the refs of surveys_fingerprint():
-- depends_on: {{ ref('survey_field_map') }}
-- depends_on: {{ ref('ppi_scorecard_points') }}
-- depends_on: {{ ref('ppi_scorecard_likelihoods') }}
{#-
    Per client with accepted surveys: a hash of everything its rows of
    fct_client_indicator are made of (its accepted surveys of both channels
    interviewed by the as-of date, whole rows; its current branch; its current
    dim_client row), stamped _changed_at when it differs from the stored one.
    fct_client_indicator rewrites only the clients stamped since it was written
    (macros/incremental/surveys_client_indicator.sql). A client whose surveys
    are all gone keeps a row with surveys = 0, stamped when they went.

    Reads every accepted survey (narrow: one hash per row), which is what
    int_surveys__accepted itself is rebuilt from each night; what it saves is
    writing the fact's 1.3M rows (100k clients) again.
#}

with surveys as (

    select a.client_id, hashtextextended(a::text, 0)::numeric as row_hash
    from {{ ref('int_surveys__accepted') }} as a
    where a.interview_date <= {{ core_as_of_date() }}

    union all

    select m.client_id, hashtextextended(m::text, 0)::numeric
    from {{ ref('int_mis_surveys__accepted') }} as m
    where m.interview_date <= {{ core_as_of_date() }}

),

by_client as (

    -- a sum of row hashes: independent of row order, and a changed, added or removed row changes it
    select client_id, count(*) as surveys, sum(row_hash) as surveys_hash
    from surveys
    group by client_id

),

current_sk as (

    -- dim_client's current row of a client (dim_client: int_client__history of the clients in int_client__current)
    select h.client_id, {{ client_sk('h') }} as client_sk
    from {{ ref('int_client__history') }} as h
    inner join {{ ref('int_client__current') }} as k
        on k.client_id = h.client_id
    where h.is_current

),

inputs as (

    select
        b.client_id,
        c.branch_id::bigint         as branch_id,
        s.client_sk::bigint         as client_sk,
        b.surveys::bigint           as surveys,
        b.surveys_hash::numeric     as surveys_hash
    from by_client as b
    left join {{ ref('int_surveys__clients') }} as c
        on c.client_id = b.client_id
    left join current_sk as s
        on s.client_id = b.client_id

)

select
    i.client_id,
    i.branch_id,
    i.client_sk,
    i.surveys,
    i.surveys_hash,
    '{{ surveys_fingerprint() }}'::text     as _inputs_fingerprint,
    now()                                   as _changed_at
from inputs as i
{%- if is_incremental() %}
where not exists (
    select 1
    from {{ this }} as t
    where t.client_id = i.client_id
      and (t.branch_id, t.client_sk, t.surveys, t.surveys_hash)
          is not distinct from (i.branch_id, i.client_sk, i.surveys, i.surveys_hash)
)

union all

-- clients whose surveys are all gone (deleted, quarantined, moved to another client)
select
    t.client_id,
    null::bigint,
    null::bigint,
    0::bigint,
    null::numeric,
    '{{ surveys_fingerprint() }}'::text,
    now()
from {{ this }} as t
where t.surveys > 0
  and not exists (select 1 from inputs as i where i.client_id = t.client_id)
{%- endif %}
