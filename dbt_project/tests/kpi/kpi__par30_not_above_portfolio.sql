-- PAR never exceeds the portfolio and the later buckets never exceed the earlier ones
-- (0 <= PAR90 <= PAR30 <= PAR1 <= portfolio), in any KPI mart, any slice, any period.
{%- set models = ['kpi_branch_month', 'kpi_loan_officer_month', 'kpi_product_month', 'kpi_segment_month'] %}
{%- for model in models %}
select '{{ model }}' as model, period_end, par90_principal, par30_principal, par1_principal, gross_loan_portfolio
from {{ ref(model) }}
where not (0 <= par90_principal and par90_principal <= par30_principal and par30_principal <= par1_principal
           and par1_principal <= gross_loan_portfolio)
{% if not loop.last %}union all{% endif %}
{%- endfor %}
