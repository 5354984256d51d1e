-- Every KPI mart carries the region of its branch (dim_branch), so that one region
-- filter works on every dataset: a row whose region_id / region_name differ from
-- its branch's, or are missing, fails.
{%- set models = ['kpi_branch_month', 'kpi_loan_officer_month', 'kpi_product_month', 'kpi_segment_month',
                  'kpi_branch_period', 'kpi_loan_officer_period', 'kpi_product_period', 'kpi_segment_period'] %}
{%- for model in models %}
select '{{ model }}' as model, k.branch_id, k.region_id, k.region_name
from {{ ref(model) }} k
left join {{ ref('dim_branch') }} b on b.branch_id = k.branch_id
where k.region_name is null
   or k.region_id is distinct from b.region_id
   or k.region_name is distinct from b.region_name
{% if not loop.last %}union all{% endif %}
{%- endfor %}
