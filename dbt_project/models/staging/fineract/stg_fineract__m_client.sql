-- Clients, without personal data (the extraction never copies names, phones or ids).
-- date_of_birth stays in staging only, to derive an age band; marts never carry it.
select
    c.id::bigint                            as client_id,
    c.account_no::text                      as account_no,
    c.status_enum::int                      as status_code,
    coalesce(st.enum_value, 'unknown_' || c.status_enum::text) as status,
    c.sub_status::bigint                    as sub_status_cv_id,
    c.office_id::bigint                     as office_id,
    c.staff_id::bigint                      as staff_id,
    c.gender_cv_id::bigint                  as gender_cv_id,
    c.date_of_birth::date                   as date_of_birth,
    c.client_type_cv_id::bigint             as client_type_cv_id,
    c.client_classification_cv_id::bigint   as client_classification_cv_id,
    c.legal_form_enum::int                  as legal_form_code,
    lf.enum_value                           as legal_form,
    c.submittedon_date::date                as submitted_on_date,
    c.activation_date::date                 as activation_date,
    c.office_joining_date::date             as office_joining_date,
    c.closedon_date::date                   as closed_on_date,
    c.closure_reason_cv_id::bigint          as closure_reason_cv_id,
    c.rejectedon_date::date                 as rejected_on_date,
    c.withdrawn_on_date::date               as withdrawn_on_date,
    c.reactivated_on_date::date             as reactivated_on_date,
    c.created_on_utc::timestamptz           as created_on_utc,
    c.last_modified_on_utc::timestamptz     as last_modified_on_utc,
    c._extracted_at                         as extracted_at
from {{ source('fineract', 'm_client') }} c
left join {{ ref('fineract_enum_labels') }} st
    on st.enum_name = 'client_status' and st.enum_code = c.status_enum
left join {{ ref('fineract_enum_labels') }} lf
    on lf.enum_name = 'legal_form' and lf.enum_code = c.legal_form_enum
where not c._deleted
