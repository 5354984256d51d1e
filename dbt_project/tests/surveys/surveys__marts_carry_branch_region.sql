-- The survey KPI marts carry the region of their branch (dim_branch), like the
-- kpi_* marts, so that one region filter works on every dataset.
{%- set models = ['kpi_client_outcomes', 'kpi_exit_reasons_branch_month'] %}
{%- for model in models %}
select '{{ model }}' as model, k.branch_id, k.region_id, k.region_name
from {{ ref(model) }} k
left join {{ ref('dim_branch') }} b on b.branch_id = k.branch_id
where k.region_id is distinct from b.region_id
   or k.region_name is distinct from b.region_name
   or (k.branch_id is not null and k.region_name is null)
{% if not loop.last %}union all{% endif %}
{%- endfor %}
