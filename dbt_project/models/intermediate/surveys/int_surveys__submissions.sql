{#-
    Current submissions: one row per submission after the contract's
    duplicate and edit rules, with its interview date.

    * The same meta/instanceID seen twice counts once (the copy loaded last
      wins, then the higher _id, then the content hash: deterministic).
    * A submission whose meta/deprecatedID is X replaces the one whose
      meta/instanceID is X (an edit) - even when the edit itself ends up
      quarantined, so the original is dropped whatever the edit's fate.
      Chains (A -> B -> C) resolve to the last edit.
    * Interview date = the form's `today`, else the date part of `start` as
      written (in its own offset, never converted to UTC).
    Submissions without an instanceID cannot be matched; each is kept (by
    content) and quarantined downstream.

    Incremental (macros/incremental/surveys_incremental.sql): a night recomputes
    only the submission keys that raw rows loaded since the last build touch
    (their own key, and the key each one replaces); a change of the field map
    seed, the default scorecard or the project's code rebuilds the table.
-#}
{{
  config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook=["{{ surveys_submissions_prepare() }}"],
    post_hook=[
      "{{ core_index('submission_key', unique=true) }}",
      "{{ core_index('_loaded_until') }}",
      "analyze {{ this }}"
    ]
  )
}}
-- depends_on: {{ ref('survey_field_map') }}
-- depends_on: {{ ref('ppi_scorecard_points') }}
-- depends_on: {{ ref('ppi_scorecard_likelihoods') }}
{%- set state = surveys_state(this) if is_incremental() else none %}
{%- set nightly = surveys_mode(state) == 'nightly' %}

{#- The staging view is read by each part on its own (never through one shared CTE,
    which PostgreSQL would compute whole): the filters then reach raw_kobo's indexes. #}
with
{%- if nightly %}

affected as (

    {{ surveys_affected_keys(state) }}

),

scoped as (

    select s.*
    from {{ ref('stg_kobo__spm_client_monitoring') }} s
    where s.instance_id in (select submission_key from affected)
       or (s.instance_id is null
           and s.content_hash in (select substr(submission_key, 9) from affected
                                  where submission_key like 'content:%'))

),
{%- else %}

scoped as (

    select * from {{ ref('stg_kobo__spm_client_monitoring') }}

),
{%- endif %}

replaced as (

    select distinct s.deprecated_id as instance_id
    from {{ ref('stg_kobo__spm_client_monitoring') }} s
    where s.deprecated_id is not null
      and s.deprecated_id is distinct from s.instance_id
      {%- if nightly %}
      and s.deprecated_id in (select submission_key from affected)
      {%- endif %}

),

ranked as (

    select
        scoped.*,
        coalesce(instance_id, 'content:' || content_hash) as submission_key,
        row_number() over (
            partition by coalesce(instance_id, 'content:' || content_hash)
            order by loaded_at desc, kobo_id desc nulls last, content_hash
        ) as copy_rank,
        count(*) over (partition by coalesce(instance_id, 'content:' || content_hash)) as copies_seen
    from scoped

)

select
    submission_key,
    instance_id,
    content_hash,
    kobo_id,
    asset_uid,
    load_source,
    loaded_at,
    submission_time,
    form_version,
    deprecated_id,
    copies_seen,
    coalesce(form_today, {{ kobo_date_prefix('form_start') }})  as interview_date,
    survey_type,
    account_no,
    coalesce(scorecard_code, '{{ var("ppi_default_scorecard") }}') as scorecard_code,
    (scorecard_code is null)                                   as scorecard_defaulted,
    {%- for n in range(1, 11) %}
    ppi_q{{ '%02d' % n }},
    {%- endfor %}
    hh_members,
    children_school_age,
    children_in_school,
    monthly_hh_income,
    loan_main_purpose,
    nps,
    exit_reason,
    {{ surveys_state_columns() }}
from ranked
where copy_rank = 1
  and not exists (
      select 1 from replaced where replaced.instance_id = ranked.instance_id
  )
