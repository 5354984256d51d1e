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
    k.segment_key,
    split_part(k.segment_key, '|', 1)               as gender,
    split_part(k.segment_key, '|', 2)               as area,
    split_part(k.segment_key, '|', 3)               as poverty_band_at_entry,
    b.band_label                                    as poverty_band_label,
    initcap(split_part(k.segment_key, '|', 1)) || ', ' || split_part(k.segment_key, '|', 2)
        || ', ' || coalesce(b.band_label, 'unknown') as segment_name,
    k.period_end,
    k.period_month,
    k.is_latest_period,
    k.active_clients,
    k.new_clients,
    k.exited_clients,
    k.active_clients_previous,
    k.retention_rate,
    k.retention_rate_contract,
    k.retention_rate_iris,
    k.retention_rate_followon,
    k.repaid_loans_decided,
    k.dropouts,
    k.active_borrowers,
    k.women_borrowers,
    k.loans_outstanding,
    k.gross_loan_portfolio,
    k.par30_principal,
    k.par30_ratio,
    k.write_off_amount,
    k.loans_written_off,
    k.disbursed_amount,
    k.loans_disbursed,
    k.ppi_assessed_clients,
    k.avg_poverty_likelihood
from ({{ core_kpi_month(['branch_id', 'segment_key'], slices_sql) }}) k
left join {{ ref('dim_branch') }} br on br.branch_id = k.branch_id
left join {{ ref('poverty_likelihood_bands') }} b on b.band_code = split_part(k.segment_key, '|', 3)
