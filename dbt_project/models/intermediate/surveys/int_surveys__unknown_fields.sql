{#-
    Form version drift report: answer fields present in raw submissions that
    the warehouse does not read, per form and version.

    Known = a target field of seeds/survey_field_map.csv (our form's fields
    and ODK metadata), a source field mapped for that form, or Kobo/ODK
    system keys (_*, meta/*, formhub/*). Empty values ("" in CSV exports of
    all versions) are not counted. The data stays in raw_kobo; to use a new
    field, add it to the form and the models, or map it in the seed.
-#}

with submissions as (

    select * from {{ ref('stg_kobo__submissions') }}

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

)

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
