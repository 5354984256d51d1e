{#-
  The loan side of the KPI month marts, kept incrementally.

  Why: every kpi_*_month mart grouped every row of fct_portfolio_month (count
  distinct borrowers and officers per slice and month) and scanned
  fct_loan_transaction for disbursements, every night: the whole history, four
  times. A past month's figures change only when some of its loan-month rows
  change (a backdated repayment, a branch transfer, a client's new segment),
  so the marts now read per-slicing base tables that a night updates only for
  the (slice, month) pairs whose rows changed.

  The models, in build order:
    int_kpi__client_attrs        the attributes the marts slice clients by;
                                 a night rewrites only the clients whose
                                 attributes changed (_changed_at);
    int_kpi__loan_month_changes  tonight's diff: for the loans that may have
                                 changed (raw deltas since the state, the
                                 loans of clients whose attributes changed)
                                 and the moving months (from the month of the
                                 state's as-of date on), the rows of
                                 int_kpi__loan_month as they are ('-') and as
                                 they must be ('+'), only where they differ;
                                 '*' when int_kpi__loan_month is built in full;
    int_kpi__loan_month          one row per loan and month of the portfolio
                                 (kind 'p') or of disbursements (kind 'd'),
                                 with every slice key; a night applies the diff;
    int_kpi__<slicing>_loan_month  per slicing, the loan measures per (slice,
                                 month); a night recomputes the pairs named by
                                 the changes it has not consumed yet, the old
                                 slices of a changed row included.
  Each change batch is kept until every base table has consumed it
  (_consumed_through), so a night whose base table failed is caught up the
  next night; a '*' batch makes them rebuild in full.
  State: int_kpi__loan_month's (core_mart_state: as-of date, cutoff,
  watermark of its newest row) plus _written_at, the time that run wrote.
  Compared with --full-refresh after every kind of change in
  test_kpi_incremental.py.
-#}

{#- The relation of a sibling model of this folder by name (it may not exist yet): read before it is rebuilt. -#}
{% macro core_kpi_sibling(name) %}
    {{ return(core_existing_relation(api.Relation.create(database=this.database, schema=this.schema, identifier=name))) }}
{% endmacro %}


{#- State of int_kpi__loan_month (core_mart_state plus written_at), or none when it does not exist. -#}
{% macro core_kpi_loan_month_state() %}
    {%- set relation = core_kpi_sibling('int_kpi__loan_month') -%}
    {%- if relation is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set state = core_mart_state(relation) -%}
    {%- if state['as_of'] is not none -%}
        {%- set row = run_query(
            "select _written_at::text from " ~ relation ~ " where _watermark is not null"
            ~ " order by _as_of_date desc, _cutoff_ts desc, _watermark desc, _written_at desc limit 1").rows[0] -%}
        {%- do state.update({'written_at': row[0]}) -%}
    {%- endif -%}
    {{ return(state) }}
{% endmacro %}


{#- loan_id of every loan whose rows of int_kpi__loan_month may have changed since `state`, moving months aside. -#}
{% macro core_kpi_loan_month_scope(state) -%}
    {{ core_mart_changed_loans(state, with_schedule=true) }}
    union
    select l.loan_id
    from {{ ref('int_loan__lifecycle') }} l
    join {{ ref('int_kpi__client_attrs') }} a on a.client_id = l.client_id
    where a._changed_at > '{{ state['written_at'] }}'::timestamptz
{%- endmacro %}


{#-
  The rows of int_kpi__loan_month as the marts define them. where_p / where_d: a condition on
  fct_portfolio_month pm / fct_loan_transaction t (none: every row).
-#}
{% macro core_kpi_loan_month_rows(where_p=none, where_d=none) -%}
    select
        'p'::text                                               as kind,
        pm.loan_id::bigint                                      as loan_id,
        pm.period_month::date                                   as period_month,
        pm.client_id::bigint                                    as client_id,
        coalesce(pm.branch_id, -1)::bigint                      as branch_id,
        coalesce(pm.loan_officer_id, -1)::bigint                as loan_officer_id,
        coalesce(pm.product_id, -1)::bigint                     as product_id,
        coalesce(a.segment_key, 'unknown|unknown|unknown')::text as segment_key,
        a.gender::text                                          as gender,
        pm.loan_officer_id::bigint                              as serving_officer_id,
        pm.outstanding_principal::numeric                       as outstanding_principal,
        pm.days_in_arrears::int                                 as days_in_arrears,
        null::numeric                                           as disbursed_amount
    from {{ ref('fct_portfolio_month') }} pm
    left join {{ ref('int_kpi__client_attrs') }} a on a.client_id = pm.client_id
    {%- if where_p %}
    where {{ where_p }}
    {%- endif %}
    union all
    select
        'd',
        t.loan_id,
        {{ core_period_month('t.transaction_date') }},
        lo.client_id,
        coalesce(lo.branch_id, -1),
        coalesce(lo.loan_officer_id, -1),
        coalesce(lo.product_id, -1),
        coalesce(a.segment_key, 'unknown|unknown|unknown'),
        null,
        null,
        null,
        null,
        sum(t.amount)::numeric
    -- fct_loan_transaction holds exactly the known transactions of known loans
    from {{ ref('fct_loan_transaction') }} t
    join {{ ref('int_loan__lifecycle') }} lo on lo.loan_id = t.loan_id
    left join {{ ref('int_kpi__client_attrs') }} a on a.client_id = lo.client_id
    where t.transaction_type_code = 1
    {%- if where_d %}
      and {{ where_d }}
    {%- endif %}
    group by t.loan_id, {{ core_period_month('t.transaction_date') }}, lo.client_id, lo.branch_id,
             lo.loan_officer_id, lo.product_id, a.segment_key
{%- endmacro %}


{#- The value columns of int_kpi__loan_month (besides the key kind, loan_id, period_month). -#}
{% macro core_kpi_loan_month_values() -%}
    {{ return(['client_id', 'branch_id', 'loan_officer_id', 'product_id', 'segment_key', 'gender',
               'serving_officer_id', 'outstanding_principal', 'days_in_arrears', 'disbursed_amount']) }}
{%- endmacro %}


{#- Pre-hook of int_kpi__loan_month_changes: forget the batches every base table has consumed. -#}
{% macro core_kpi_changes_prepare() %}
    {%- if not is_incremental() -%}
        {{ return('select 1') }}
    {%- endif -%}
    {%- set consumed = [] -%}
    {%- for slicing in core_kpi_slicings() -%}
        {%- set base = core_kpi_sibling('int_kpi__' ~ slicing ~ '_loan_month') -%}
        {%- if base is not none -%}
            {%- set through = run_query('select max(_consumed_through)::text from ' ~ base).rows[0][0] -%}
            {%- if through is not none -%}
                {%- do consumed.append(through) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if consumed | length == 0 -%}
        {{ return('truncate table ' ~ this) }}
    {%- endif -%}
    {{ return("delete from " ~ this ~ " where _change_at <= '" ~ (consumed | min) ~ "'::timestamptz") }}
{% endmacro %}


{#- Pre-hook of int_kpi__loan_month: empty it (full) or delete the rows tonight's batch replaces. -#}
{% macro core_kpi_loan_month_prepare() %}
    {%- if not is_incremental() -%}
        {{ return('select 1') }}
    {%- endif -%}
    {%- if core_mart_mode(core_kpi_loan_month_state()) == 'full' -%}
        {{ return('truncate table ' ~ this) }}
    {%- endif -%}
    {%- set sql -%}
        delete from {{ this }} t
        using {{ ref('int_kpi__loan_month_changes') }} c
        where c._change_at = (select max(_change_at) from {{ ref('int_kpi__loan_month_changes') }})
          and c.op in ('-', '+')  -- both: applying a batch twice changes nothing
          and t.kind = c.kind and t.loan_id = c.loan_id and t.period_month = c.period_month
    {%- endset -%}
    {{ return(sql) }}
{% endmacro %}


{#- The slicings of the kpi_*_month marts: name -> slice columns. -#}
{% macro core_kpi_slicings() -%}
    {{ return({'branch': ['branch_id'], 'loan_officer': ['branch_id', 'loan_officer_id'],
               'product': ['branch_id', 'product_id'], 'segment': ['branch_id', 'segment_key']}) }}
{%- endmacro %}


{#-
  State of a base table: {'through': newest change batch it consumed, 'full': must it rebuild}.
  It rebuilds when it is new or empty, or when a '*' batch came since.
-#}
{% macro core_kpi_base_state() %}
    {%- set existing = core_existing_relation(this) if is_incremental() else none -%}
    {%- if existing is none -%}
        {{ return({'through': none, 'full': true}) }}
    {%- endif -%}
    {%- set through = run_query('select max(_consumed_through)::text from ' ~ existing).rows[0][0] -%}
    {%- if through is none -%}
        {{ return({'through': none, 'full': true}) }}
    {%- endif -%}
    {%- set reset = run_query("select count(*) from " ~ ref('int_kpi__loan_month_changes')
        ~ " where op = '*' and _change_at > '" ~ through ~ "'::timestamptz").rows[0][0] -%}
    {{ return({'through': through, 'full': reset > 0}) }}
{% endmacro %}


{#- The (slice, month) pairs of the change batches a base table has not consumed. -#}
{% macro core_kpi_dirty_pairs(slice_columns, through) -%}
    select distinct {{ slice_columns | join(', ') }}, period_month
    from {{ ref('int_kpi__loan_month_changes') }}
    where _change_at > '{{ through }}'::timestamptz and op in ('-', '+')
{%- endmacro %}


{% macro core_kpi_base_prepare(slice_columns) %}
    {%- if not is_incremental() -%}
        {{ return('select 1') }}
    {%- endif -%}
    {%- set state = core_kpi_base_state() -%}
    {%- if state['full'] -%}
        {{ return('truncate table ' ~ this) }}
    {%- endif -%}
    {%- set sql -%}
        delete from {{ this }} b
        using ({{ core_kpi_dirty_pairs(slice_columns, state['through']) }}) d
        where {% for k in slice_columns %}b.{{ k }} = d.{{ k }} and {% endfor %}b.period_month = d.period_month
    {%- endset -%}
    {{ return(sql) }}
{% endmacro %}


{#-
  A base table: the loan measures of the kpi_*_month marts per (slice, month), from int_kpi__loan_month.
  Nightly, only the dirty pairs: the branch-month buckets that hold them are read through the index on
  (branch_id, period_month) (every slicing starts with branch_id), one bucket at a time.
-#}
{% macro core_kpi_loan_month_base(slice_columns) %}
{%- set keys = slice_columns | join(', ') -%}
{%- set state = core_kpi_base_state() -%}
with
{%- if not state['full'] %}
dirty as (
    {{ core_kpi_dirty_pairs(slice_columns, state['through']) }}
),

buckets as (
    select distinct branch_id, period_month from dirty
),

rows_in_scope as (
    select r.*
    from buckets b
    cross join lateral (
        select m.*
        from {{ ref('int_kpi__loan_month') }} m
        where m.branch_id = b.branch_id and m.period_month = b.period_month
        offset 0  -- keeps the index scan per bucket (no pull-up into a hash join over every row)
    ) r
    where exists (
        select 1 from dirty d
        where {% for k in slice_columns %}d.{{ k }} = r.{{ k }} and {% endfor %}d.period_month = r.period_month
    )
),
{%- else %}
rows_in_scope as (
    select * from {{ ref('int_kpi__loan_month') }}
),
{%- endif %}

consumed as (
    select coalesce(max(_change_at), now()) as through from {{ ref('int_kpi__loan_month_changes') }}
)

select
    {{ keys }},
    period_month,
    count(distinct client_id) filter (where kind = 'p')                                   as active_borrowers,
    count(distinct client_id) filter (where kind = 'p' and gender = 'female')             as women_borrowers,
    count(*) filter (where kind = 'p')                                                    as loans_outstanding,
    count(distinct serving_officer_id) filter (where kind = 'p')                          as loan_officers,
    sum(outstanding_principal) filter (where kind = 'p')                                  as gross_loan_portfolio,
    coalesce(sum(outstanding_principal) filter (where kind = 'p' and days_in_arrears > 30), 0) as par30_principal,
    coalesce(sum(outstanding_principal) filter (where kind = 'p' and days_in_arrears > 0), 0)  as par1_principal,
    coalesce(sum(outstanding_principal) filter (where kind = 'p' and days_in_arrears > 90), 0) as par90_principal,
    sum(disbursed_amount) filter (where kind = 'd')                                       as disbursed_amount,
    count(*) filter (where kind = 'd')                                                    as loans_disbursed,
    (select through from consumed)                                                        as _consumed_through
from rows_in_scope
group by {{ keys }}, period_month
{% endmacro %}
