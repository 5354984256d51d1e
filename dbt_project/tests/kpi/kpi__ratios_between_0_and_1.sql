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
{#- one scan per mart: each row's ratios as (name, value) pairs, rather than one scan per ratio -#}
{%- for model in models %}
select '{{ model }}' as model, v.ratio, m.period_end, v.value
from {{ ref(model) }} m
cross join lateral (values
    {%- for column in ratios + at_most_one %}
    ('{{ column }}', m.{{ column }}::numeric, {{ 'true' if column in ratios else 'false' }}){{ ',' if not loop.last }}
    {%- endfor %}
) v (ratio, value, at_least_zero)
where v.value > 1 or (v.at_least_zero and v.value < 0)
{% if not loop.last %}union all{% endif %}
{%- endfor %}
