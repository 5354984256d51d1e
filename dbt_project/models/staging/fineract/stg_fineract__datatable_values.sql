{#- Values of the mapped Fineract datatable columns (raw_mis.datatable_values). The table exists
    once an extraction has read the datatables; before that this view is empty, so the marts
    build the same either way. -#}
{%- set src = source('fineract_datatables', 'datatable_values') %}
{%- if core_relation_exists(src) %}
select
    datatable::text         as datatable,
    entity::text            as entity,
    entity_id::bigint       as entity_id,
    row_id::text            as row_id,
    column_name::text       as column_name,
    value_text::text        as value_text,
    _extracted_at           as extracted_at
from {{ src }}
{%- else %}
select
    null::text              as datatable,
    null::text              as entity,
    null::bigint            as entity_id,
    null::text              as row_id,
    null::text              as column_name,
    null::text              as value_text,
    null::timestamptz       as extracted_at
where false
{%- endif %}
