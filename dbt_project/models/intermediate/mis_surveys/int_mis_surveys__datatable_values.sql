{#-
    Values of the Fineract datatable columns mapped in
    seeds/datatable_indicator_map.csv, one row per datatable row and mapped
    column, as indicator values of a client: a client datatable's row belongs
    to its client_id, a loan datatable's to the loan's client.

    numeric columns give value_numeric (a value that is not a plain number is
    dropped, like an out-of-range survey answer); text columns give
    value_text, trimmed and lower-cased. Datatables hold current values, not
    dated observations: fct_client_indicator dates them at the as-of date.
-#}

with values_raw as (

    select * from {{ ref('stg_fineract__datatable_values') }}

),

mapped as (

    select
        btrim(datatable)        as datatable,
        btrim(column_name)      as column_name,
        btrim(entity)           as entity,
        btrim(indicator_code)   as indicator_code,
        btrim(value_type)       as value_type
    from {{ ref('datatable_indicator_map') }}

),

loans as (

    select loan_id, client_id from {{ ref('stg_fineract__m_loan') }}

)

select
    format('datatable:%s:%s', v.datatable, v.row_id)                        as instance_id,
    v.datatable,
    v.row_id,
    v.column_name,
    v.entity,
    v.entity_id,
    case when v.entity = 'client' then v.entity_id else l.client_id end     as client_id,
    m.indicator_code,
    case when m.value_type = 'numeric' and btrim(v.value_text) ~ '^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$'
         then btrim(v.value_text)::numeric end                               as value_numeric,
    case when m.value_type = 'text' then nullif(lower(btrim(v.value_text)), '') end as value_text,
    v.extracted_at
from values_raw as v
inner join mapped as m
    on m.datatable = v.datatable
   and m.column_name = v.column_name
   and m.entity = v.entity
left join loans as l
    on v.entity = 'loan'
   and l.loan_id = v.entity_id
