-- Groups and centers (group names are not personal data).
select
    g.id::bigint            as group_id,
    g.office_id::bigint     as office_id,
    g.staff_id::bigint      as staff_id,
    g.parent_id::bigint     as parent_group_id,
    g.level_id::int         as level_id,
    g.status_enum::int      as status_code,
    coalesce(st.enum_value, 'unknown_' || g.status_enum::text) as status,
    g.activation_date::date as activation_date,
    g.closedon_date::date   as closed_on_date,
    g.display_name::text    as group_name,
    g._extracted_at         as extracted_at
from {{ source('fineract', 'm_group') }} g
left join {{ ref('fineract_enum_labels') }} st
    on st.enum_name = 'group_status' and st.enum_code = g.status_enum
where not g._deleted
