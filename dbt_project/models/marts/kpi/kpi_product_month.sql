{{ config(pre_hook=core_session_settings()) }}
-- KPIs per branch, loan product and period, with the contract's definitions.
-- Clients belong to no product, so client counts (active/new/exited clients,
-- client retention) are null; the PPI columns are over the product's active
-- borrowers who are active clients. One row per (branch, product) pair that any
-- loan names, every period; summing over branches gives the product's totals.
{%- set slices_sql -%}
    select coalesce(branch_id, -1) as branch_id, coalesce(product_id, -1) as product_id
    from {{ ref('int_loan__known_loans') }}
{%- endset %}
select
    k.branch_id,
    b.branch_name,
    k.product_id,
    d.product_name,
    d.product_short_name,
    -- no client retention: clients belong to no product
    {{ core_kpi_month_columns(except=['active_clients_previous', 'retention_rate_12m', 'retention_rate_contract', 'retention_rate_iris']) }}
from ({{ core_kpi_month(['branch_id', 'product_id'], slices_sql, client_basis='borrower') }}) k
left join {{ ref('dim_branch') }} b on b.branch_id = k.branch_id
left join {{ ref('dim_product') }} d on d.product_id = k.product_id
