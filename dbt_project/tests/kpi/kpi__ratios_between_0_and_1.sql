-- Every ratio and average of likelihoods lies in [0, 1] (or is null), in every KPI mart
-- by month and by period. IRIS PI9319 ((active - new) / active at the start) is at most 1
-- but may fall below 0 when new clients leave within the period: checked against 1 only,
-- as is retention_rate when var retention_method is iris_pi9319.
{%- set ratios = ['par30_ratio', 'par1_ratio', 'par90_ratio', 'retention_rate_contract', 'retention_rate_12m',
                  'retention_rate_followon', 'women_borrowers_share', 'avg_poverty_likelihood', 'ppi_coverage'] -%}
{%- set at_most_one = ['retention_rate_iris', 'retention_rate_iris_12m'] -%}
{%- if var('retention_method', 'contract') == 'iris_pi9319' -%}
    {%- do at_most_one.append('retention_rate') -%}
{%- else -%}
    {%- do ratios.append('retention_rate') -%}
{%- endif -%}
{%- set models = ['kpi_branch_month', 'kpi_loan_officer_month', 'kpi_product_month', 'kpi_segment_month',
                  'kpi_branch_period', 'kpi_loan_officer_period', 'kpi_product_period', 'kpi_segment_period'] %}
{%- for model in models %}
{%- for column in ratios + at_most_one %}
select '{{ model }}' as model, '{{ column }}' as ratio, period_end, {{ column }}::numeric as value
from {{ ref(model) }}
where {{ column }} > 1{% if column in ratios %} or {{ column }} < 0{% endif %}
{% if not loop.last %}union all{% endif %}
{%- endfor %}
{% if not loop.last %}union all{% endif %}
{%- endfor %}
