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
-#}

with staged as (

    select * from {{ ref('stg_kobo__spm_client_monitoring') }}

),

replaced as (

    select distinct deprecated_id as instance_id
    from staged
    where deprecated_id is not null
      and deprecated_id is distinct from instance_id

),

ranked as (

    select
        staged.*,
        coalesce(instance_id, 'content:' || content_hash) as submission_key,
        row_number() over (
            partition by coalesce(instance_id, 'content:' || content_hash)
            order by loaded_at desc, kobo_id desc nulls last, content_hash
        ) as copy_rank,
        count(*) over (partition by coalesce(instance_id, 'content:' || content_hash)) as copies_seen
    from staged

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
    exit_reason
from ranked
where copy_rank = 1
  and not exists (
      select 1 from replaced where replaced.instance_id = ranked.instance_id
  )
