{#-
  The KPI definitions of the contract, once, for every slice.

  core_kpi_month(slice_columns, slices_sql, client_basis) returns one SELECT with
  a row per slice and period (every slice of `slices_sql` x every period of
  int_kpi__periods; empty counts 0, ratios with a 0 denominator null).

  slice_columns: the attributes slicing both clients and loans (a list; the
  marts slice by branch_id and one other, so that branch row-level security
  applies to every mart), each one of
    branch_id       - client's branch (m_client.office_id); a loan: its client's branch
    loan_officer_id - client's officer (m_client.staff_id); a loan: m_loan.loan_officer_id (-1 none)
    product_id      - loans only (m_loan.product_id)
    segment_key     - client's gender|area|poverty band at entry; a loan: its client's
  client_basis:
    'client'   - client counts (active, new, exited, retention, PPI) from the clients
                 attributed to the slice;
    'borrower' - no client counts (null); PPI columns over the slice's active
                 borrowers who are active clients (used for products).

  Definitions at period_end D (docs/kpi-contract.md):
    active_clients = activation_date <= D < closedon_date (never for pending,
    rejected, withdrawn); new/exited = activation/closure in the period;
    retention_rate = the method of var retention_method (below);
    retention_rate_12m = active / (active twelve periods earlier + new of the twelve
    periods ending with this one), null with fewer than twelve earlier periods;
    active_borrowers = distinct clients with a loan outstanding at D, women_borrowers
    those whose gender is female; gross_loan_portfolio / par30_principal = sum of
    outstanding principal (days in arrears > 30); par30_ratio = par30 / portfolio;
    ppi_assessed_clients / avg_poverty_likelihood = active clients at D with a PPI
    assessment interviewed by D, mean likelihood of each one's latest assessment.
  Retention methods (var retention_method, default contract):
    contract    active / (active at previous period_end + new)
    iris_pi9319 (active at previous period_end - those of them who exited) / active
                at previous period_end: IRIS PI9319, the share of the clients active
                at the start who are still active at the end
    followon    1 - drop-outs / decided repaid loans: loans repaid in full in the
                period whose client took no other loan within var dropout_followon_days
                (decided once that window has passed or a follow-on happened)
  All three are published side by side as retention_rate_contract,
  retention_rate_iris, retention_rate_followon.
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
        'retention_rate_followon', 'repaid_loans_decided', 'dropouts',
        'active_borrowers', 'women_borrowers', 'loans_outstanding',
        'gross_loan_portfolio', 'par30_principal', 'par30_ratio',
        'write_off_amount', 'loans_written_off', 'disbursed_amount', 'loans_disbursed',
        'ppi_assessed_clients', 'avg_poverty_likelihood'
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


{% macro core_kpi_month(slice_columns, slices_sql, client_basis='client') %}
{%- set keys = slice_columns | join(', ') -%}
{%- set method = var('retention_method', 'contract') -%}
{%- if method not in ('contract', 'iris_pi9319', 'followon') -%}
    {{ exceptions.raise_compiler_error("var retention_method must be contract, iris_pi9319 or followon; got '" ~ method ~ "'") }}
{%- endif -%}
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
    select
        client_id,
        coalesce(branch_id, -1)             as branch_id,
        coalesce(loan_officer_id, -1)       as loan_officer_id,
        null::bigint                        as product_id,
        segment_key,
        gender,
        not is_never_active_status and activation_date is not null as can_be_active,
        activation_date,
        closed_on_date
    from {{ ref('int_client__current') }}
)

{% if client_basis == 'client' %}
, client_flow as (
    select
        {% for k in slice_columns %}ca.{{ k }}, {% endfor %}
        e.period_month,
        sum(e.active_delta)                             as active_delta,
        sum(e.new_clients)                              as new_clients,
        sum(e.exited_clients)                           as exited_clients,
        sum(e.exited_prior_active)                      as exited_prior_active,
        sum(e.ppi_assessed_delta)                       as ppi_assessed_delta,
        sum(e.poverty_likelihood_delta)                 as poverty_likelihood_delta
    from {{ ref('int_client__kpi_events') }} e
    join client_attrs ca on ca.client_id = e.client_id
    group by {% for k in slice_columns %}ca.{{ k }}, {% endfor %}e.period_month
)
{% endif %}

, portfolio as (
    select
        pm.period_month,
        pm.period_end,
        pm.client_id,
        pm.outstanding_principal,
        pm.is_par30,
        coalesce(pm.branch_id, -1)                      as branch_id,
        coalesce(pm.loan_officer_id, -1)                as loan_officer_id,
        coalesce(pm.product_id, -1)                     as product_id,
        coalesce(ca.segment_key, 'unknown|unknown|unknown') as segment_key,
        ca.gender
    from {{ ref('fct_portfolio_month') }} pm
    left join client_attrs ca on ca.client_id = pm.client_id
)

, loan_stock as (
    select
        {{ keys }},
        period_month,
        count(distinct client_id)                       as active_borrowers,
        count(distinct client_id) filter (where gender = 'female') as women_borrowers,
        count(*)                                        as loans_outstanding,
        sum(outstanding_principal)                      as gross_loan_portfolio,
        coalesce(sum(outstanding_principal) filter (where is_par30), 0) as par30_principal
    from portfolio
    group by {{ keys }}, period_month
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

, disbursements as (
    select {% for k in slice_columns %}lo.{{ k }}, {% endfor %}{{ core_period_month('t.transaction_date') }} as period_month,
           sum(t.amount) as disbursed_amount, count(distinct t.loan_id) as loans_disbursed
    -- fct_loan_transaction holds exactly the known transactions of known loans, already
    -- materialized: scanning it beats re-evaluating the raw view in every mart
    from {{ ref('fct_loan_transaction') }} t
    join loans lo on lo.loan_id = t.loan_id
    where t.transaction_type_code = 1
    group by {% for k in slice_columns %}lo.{{ k }}, {% endfor %}{{ core_period_month('t.transaction_date') }}
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

{% if client_basis == 'borrower' %}
, borrower_ppi as (
    -- active borrowers of the slice who are active clients at D, with the
    -- likelihood of their latest assessment interviewed by D
    select {{ keys }}, period_month, count(*) as ppi_assessed_clients, sum(poverty_likelihood) as poverty_likelihood_sum
    from (
        select distinct {% for k in slice_columns %}p.{{ k }}, {% endfor %}p.period_month, p.client_id, s.poverty_likelihood
        from portfolio p
        join client_attrs ca on ca.client_id = p.client_id
        join {{ ref('int_client__ppi_spans') }} s
            on s.client_id = p.client_id
           and s.covered_from <= p.period_end
           and (s.covered_until is null or s.covered_until > p.period_end)
        where ca.can_be_active
          and ca.activation_date <= p.period_end
          and (ca.closed_on_date is null or ca.closed_on_date > p.period_end)
    ) latest
    group by {{ keys }}, period_month
)
{% endif %}

, combined as (
    select
        {% for k in slice_columns %}g.{{ k }}, {% endfor %}
        g.period_month,
        g.period_end,
        g.period_seq,
        {% if client_basis == 'client' %}
        sum(coalesce(cf.active_delta, 0)) over w_cum                     as active_clients,
        coalesce(cf.new_clients, 0)                                      as new_clients,
        coalesce(cf.exited_clients, 0)                                   as exited_clients,
        coalesce(cf.exited_prior_active, 0)                              as exited_prior_active,
        sum(coalesce(cf.ppi_assessed_delta, 0)) over w_cum               as ppi_assessed_clients,
        sum(coalesce(cf.poverty_likelihood_delta, 0)) over w_cum         as poverty_likelihood_sum,
        {% else %}
        null::bigint                                                     as active_clients,
        null::bigint                                                     as new_clients,
        null::bigint                                                     as exited_clients,
        null::bigint                                                     as exited_prior_active,
        coalesce(bp.ppi_assessed_clients, 0)                             as ppi_assessed_clients,
        bp.poverty_likelihood_sum                                        as poverty_likelihood_sum,
        {% endif %}
        coalesce(ls.active_borrowers, 0)                                 as active_borrowers,
        coalesce(ls.women_borrowers, 0)                                  as women_borrowers,
        coalesce(ls.loans_outstanding, 0)                                as loans_outstanding,
        coalesce(ls.gross_loan_portfolio, 0)                             as gross_loan_portfolio,
        coalesce(ls.par30_principal, 0)                                  as par30_principal,
        coalesce(wo.write_off_amount, 0)                                 as write_off_amount,
        coalesce(wo.loans_written_off, 0)                                as loans_written_off,
        coalesce(d.disbursed_amount, 0)                                  as disbursed_amount,
        coalesce(d.loans_disbursed, 0)                                   as loans_disbursed,
        coalesce(fo.repaid_loans_decided, 0)                             as repaid_loans_decided,
        coalesce(fo.dropouts, 0)                                         as dropouts
    from grid g
    {% if client_basis == 'client' %}
    left join client_flow cf on {% for k in slice_columns %}cf.{{ k }} = g.{{ k }} and {% endfor %}cf.period_month = g.period_month
    {% else %}
    left join borrower_ppi bp on {% for k in slice_columns %}bp.{{ k }} = g.{{ k }} and {% endfor %}bp.period_month = g.period_month
    {% endif %}
    left join loan_stock ls on {% for k in slice_columns %}ls.{{ k }} = g.{{ k }} and {% endfor %}ls.period_month = g.period_month
    left join write_offs wo on {% for k in slice_columns %}wo.{{ k }} = g.{{ k }} and {% endfor %}wo.period_month = g.period_month
    left join disbursements d on {% for k in slice_columns %}d.{{ k }} = g.{{ k }} and {% endfor %}d.period_month = g.period_month
    left join followon fo on {% for k in slice_columns %}fo.{{ k }} = g.{{ k }} and {% endfor %}fo.period_month = g.period_month
    window w_cum as (partition by {% for k in slice_columns %}g.{{ k }}{% if not loop.last %}, {% endif %}{% endfor %} order by g.period_month rows between unbounded preceding and current row)
)

, with_previous as (
    select
        c.*,
        {% if client_basis == 'client' %}
        coalesce(lag(c.active_clients) over w_slice, 0)                   as active_clients_previous,
        -- retention_rate_12m: twelve periods back (null when the slice has fewer earlier periods)
        lag(c.active_clients, 12) over w_slice                             as active_clients_12_earlier,
        sum(c.new_clients) over (w_slice rows between 11 preceding and current row) as new_clients_12
        {% else %}
        null::bigint as active_clients_previous,
        null::bigint as active_clients_12_earlier,
        null::bigint as new_clients_12
        {% endif %}
    from combined c
    window w_slice as (partition by {% for k in slice_columns %}c.{{ k }}{% if not loop.last %}, {% endif %}{% endfor %} order by c.period_month)
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
    {% if method == 'contract' %}retention_rate_contract{% elif method == 'iris_pi9319' %}retention_rate_iris{% else %}retention_rate_followon{% endif %} as retention_rate,
    retention_rate_12m,
    retention_rate_contract,
    retention_rate_iris,
    retention_rate_followon,
    repaid_loans_decided::int                                             as repaid_loans_decided,
    dropouts::int                                                         as dropouts,
    active_borrowers::int                                                 as active_borrowers,
    women_borrowers::int                                                  as women_borrowers,
    loans_outstanding::int                                                as loans_outstanding,
    gross_loan_portfolio::numeric(20, 6)                                  as gross_loan_portfolio,
    par30_principal::numeric(20, 6)                                       as par30_principal,
    par30_principal / nullif(gross_loan_portfolio, 0)                     as par30_ratio,
    write_off_amount::numeric(20, 6)                                      as write_off_amount,
    loans_written_off::int                                                as loans_written_off,
    disbursed_amount::numeric(20, 6)                                      as disbursed_amount,
    loans_disbursed::int                                                  as loans_disbursed,
    ppi_assessed_clients::int                                             as ppi_assessed_clients,
    poverty_likelihood_sum / nullif(ppi_assessed_clients, 0)              as avg_poverty_likelihood
from (
    select
        wp.*,
        wp.active_clients::numeric / nullif(wp.active_clients_previous + wp.new_clients, 0)             as retention_rate_contract,
        wp.active_clients::numeric / nullif(wp.active_clients_12_earlier + wp.new_clients_12, 0)        as retention_rate_12m,
        (wp.active_clients_previous - wp.exited_prior_active)::numeric / nullif(wp.active_clients_previous, 0) as retention_rate_iris,
        (wp.repaid_loans_decided - wp.dropouts)::numeric / nullif(wp.repaid_loans_decided, 0)           as retention_rate_followon
    from with_previous wp
) r
{% endmacro %}
