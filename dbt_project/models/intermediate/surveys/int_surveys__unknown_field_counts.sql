{{
  config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook=["{{ surveys_unknown_fields_prepare() }}"],
    post_hook=[
      "{{ core_index('_loaded_until') }}",
      "analyze {{ this }}"
    ]
  )
}}
-- the refs of surveys_fingerprint():
-- depends_on: {{ ref('ppi_scorecard_points') }}
-- depends_on: {{ ref('ppi_scorecard_likelihoods') }}
{#-
    The counts behind the form version drift report (int_surveys__unknown_fields):
    answer fields present in raw submissions that the warehouse does not read,
    per form and version, counted over the raw rows one run read.

    Known = a target field of seeds/survey_field_map.csv (our form's fields
    and ODK metadata), a source field mapped for that form, or Kobo/ODK
    system keys (_*, meta/*, formhub/*). Empty values ("" in CSV exports of
    all versions) are not counted. The data stays in raw_kobo; to use a new
    field, add it to the form and the models, or map it in the seed.

    Incremental, append-only: raw_kobo.submissions only ever gains rows, so a
    night counts the rows loaded since the newest _loaded_until here and
    appends those counts; the report sums them. Every run appends one row
    without a field (field_name null, submissions 0) that records how far it
    read, so a night that found no unknown field still moves the state on.
    Another survey fingerprint (the field map seed above all) recounts every
    row (macros/incremental/surveys_incremental.sql).
#}
{%- set state = surveys_state(this) if is_incremental() else none %}
{%- set nightly = surveys_mode(state) == 'nightly' %}


with submissions as (

    select *
    from {{ ref('stg_kobo__submissions') }}
    {%- if nightly %}
    where loaded_at > '{{ state['loaded_until'] }}'::timestamptz
    {%- endif %}

),

field_map as (

    select * from {{ ref('survey_field_map') }}

),

fields as (

    select
        s.asset_uid,
        coalesce(nullif(s.payload ->> '__version__', ''), nullif(s.payload ->> '_version_', '')) as form_version,
        kv.key as field_name,
        s.submission_time,
        s.payload ->> '_xform_id_string' as xform_id
    from submissions as s
    -- our own fields (the map's targets) are taken off before the explode: most of
    -- every payload, so only system keys and unknown fields are looked at one by one
    cross join lateral jsonb_each(
        s.payload - coalesce((select array_agg(distinct m.target_field) from field_map as m), '{}'::text[])
    ) as kv
    where kv.value not in ('null'::jsonb, '""'::jsonb, '[]'::jsonb, '{}'::jsonb)
      and left(kv.key, 1) <> '_'
      and kv.key not like 'meta/%'
      and kv.key not like 'formhub/%'

),

counts as (

    select
        f.asset_uid,
        f.form_version,
        f.field_name,
        count(*)                  as submissions,
        min(f.submission_time)    as first_submission_time,
        max(f.submission_time)    as last_submission_time
    from fields as f
    where not exists (
          select 1 from field_map as m
          where m.source_field = f.field_name
            and m.form_id in (f.asset_uid, f.xform_id)
      )
    group by 1, 2, 3

    union all

    -- the run's own row: how far it read, found anything or not
    select null::text, null::text, null::text, 0::bigint, null::timestamptz, null::timestamptz

)

select
    c.*,
    {{ surveys_state_columns() }}
from counts as c
