{{ config(pre_hook=core_session_settings()) }}
-- KPIs per loan product and period, with the contract's definitions. Clients
-- belong to no product, so the client counts (active/new/exited clients,
-- client retention) are null; the PPI columns are over the product's active
-- borrowers who are active clients. One row per product that any loan names.
{%- set slices_sql -%}
    select product_id as slice_key from {{ ref('int_loan__known_loans') }} where product_id is not null
{%- endset %}
select
    k.slice_key                         as product_id,
    d.product_name,
    d.product_short_name,
    k.period_end,
    k.period_month,
    k.active_clients,
    k.new_clients,
    k.exited_clients,
    k.retention_rate,
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
from ({{ core_kpi_month('product_id', slices_sql, client_basis='borrower') }}) k
left join {{ ref('dim_product') }} d on d.product_id = k.slice_key
