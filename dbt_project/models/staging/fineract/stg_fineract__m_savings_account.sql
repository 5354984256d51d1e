-- Savings accounts.
select
    s.id::bigint                                    as savings_account_id,
    s.account_no::text                              as savings_account_no,
    s.client_id::bigint                             as client_id,
    s.group_id::bigint                              as group_id,
    s.product_id::bigint                            as savings_product_id,
    s.field_officer_id::bigint                      as field_officer_id,
    s.status_enum::int                              as status_code,
    coalesce(st.enum_value, 'unknown_' || s.status_enum::text) as status,
    s.activatedon_date::date                        as activated_on_date,
    s.closedon_date::date                           as closed_on_date,
    coalesce(s.account_balance_derived, 0)::numeric(19, 6) as account_balance,
    s.created_on_utc::timestamptz                   as created_on_utc,
    s.last_modified_on_utc::timestamptz             as last_modified_on_utc,
    s._extracted_at                                 as extracted_at
from {{ source('fineract', 'm_savings_account') }} s
left join {{ ref('fineract_enum_labels') }} st
    on st.enum_name = 'savings_status' and st.enum_code = s.status_enum
where not s._deleted
