{{ config(pre_hook=[core_analyze_stale('raw_mis')] + core_session_settings(), post_hook=["{{ core_index('client_id', unique=true) }}"]) }}
-- Clients the warehouse may know at the as-of date (created_on_utc and
-- submittedon_date by then), with the attributes KPIs slice by, as current in
-- the source (the contract restates history with current values).
-- Lifecycle dates after as_of_date are blanked, so a backfill never sees them.
-- Gender: the Gender code value, Female/Male compared case-insensitively (and
-- trimmed, as the survey models do), else unknown. Area: the ClientClassification
-- code value Rural/Urban, else unknown. Age band at as_of_date from the birth date,
-- which goes no further than this model.
with clients as (
    select *
    from {{ ref('stg_fineract__m_client') }}
    where {{ core_known_at_cutoff('created_on_utc') }}
      and (submitted_on_date is null or submitted_on_date <= {{ core_as_of_date() }})
)

, code_values as (
    select code_value_id, code_name, code_value
    from {{ ref('int_fineract__code_values') }}
)

, assessments as (
    select
        a.client_id,
        a.interview_date,
        a.poverty_likelihood,
        row_number() over (
            partition by a.client_id
            order by {{ surveys_order('a') }}
        ) as assessment_seq
    from {{ ref('int_client__ppi_assessments') }} a
)

, entry_assessment as (
    select client_id, interview_date, poverty_likelihood
    from assessments
    where assessment_seq = 1
)

, ages as (
    select
        client_id,
        extract(year from age({{ core_as_of_date() }}, date_of_birth))::int as age_years
    from clients
    where date_of_birth is not null and date_of_birth <= {{ core_as_of_date() }}
)

select
    c.client_id,
    c.account_no,
    c.office_id                                                         as branch_id,
    c.staff_id                                                          as loan_officer_id,
    c.status_code,
    c.status,
    c.status_code in (100, 700, 800)                                    as is_never_active_status,
    case lower(btrim(g.code_value)) when 'female' then 'female' when 'male' then 'male' else 'unknown' end as gender,
    case lower(btrim(cls.code_value)) when 'rural' then 'rural' when 'urban' then 'urban' else 'unknown' end as area,
    cls.code_value                                                      as client_classification,
    typ.code_value                                                      as client_type,
    c.legal_form,
    coalesce(ab.band_code, 'unknown')                                   as age_band,
    ea.interview_date                                                   as entry_assessment_date,
    ea.poverty_likelihood                                               as entry_poverty_likelihood,
    coalesce(pb.band_code, 'unknown')                                   as poverty_band_at_entry,
    case lower(btrim(g.code_value)) when 'female' then 'female' when 'male' then 'male' else 'unknown' end
        || '|' || case lower(btrim(cls.code_value)) when 'rural' then 'rural' when 'urban' then 'urban' else 'unknown' end
        || '|' || coalesce(pb.band_code, 'unknown')                     as segment_key,
    c.submitted_on_date,
    case when c.activation_date <= {{ core_as_of_date() }} then c.activation_date end         as activation_date,
    case when c.office_joining_date <= {{ core_as_of_date() }} then c.office_joining_date end as office_joining_date,
    case when c.closed_on_date <= {{ core_as_of_date() }} then c.closed_on_date end           as closed_on_date,
    case when c.closed_on_date <= {{ core_as_of_date() }} then closure.code_value end         as closure_reason,
    case when c.rejected_on_date <= {{ core_as_of_date() }} then c.rejected_on_date end       as rejected_on_date,
    case when c.withdrawn_on_date <= {{ core_as_of_date() }} then c.withdrawn_on_date end     as withdrawn_on_date,
    case when c.reactivated_on_date <= {{ core_as_of_date() }} then c.reactivated_on_date end as reactivated_on_date
from clients c
left join code_values g on g.code_value_id = c.gender_cv_id and g.code_name = 'Gender'
left join code_values cls on cls.code_value_id = c.client_classification_cv_id and cls.code_name = 'ClientClassification'
left join code_values typ on typ.code_value_id = c.client_type_cv_id
left join code_values closure on closure.code_value_id = c.closure_reason_cv_id
left join ages a on a.client_id = c.client_id
left join {{ ref('age_bands') }} ab
    on a.age_years >= ab.age_from and a.age_years < ab.age_to
left join entry_assessment ea on ea.client_id = c.client_id
left join {{ ref('poverty_likelihood_bands') }} pb
    on ea.poverty_likelihood >= pb.likelihood_from and ea.poverty_likelihood < pb.likelihood_to
