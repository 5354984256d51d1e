{#-
  The KPI marts by month, quarter and year, built from a kpi_*_month mart (one
  macro for the four kpi_*_period marts).

  core_kpi_period(month_model, slice_columns, carry_columns) returns one SELECT
  with, per slice of `month_model` (its `slice_columns`, e.g. ['branch_id',
  'product_id']) and per period_grain:
    month    every period of the month mart;
    quarter  every calendar quarter, ending with its last month, or with the
             month of as_of_date for the quarter still running (a partial period);
    year     the same for calendar years.
  `carry_columns`: the slice's key and name columns, in output order, taken from
  the month row that ends the period (names are constant per slice).

  Per row: period_label ('2024-06', '2024 Q2', '2024'), period_start (first day
  of the calendar period), period_end (that of its last month: month end, or
  as_of_date), is_latest_period (period_end = as_of_date, one per grain),
  is_partial_period (period_end before the calendar period's last day), then
    stocks      at the period end: the values of the month that ends the period
                (active clients and borrowers, portfolio, PAR, caseload, PPI, and
                the twelve-period ratios retention_rate_12m, retention_rate_iris_12m,
                write_off_ratio_12m);
    flows       summed over the period's months (new and exited clients, write-offs,
                disbursements, decided repaid loans and drop-outs);
    retention   over the grain: active_clients_previous = active clients at the
                previous period end of the same grain (the month before period_start;
                0 before the first period); retention_rate_contract = active /
                (previous + new of the period); retention_rate_iris = (active - new)
                / previous; retention_rate_followon = 1 - drop-outs / decided;
                retention_rate = the one of var retention_method.
  Year-on-year: <kpi>_year_ago = the same grain's value for the span one year
  earlier (period_start and period end month both one year back; for a partial
  period that is the same part of last year's period), null when that end month
  is not a period; for the columns of core_kpi_year_ago_columns().
-#}

{#- Month columns taken at the period end, summed over the period, or recomputed. -#}
{% macro core_kpi_flow_columns() -%}
    {{ return(['new_clients', 'exited_clients', 'repaid_loans_decided', 'dropouts',
               'write_off_amount', 'loans_written_off', 'disbursed_amount', 'loans_disbursed']) }}
{%- endmacro %}

{% macro core_kpi_recomputed_columns() -%}
    {{ return(['active_clients_previous', 'retention_rate', 'retention_rate_contract', 'retention_rate_iris',
               'retention_rate_followon']) }}
{%- endmacro %}

{% macro core_kpi_year_ago_columns() -%}
    {{ return(['active_clients', 'new_clients', 'exited_clients', 'active_borrowers', 'women_borrowers_share',
               'gross_loan_portfolio', 'par30_ratio', 'par1_ratio', 'par90_ratio', 'write_off_amount',
               'write_off_ratio_12m', 'retention_rate_12m', 'ppi_coverage', 'avg_poverty_likelihood',
               'borrowers_per_officer']) }}
{%- endmacro %}

{#- The KPI columns of a kpi_*_period mart, in order (after the slice and period columns). -#}
{% macro core_kpi_period_kpi_columns() -%}
    {%- set out = [] -%}
    {%- for c in core_kpi_month_column_names() if c not in ('period_end', 'period_month', 'is_latest_period') -%}
        {%- do out.append(c) -%}
    {%- endfor -%}
    {{ return(out) }}
{%- endmacro %}

{% macro core_kpi_period(month_model, slice_columns, carry_columns) %}
{%- set flows = core_kpi_flow_columns() -%}
{%- set recomputed = core_kpi_recomputed_columns() -%}
{%- set kpis = core_kpi_period_kpi_columns() -%}
{%- set retention_column = core_retention_method_column() -%}
with calendar as (
    select period_month from {{ ref('int_kpi__periods') }}
)

, spans as (
    -- the published periods: first calendar month and the month that ends each
    select 'month'::text as period_grain, period_month as period_start, period_month as end_month
    from calendar
    union all
    select 'quarter', date_trunc('quarter', period_month)::date, max(period_month)
    from calendar group by date_trunc('quarter', period_month)::date
    union all
    select 'year', date_trunc('year', period_month)::date, max(period_month)
    from calendar group by date_trunc('year', period_month)::date
)

, wanted as (
    -- those periods and, for the year-ago columns, the same spans one year earlier
    select period_grain, period_start, end_month from spans
    union
    select period_grain, (period_start - interval '1 year')::date, (end_month - interval '1 year')::date from spans
)

, span_months as (
    -- the months each span adds up (none before the first period: nothing happened then)
    select w.period_grain, w.period_start, w.end_month, c.period_month
    from wanted w
    join calendar c on c.period_month between w.period_start and w.end_month
    where exists (select 1 from calendar e where e.period_month = w.end_month)
)

, span_flows as (
    select
        {% for k in slice_columns %}m.{{ k }}, {% endfor %}
        sm.period_grain, sm.period_start, sm.end_month,
        {%- for c in flows %}
        sum(m.{{ c }}) as {{ c }}{% if not loop.last %},{% endif %}
        {%- endfor %}
    from span_months sm
    join {{ month_model }} m on m.period_month = sm.period_month
    group by {% for k in slice_columns %}m.{{ k }}, {% endfor %}sm.period_grain, sm.period_start, sm.end_month
)

, span_values as (
    select
        {% for k in slice_columns %}f.{{ k }}, {% endfor %}
        f.period_grain,
        f.period_start,
        f.end_month,
        e.period_end,
        e.is_latest_period,
        {%- for c in kpis if c not in flows and c not in recomputed %}
        e.{{ c }},
        {%- endfor %}
        {%- for c in flows %}
        f.{{ c }},
        {%- endfor %}
        coalesce(p.active_clients, 0)                                     as active_clients_previous
    from span_flows f
    join {{ month_model }} e
        on {% for k in slice_columns %}e.{{ k }} = f.{{ k }} and {% endfor %}e.period_month = f.end_month
    left join {{ month_model }} p
        on {% for k in slice_columns %}p.{{ k }} = f.{{ k }} and {% endfor %}p.period_month = (f.period_start - interval '1 month')::date
)

, rated as (
    select
        sv.*,
        sv.active_clients::numeric / nullif(sv.active_clients_previous + sv.new_clients, 0)       as retention_rate_contract,
        (sv.active_clients - sv.new_clients)::numeric / nullif(sv.active_clients_previous, 0)     as retention_rate_iris,
        (sv.repaid_loans_decided - sv.dropouts)::numeric / nullif(sv.repaid_loans_decided, 0)     as retention_rate_followon
    from span_values sv
)

, with_year_ago as (
    -- the same span one year earlier: the previous row of its slice among spans of the same grain,
    -- first calendar month and length (a window, not a self-join: the planner cannot estimate
    -- the spans and picked a nested loop over every pair of them, 80 s at 20k clients)
    select
        rt.*,
        {%- for c in core_kpi_year_ago_columns() %}
        case when lag(rt.period_start) over w_ya = (rt.period_start - interval '1 year')::date
             then lag(rt.{{ c }}) over w_ya end                           as {{ c }}_year_ago{% if not loop.last %},{% endif %}
        {%- endfor %}
    from rated rt
    window w_ya as (
        partition by {% for k in slice_columns %}rt.{{ k }}, {% endfor %}rt.period_grain,
                     extract(month from rt.period_start),
                     (extract(year from rt.end_month) * 12 + extract(month from rt.end_month))
                     - (extract(year from rt.period_start) * 12 + extract(month from rt.period_start))
        order by rt.period_start
    )
)

select
    {%- for c in carry_columns %}
    e.{{ c }},
    {%- endfor %}
    r.period_grain,
    case r.period_grain
        when 'month' then to_char(r.period_start, 'YYYY-MM')
        when 'quarter' then to_char(r.period_start, 'YYYY "Q"Q')
        else to_char(r.period_start, 'YYYY')
    end                                                                   as period_label,
    r.period_start,
    r.period_end,
    r.is_latest_period,
    r.period_end < (r.period_start + case r.period_grain when 'month' then interval '1 month'
                                                          when 'quarter' then interval '3 months'
                                                          else interval '1 year' end - interval '1 day')::date
                                                                          as is_partial_period,
    {%- for c in kpis %}
    {%- if c == 'retention_rate' %}
    r.{{ retention_column }}                                              as retention_rate,
    {%- elif c in flows or c == 'active_clients_previous' %}
    r.{{ c }}::{{ 'numeric(20, 6)' if c in ('write_off_amount', 'disbursed_amount') else 'int' }} as {{ c }},
    {%- else %}
    r.{{ c }},
    {%- endif %}
    {%- endfor %}
    {%- for c in core_kpi_year_ago_columns() %}
    r.{{ c }}_year_ago{{ '::numeric(20, 6)' if c in ('write_off_amount', 'gross_loan_portfolio') else ('::int' if c in flows else '') }} as {{ c }}_year_ago{% if not loop.last %},{% endif %}
    {%- endfor %}
from with_year_ago r
join spans s
    on s.period_grain = r.period_grain and s.period_start = r.period_start and s.end_month = r.end_month
join {{ month_model }} e
    on {% for k in slice_columns %}e.{{ k }} = r.{{ k }} and {% endfor %}e.period_month = r.end_month
{% endmacro %}
