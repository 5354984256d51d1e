-- Every ratio and average of likelihoods lies in [0, 1] (or is null), in every KPI mart.
{%- set checks = {
    'kpi_branch_month': ['par30_ratio', 'retention_rate', 'retention_rate_contract', 'retention_rate_iris', 'retention_rate_followon', 'avg_poverty_likelihood'],
    'kpi_loan_officer_month': ['par30_ratio', 'retention_rate', 'retention_rate_contract', 'retention_rate_iris', 'retention_rate_followon', 'avg_poverty_likelihood'],
    'kpi_product_month': ['par30_ratio', 'retention_rate', 'retention_rate_followon', 'avg_poverty_likelihood'],
    'kpi_segment_month': ['par30_ratio', 'retention_rate', 'retention_rate_contract', 'retention_rate_iris', 'retention_rate_followon', 'avg_poverty_likelihood'],
} %}
{%- for model, columns in checks.items() %}
{%- for column in columns %}
select '{{ model }}' as model, '{{ column }}' as ratio, period_end, {{ column }}::numeric as value
from {{ ref(model) }}
where {{ column }} < 0 or {{ column }} > 1
{% if not loop.last %}union all{% endif %}
{%- endfor %}
{% if not loop.last %}union all{% endif %}
{%- endfor %}
