{{ config(pre_hook=core_session_settings()) }}
-- KPIs per branch, loan product and period, with the contract's definitions.
-- Loans count for their own product (m_loan.product_id). Clients count for their
-- entry product, the product of their first disbursed loan (int_client__entry_product),
-- as the segment mart counts them for their poverty band at entry: active, new and
-- exited clients, retention and the PPI columns are those of the clients who came
-- in through the product; product -1 ('No loan') holds the clients without a
-- disbursed loan. One row per (branch, product) pair that any loan or client names,
-- every period; summing over products gives the branch totals of client counts,
-- portfolio and PAR (not of active borrowers: a client may borrow two products).
{%- set slices_sql -%}
    select coalesce(branch_id, -1) as branch_id, coalesce(product_id, -1) as product_id
    from {{ ref('int_loan__known_loans') }}
    union
    select coalesce(c.branch_id, -1), coalesce(ep.entry_product_id, -1)
    from {{ ref('int_client__current') }} c
    left join {{ ref('int_client__entry_product') }} ep on ep.client_id = c.client_id
{%- endset %}
select
    k.branch_id,
    b.branch_name,
    b.region_id,
    b.region_name,
    k.product_id,
    case when k.product_id = -1 then 'No loan' else d.product_name end as product_name,
    d.product_short_name,
    {{ core_kpi_month_columns() }}
from ({{ core_kpi_month('product', slices_sql) }}) k
left join {{ ref('dim_branch') }} b on b.branch_id = k.branch_id
left join {{ ref('dim_product') }} d on d.product_id = k.product_id
