{#-
  The KPI definitions of the contract, once, for every slice.

  core_kpi_month(slicing, slices_sql) returns one SELECT with a row per
  slice and period (every slice of `slices_sql` x every period of
  int_kpi__periods; empty counts 0, ratios with a 0 denominator null).

  slicing: branch, loan_officer, product or segment (core_kpi_slicings); its
  slice columns are the attributes slicing both clients and loans (the
  marts slice by branch_id and one other, so that branch row-level security
  applies to every mart), each one of
    branch_id       - client's branch (m_client.office_id); a loan: its client's branch
    loan_officer_id - client's officer (m_client.staff_id); a loan: m_loan.loan_officer_id (-1 none)
    product_id      - a loan: m_loan.product_id; a client: the product of the client's
                      first disbursed loan ("entry product", int_client__entry_product;
                      -1 = no disbursed loan), as segment_key uses the band at entry
    segment_key     - client's gender|area|poverty band at entry; a loan: its client's

  Definitions at period_end D (docs/kpi-contract.md):
    active_clients = activation_date <= D < closedon_date (never for pending,
    rejected, withdrawn); new/exited = activation/closure in the period;
    retention_rate = the method of var retention_method (below);
    retention_rate_12m = active / (active twelve periods earlier + new of the twelve
    periods ending with this one), null with fewer than twelve earlier periods;
    active_borrowers = distinct clients with a loan outstanding at D, women_borrowers
    those whose gender is female; women_borrowers_share = women / active borrowers;
    gross_loan_portfolio = sum of outstanding principal at D;
    parN_principal = outstanding principal of loans with days in arrears > N
    (N = 1: > 0 days, N = 30, N = 90), parN_ratio = parN_principal / portfolio;
    write_off_ratio_12m = write_off_amount of the twelve periods ending with this
    one / mean gross_loan_portfolio of those twelve period ends (MIX / SEEP annual
    write-off ratio), null with fewer than twelve periods;
    loan_officers = distinct m_loan.loan_officer_id (not null) with a loan
    outstanding in the slice at D; borrowers_per_officer = active_borrowers /
    loan_officers (IRIS PI9250 caseload; a loan officer's own row: his borrowers);
    ppi_assessed_clients / avg_poverty_likelihood = active clients at D with a PPI
    assessment interviewed by D, mean likelihood of each one's latest assessment;
    ppi_coverage = ppi_assessed_clients / active_clients.
  Retention methods (var retention_method, default contract):
    contract    active / (active at previous period_end + new)
    iris_pi9319 IRIS+ PI9319 (v4.0): (active at the end - new clients of the period)
                / active at the start (previous period_end). It does not tell new from
                rejoining clients (a reactivated client is new) and falls below the share
                of survivors when new clients leave within the period (even below 0)
    followon    1 - drop-outs / decided repaid loans: loans repaid in full in the
                period whose client took no other loan within var dropout_followon_days
                (decided once that window has passed or a follow-on happened)
  All three are published side by side as retention_rate_contract,
  retention_rate_iris, retention_rate_followon; retention_rate_iris_12m is
  PI9319 over twelve periods: (active - new of the twelve periods ending with
  this one) / active twelve periods earlier.
  Every ratio is null when its denominator is 0 (or its window incomplete).
-#}

{#-
  The KPI columns of the kpi_*_month marts, written once. A mart selects its
  slice columns and names, then core_kpi_month_columns(): every KPI column of
  core_kpi_month in this order, as `alias.column`, comma-separated (no
  trailing comma), minus `except`. kpi_branch_month, the contract's table,
  puts the contract's columns first: core_kpi_month_columns(only=
  core_kpi_contract_columns()), then its region, then the rest with
  except=core_kpi_contract_columns().
-#}
{% macro core_kpi_month_column_names() -%}
    {{ return([
        'period_end', 'period_month', 'is_latest_period',
        'active_clients', 'new_clients', 'exited_clients', 'active_clients_previous',
        'retention_rate', 'retention_rate_12m', 'retention_rate_contract', 'retention_rate_iris',
        'retention_rate_iris_12m', 'retention_rate_followon', 'repaid_loans_decided', 'dropouts',
        'active_borrowers', 'women_borrowers', 'women_borrowers_share', 'loans_outstanding',
        'loan_officers', 'borrowers_per_officer',
        'gross_loan_portfolio', 'par30_principal', 'par30_ratio', 'par1_principal', 'par1_ratio',
        'par90_principal', 'par90_ratio',
        'write_off_amount', 'loans_written_off', 'write_off_ratio_12m', 'disbursed_amount', 'loans_disbursed',
        'ppi_assessed_clients', 'avg_poverty_likelihood', 'ppi_coverage'
    ]) }}
{%- endmacro %}

{#- The columns of kpi_branch_month that docs/kpi-contract.md names, in its order. -#}
{% macro core_kpi_contract_columns() -%}
    {{ return([
        'period_end', 'active_clients', 'new_clients', 'exited_clients', 'retention_rate', 'retention_rate_12m',
        'active_borrowers', 'women_borrowers', 'gross_loan_portfolio', 'par30_principal', 'par30_ratio',
        'ppi_assessed_clients', 'avg_poverty_likelihood'
    ]) }}
{%- endmacro %}

{% macro core_kpi_month_columns(alias='k', only=none, except=[]) -%}
    {%- set names = only if only is not none else core_kpi_month_column_names() -%}
    {%- set selected = [] -%}
    {%- for c in names if c not in except -%}
        {%- do selected.append(alias ~ '.' ~ c) -%}
    {%- endfor -%}
    {{ selected | join(',\n    ') }}
{%- endmacro %}

{#- The retention_rate of var retention_method, among the three columns published. -#}
{% macro core_retention_method_column() -%}
    {%- set method = var('retention_method', 'contract') -%}
    {%- if method not in ('contract', 'iris_pi9319', 'followon') -%}
        {{ exceptions.raise_compiler_error("var retention_method must be contract, iris_pi9319 or followon; got '" ~ method ~ "'") }}
    {%- endif -%}
    {{ return({'contract': 'retention_rate_contract', 'iris_pi9319': 'retention_rate_iris', 'followon': 'retention_rate_followon'}[method]) }}
{%- endmacro %}


{% macro core_kpi_month(slicing, slices_sql) %}
{%- set slice_columns = core_kpi_slicings()[slicing] -%}
{%- set keys = slice_columns | join(', ') -%}
{%- set retention_column = core_retention_method_column() -%}
with periods as (
    select period_month, period_end, period_seq
    from {{ ref('int_kpi__periods') }}
)

, slices as (
    select distinct {{ keys }} from ({{ slices_sql }}) s
)

, grid as (
    select {% for k in slice_columns %}s.{{ k }}, {% endfor %}p.period_month, p.period_end, p.period_seq
    from slices s
    cross join periods p
)

, client_attrs as (
    select client_id, branch_id, loan_officer_id, product_id, segment_key, gender
    from {{ ref('int_kpi__client_attrs') }}
)

, client_flow as (
    select
        {% for k in slice_columns %}ca.{{ k }}, {% endfor %}
        e.period_month,
        sum(e.active_delta)                             as active_delta,
        sum(e.new_clients)                              as new_clients,
        sum(e.exited_clients)                           as exited_clients,
        sum(e.ppi_assessed_delta)                       as ppi_assessed_delta,
        sum(e.poverty_likelihood_delta)                 as poverty_likelihood_delta
    from {{ ref('int_client__kpi_events') }} e
    join client_attrs ca on ca.client_id = e.client_id
    group by {% for k in slice_columns %}ca.{{ k }}, {% endfor %}e.period_month
)

-- the loan measures per slice and month (borrowers, portfolio, PAR, disbursements), kept
-- incrementally by (slice, month) (macros/incremental/core_kpi_loan_month.sql)
, loan_stock as (
    select * from {{ ref('int_kpi__' ~ slicing ~ '_loan_month') }}
)

, loans as (
    select
        l.loan_id,
        l.client_id,
        coalesce(l.branch_id, -1)                       as branch_id,
        coalesce(l.loan_officer_id, -1)                 as loan_officer_id,
        coalesce(l.product_id, -1)                      as product_id,
        coalesce(ca.segment_key, 'unknown|unknown|unknown') as segment_key,
        l.disbursed_on,
        l.written_off_on,
        l.written_off_principal
    from {{ ref('int_loan__lifecycle') }} l
    left join client_attrs ca on ca.client_id = l.client_id
)

, write_offs as (
    select {{ keys }}, {{ core_period_month('written_off_on') }} as period_month,
           sum(written_off_principal) as write_off_amount, count(*) as loans_written_off
    from loans
    where written_off_on is not null
    group by {{ keys }}, {{ core_period_month('written_off_on') }}
)

, followon as (
    select
        {% for k in slice_columns %}lo.{{ k }}, {% endfor %}
        f.period_month,
        count(*) filter (where f.is_decided)                        as repaid_loans_decided,
        count(*) filter (where f.is_decided and not f.followed_on)  as dropouts
    from {{ ref('int_loan__followon') }} f
    join loans lo on lo.loan_id = f.loan_id
    group by {% for k in slice_columns %}lo.{{ k }}, {% endfor %}f.period_month
)

, combined as (
    select
        {% for k in slice_columns %}g.{{ k }}, {% endfor %}
        g.period_month,
        g.period_end,
        g.period_seq,
        sum(coalesce(cf.active_delta, 0)) over w_cum                     as active_clients,
        coalesce(cf.new_clients, 0)                                      as new_clients,
        coalesce(cf.exited_clients, 0)                                   as exited_clients,
        sum(coalesce(cf.ppi_assessed_delta, 0)) over w_cum               as ppi_assessed_clients,
        sum(coalesce(cf.poverty_likelihood_delta, 0)) over w_cum         as poverty_likelihood_sum,
        coalesce(ls.active_borrowers, 0)                                 as active_borrowers,
        coalesce(ls.women_borrowers, 0)                                  as women_borrowers,
        coalesce(ls.loans_outstanding, 0)                                as loans_outstanding,
        coalesce(ls.loan_officers, 0)                                    as loan_officers,
        coalesce(ls.gross_loan_portfolio, 0)                             as gross_loan_portfolio,
        coalesce(ls.par30_principal, 0)                                  as par30_principal,
        coalesce(ls.par1_principal, 0)                                   as par1_principal,
        coalesce(ls.par90_principal, 0)                                  as par90_principal,
        coalesce(wo.write_off_amount, 0)                                 as write_off_amount,
        coalesce(wo.loans_written_off, 0)                                as loans_written_off,
        coalesce(ls.disbursed_amount, 0)                                 as disbursed_amount,
        coalesce(ls.loans_disbursed, 0)                                  as loans_disbursed,
        coalesce(fo.repaid_loans_decided, 0)                             as repaid_loans_decided,
        coalesce(fo.dropouts, 0)                                         as dropouts
    from grid g
    left join client_flow cf on {% for k in slice_columns %}cf.{{ k }} = g.{{ k }} and {% endfor %}cf.period_month = g.period_month
    left join loan_stock ls on {% for k in slice_columns %}ls.{{ k }} = g.{{ k }} and {% endfor %}ls.period_month = g.period_month
    left join write_offs wo on {% for k in slice_columns %}wo.{{ k }} = g.{{ k }} and {% endfor %}wo.period_month = g.period_month
    left join followon fo on {% for k in slice_columns %}fo.{{ k }} = g.{{ k }} and {% endfor %}fo.period_month = g.period_month
    window w_cum as (partition by {% for k in slice_columns %}g.{{ k }}{% if not loop.last %}, {% endif %}{% endfor %} order by g.period_month rows between unbounded preceding and current row)
)

, with_previous as (
    select
        c.*,
        coalesce(lag(c.active_clients) over w_slice, 0)                   as active_clients_previous,
        -- twelve-period windows: null / incomplete when the slice has fewer periods
        lag(c.active_clients, 12) over w_slice                             as active_clients_12_earlier,
        sum(c.new_clients) over w_12                                       as new_clients_12,
        count(*) over w_12                                                 as periods_12,
        sum(c.write_off_amount) over w_12                                  as write_off_amount_12,
        avg(c.gross_loan_portfolio) over w_12                              as avg_gross_loan_portfolio_12
    from combined c
    window w_slice as (partition by {% for k in slice_columns %}c.{{ k }}{% if not loop.last %}, {% endif %}{% endfor %} order by c.period_month),
           w_12 as (w_slice rows between 11 preceding and current row)
)

select
    {{ keys }},
    period_end,
    period_month,
    period_end = {{ core_as_of_date() }}                                  as is_latest_period,
    active_clients::int                                                   as active_clients,
    new_clients::int                                                      as new_clients,
    exited_clients::int                                                   as exited_clients,
    active_clients_previous::int                                          as active_clients_previous,
    {{ retention_column }}                                                as retention_rate,
    retention_rate_12m,
    retention_rate_contract,
    retention_rate_iris,
    retention_rate_iris_12m,
    retention_rate_followon,
    repaid_loans_decided::int                                             as repaid_loans_decided,
    dropouts::int                                                         as dropouts,
    active_borrowers::int                                                 as active_borrowers,
    women_borrowers::int                                                  as women_borrowers,
    women_borrowers::numeric / nullif(active_borrowers, 0)                as women_borrowers_share,
    loans_outstanding::int                                                as loans_outstanding,
    loan_officers::int                                                    as loan_officers,
    active_borrowers::numeric / nullif(loan_officers, 0)                  as borrowers_per_officer,
    gross_loan_portfolio::numeric(20, 6)                                  as gross_loan_portfolio,
    par30_principal::numeric(20, 6)                                       as par30_principal,
    par30_principal / nullif(gross_loan_portfolio, 0)                     as par30_ratio,
    par1_principal::numeric(20, 6)                                        as par1_principal,
    par1_principal / nullif(gross_loan_portfolio, 0)                      as par1_ratio,
    par90_principal::numeric(20, 6)                                       as par90_principal,
    par90_principal / nullif(gross_loan_portfolio, 0)                     as par90_ratio,
    write_off_amount::numeric(20, 6)                                      as write_off_amount,
    loans_written_off::int                                                as loans_written_off,
    case when periods_12 = 12
         then write_off_amount_12 / nullif(avg_gross_loan_portfolio_12, 0) end as write_off_ratio_12m,
    disbursed_amount::numeric(20, 6)                                      as disbursed_amount,
    loans_disbursed::int                                                  as loans_disbursed,
    ppi_assessed_clients::int                                             as ppi_assessed_clients,
    poverty_likelihood_sum / nullif(ppi_assessed_clients, 0)              as avg_poverty_likelihood,
    ppi_assessed_clients::numeric / nullif(active_clients, 0)             as ppi_coverage
from (
    select
        wp.*,
        wp.active_clients::numeric / nullif(wp.active_clients_previous + wp.new_clients, 0)             as retention_rate_contract,
        wp.active_clients::numeric / nullif(wp.active_clients_12_earlier + wp.new_clients_12, 0)        as retention_rate_12m,
        (wp.active_clients - wp.new_clients)::numeric / nullif(wp.active_clients_previous, 0)           as retention_rate_iris,
        (wp.active_clients - wp.new_clients_12)::numeric / nullif(wp.active_clients_12_earlier, 0)      as retention_rate_iris_12m,
        (wp.repaid_loans_decided - wp.dropouts)::numeric / nullif(wp.repaid_loans_decided, 0)           as retention_rate_followon
    from with_previous wp
) r
{% endmacro %}
