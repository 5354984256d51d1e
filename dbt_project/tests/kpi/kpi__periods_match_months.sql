-- The kpi_*_period marts restate their month marts: the month rows are the month
-- mart's rows; a quarter or year sums the flows of its months and takes the
-- stocks of its last month; every slice has one latest row per grain.
{%- set marts = {
    'kpi_branch_period': ('kpi_branch_month', ['branch_id']),
    'kpi_loan_officer_period': ('kpi_loan_officer_month', ['branch_id', 'loan_officer_id']),
    'kpi_product_period': ('kpi_product_month', ['branch_id', 'product_id']),
    'kpi_segment_period': ('kpi_segment_month', ['branch_id', 'segment_key']),
} %}
{%- for period_model, spec in marts.items() %}
{%- set month_model, keys = spec %}
select '{{ period_model }}' as model, p.period_grain, p.period_end, 'differs from its months' as problem
from {{ ref(period_model) }} p
join (
    select {% for k in keys %}m.{{ k }}, {% endfor %}g.grain,
           date_trunc(g.grain, m.period_month)::date                       as period_start,
           max(m.period_end)                                                as period_end,
           sum(m.new_clients)                                               as new_clients,
           sum(m.exited_clients)                                            as exited_clients,
           sum(m.write_off_amount)                                          as write_off_amount,
           sum(m.disbursed_amount)                                          as disbursed_amount,
           sum(m.dropouts)                                                  as dropouts
    from {{ ref(month_model) }} m
    cross join (values ('month'), ('quarter'), ('year')) g (grain)
    group by {% for k in keys %}m.{{ k }}, {% endfor %}g.grain, date_trunc(g.grain, m.period_month)::date
) f on {% for k in keys %}f.{{ k }} = p.{{ k }} and {% endfor %}f.grain = p.period_grain and f.period_start = p.period_start
join {{ ref(month_model) }} e on {% for k in keys %}e.{{ k }} = p.{{ k }} and {% endfor %}e.period_end = p.period_end
where f.period_end <> p.period_end
   or f.new_clients <> p.new_clients
   or f.exited_clients <> p.exited_clients
   or f.write_off_amount <> p.write_off_amount
   or f.disbursed_amount <> p.disbursed_amount
   or f.dropouts <> p.dropouts
   or e.active_clients <> p.active_clients
   or e.gross_loan_portfolio <> p.gross_loan_portfolio
   or e.par30_principal <> p.par30_principal
   or e.active_borrowers <> p.active_borrowers
   or e.ppi_assessed_clients <> p.ppi_assessed_clients
   or (p.period_grain = 'month' and p.retention_rate is distinct from e.retention_rate)
union all
select '{{ period_model }}', period_grain, max(period_end), 'not one latest period per slice and grain'
from {{ ref(period_model) }}
group by {% for k in keys %}{{ k }}, {% endfor %}period_grain
having count(*) filter (where is_latest_period) <> 1
union all
select '{{ period_model }}', p.period_grain, p.period_end, 'a period of the month mart is missing'
from (
    select {% for k in keys %}m.{{ k }}, {% endfor %}g.grain as period_grain, max(m.period_end) as period_end
    from {{ ref(month_model) }} m
    cross join (values ('month'), ('quarter'), ('year')) g (grain)
    group by {% for k in keys %}m.{{ k }}, {% endfor %}g.grain, date_trunc(g.grain, m.period_month)
) p
where not exists (
    select 1 from {{ ref(period_model) }} x
    where {% for k in keys %}x.{{ k }} = p.{{ k }} and {% endfor %}x.period_grain = p.period_grain
      and x.period_end = p.period_end
)
{% if not loop.last %}union all{% endif %}
{%- endfor %}
