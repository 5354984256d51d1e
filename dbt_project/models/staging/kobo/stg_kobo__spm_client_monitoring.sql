{#-
    Submissions of the SPM client monitoring form, one row per raw row, flattened.

    Renaming and casting only: other forms' field names are first renamed to
    ours with seeds/survey_field_map.csv (rows whose form_id is the asset uid
    or the form's _xform_id_string); when a payload carries both a mapped and
    our own name, ours wins. Every answer is read with a safe cast (see
    macros/surveys/kobo_fields.sql). Dedup, edits, dates and scoring are
    intermediate/surveys' business.
-#}

{#- No CTEs on purpose: a view without WITH is flattened into the query that reads it,
    so its callers' filters (loaded_at, instance_id) reach raw_kobo's indexes instead
    of every payload being flattened first. Only submissions of a mapped form are
    taken apart key by key; the rest (our own form, nearly every row) keep their
    payload as it is. #}
select
    s.content_hash,
    s.source                                                    as load_source,
    s.asset_uid,
    s.kobo_id,
    s.instance_id,
    s.submission_time,
    s.loaded_at,
    s.run_id                                                    as load_run_id,
    {{ kobo_text('r.fields', 'meta/deprecatedID') }}            as deprecated_id,
    coalesce({{ kobo_text('r.fields', '__version__') }},
             {{ kobo_text('r.fields', '_version_') }})          as form_version,
    {{ kobo_text('r.fields', '_xform_id_string') }}             as xform_id,
    {{ kobo_date_prefix(kobo_text('r.fields', 'today')) }}      as form_today,
    {{ kobo_text('r.fields', 'start') }}                        as form_start,
    {{ kobo_text('r.fields', 'end') }}                          as form_end,
    lower({{ kobo_text('r.fields', 'survey/type') }})           as survey_type,
    {{ kobo_text('r.fields', 'client/account_no') }}            as account_no,
    {{ kobo_text('r.fields', 'ppi/scorecard') }}                as scorecard_code,
    {%- for n in range(1, 11) %}
    {{ kobo_text('r.fields', 'ppi/q%02d' % n) }}                as ppi_q{{ '%02d' % n }},
    {%- endfor %}
    {{ kobo_int('r.fields', 'hh/members') }}                    as hh_members,
    {{ kobo_int('r.fields', 'hh/children_school_age') }}        as children_school_age,
    {{ kobo_int('r.fields', 'hh/children_in_school') }}         as children_in_school,
    {{ kobo_numeric('r.fields', 'income/monthly_hh_income') }}  as monthly_hh_income,
    lower({{ kobo_text('r.fields', 'loan_use/main_purpose') }}) as loan_main_purpose,
    {{ kobo_int('r.fields', 'satisfaction/nps') }}              as nps,
    lower({{ kobo_text('r.fields', 'exit/reason') }})           as exit_reason
from {{ source('raw_kobo', 'submissions') }} as s
cross join lateral (
    select case
        when s.asset_uid in (select m.form_id from {{ ref('survey_field_map') }} m where m.source_field <> m.target_field)
          or (s.payload ->> '_xform_id_string') in (
              select m.form_id from {{ ref('survey_field_map') }} m where m.source_field <> m.target_field)
        then (
            select coalesce(
                jsonb_object_agg(coalesce(m.target_field, kv.key), kv.value
                                 order by (m.target_field is null), kv.key),
                '{}'::jsonb
            )
            from jsonb_each(s.payload) as kv
            left join {{ ref('survey_field_map') }} as m
                on m.source_field = kv.key
               and m.source_field <> m.target_field
               and m.form_id in (s.asset_uid, s.payload ->> '_xform_id_string')
        )
        else coalesce(s.payload, '{}'::jsonb)
    end as fields
) as r
