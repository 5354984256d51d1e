{{
  config(
    materialized='incremental',
    unique_key=['client_id', 'observed_at'],
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    full_refresh=false,
    post_hook=["{{ core_index('client_id, observed_at') }}", "{{ core_index('observed_at') }}"]
  )
}}
{#-
  Every version of a client's tracked attributes (branch, loan officer,
  classification, status and lifecycle dates) that the warehouse has seen:
  an append-only log, because raw_mis keeps only the current row. A version is
  added when the current row differs from the client's latest logged version.
  observed_at is the source's last_modified_on_utc (deterministic); the nightly
  run looks only at client rows merged since its last run (_extracted_at).
  int_client__history turns the log into dated type 2 rows.
  full_refresh=false: the history cannot be re-read from the source, so
  `dbt build --full-refresh` keeps it (drop the table by hand to forget it).
-#}
with current_rows as (
    select
        client_id,
        coalesce(last_modified_on_utc, created_on_utc, extracted_at)            as observed_at,
        extracted_at,
        office_id,
        staff_id,
        client_classification_cv_id,
        status_code,
        submitted_on_date,
        activation_date,
        office_joining_date,
        closed_on_date,
        rejected_on_date,
        withdrawn_on_date,
        reactivated_on_date,
        md5(concat_ws('|', office_id, staff_id, client_classification_cv_id, status_code, submitted_on_date,
                      activation_date, office_joining_date, closed_on_date, rejected_on_date,
                      withdrawn_on_date, reactivated_on_date))                  as attributes_hash
    from {{ ref('stg_fineract__m_client') }}
    {% if is_incremental() %}
    where extracted_at > (select coalesce(max(extracted_at), '-infinity'::timestamptz) from {{ this }})
    {% endif %}
)

{% if is_incremental() %}
, latest as (
    select distinct on (v.client_id) v.client_id, v.observed_at, v.attributes_hash
    from {{ this }} v
    join current_rows c on c.client_id = v.client_id
    order by v.client_id, v.observed_at desc
)
{% endif %}

select c.*
from current_rows c
{% if is_incremental() %}
left join latest l on l.client_id = c.client_id
where l.client_id is null
   or (l.attributes_hash <> c.attributes_hash and c.observed_at > l.observed_at)
{% endif %}
