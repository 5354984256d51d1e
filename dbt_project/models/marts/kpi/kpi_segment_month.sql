{{ config(pre_hook=core_session_settings()) }}
-- KPIs per branch, client segment and period, with the contract's definitions.
-- Segment = gender x area (ClientClassification rural/urban) x poverty band at
-- entry (band of the client's first PPI assessment, seeds/poverty_likelihood_bands.csv;
-- 'unknown' when never assessed). One row per (branch, segment) pair that any
-- client names, every period; loans count for their client's segment.
{%- set slices_sql -%}
    select coalesce(branch_id, -1) as branch_id, segment_key from {{ ref('int_client__current') }}
{%- endset %}
select
    k.branch_id,
    br.branch_name,
    br.region_id,
    br.region_name,
    k.segment_key,
    split_part(k.segment_key, '|', 1)               as gender,
    {{ display_label('gender', "split_part(k.segment_key, '|', 1)") }} as gender_label,
    split_part(k.segment_key, '|', 2)               as area,
    {{ display_label('area', "split_part(k.segment_key, '|', 2)") }} as area_label,
    split_part(k.segment_key, '|', 3)               as poverty_band_at_entry,
    b.band_label                                    as poverty_band_label,
    initcap(split_part(k.segment_key, '|', 1)) || ', ' || split_part(k.segment_key, '|', 2)
        || ', ' || coalesce(b.band_label, 'unknown') as segment_name,
    {{ core_kpi_month_columns() }}
from ({{ core_kpi_month('segment', slices_sql) }}) k
left join {{ ref('dim_branch') }} br on br.branch_id = k.branch_id
left join {{ ref('poverty_likelihood_bands') }} b on b.band_code = split_part(k.segment_key, '|', 3)
