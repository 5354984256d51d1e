{#-
  Incremental marts (fct_loan_transaction, fct_portfolio_month).

  Why: publish recycles the publication before last as the next build schema
  (plugins/spm_warehouse/publication/swap.py), so a mart table there is one or two
  nights old. Rewriting only what changed since the table's own state keeps
  the nightly time proportional to the day's changes instead of the size of
  the loan book.

  Every row carries the state of the run that wrote it: _as_of_date,
  _cutoff_ts (knowledge cutoff) and _watermark (newest _extracted_at of the
  raw tables the mart reads). The table's state is that of its newest row.

  Modes (core_mart_mode):
    full    - first build, --full-refresh, an empty table, a backfill (as_of_date
              before the table's), or a table written by a backfill: the
              pre-hook empties the table and every row is written again;
    nightly - the pre-hook deletes, and the model writes again, the rows of
              loans changed in raw since the state (core_mart_changed_loans)
              and, in fct_portfolio_month, the rows from the month of the
              state's as-of date on (their balances at period_end moved, or
              they are new). fct_loan_transaction has no such rows: its rows
              depend on their loan's inputs only.
  Each condition below goes through an index of the raw table (the delta indexes
  the build stage creates, plugins/spm_warehouse/delta_indexes.py), so finding the
  changed loans reads the day's raw rows, not the history.
  Changed loans: since the state's watermark a raw row of the loan, its
  transactions (and schedule, where asked), its client or its group was
  merged or marked deleted; or such a row was entered between the state's
  cutoff and this run's; or the loan's submission, write-off or a
  transaction is dated after the state's as-of date. These are exactly the
  inputs through which a loan's rows of these marts can change; the
  harness tests (test_kpi_incremental.py) compare a nightly table with
  a full rebuild after each kind of change.
-#}

{% macro core_mart_state(relation) %}
    {%- set existing = core_existing_relation(relation) -%}
    {%- if existing is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set result = run_query(
        "select t._as_of_date::text, t._cutoff_ts::text, t._watermark::text, t._backfill from " ~ existing
        ~ " t where t._watermark is not null" ~ history_open_filter(existing, 't') ~ " order by t._as_of_date desc, t._cutoff_ts desc, t._watermark desc limit 1"
    ) -%}
    {%- if result.rows | length == 0 -%}
        {{ return({'as_of': none, 'cutoff': none, 'watermark': none, 'backfill': false}) }}
    {%- endif -%}
    {%- set row = result.rows[0] -%}
    {{ return({'as_of': row[0], 'cutoff': row[1], 'watermark': row[2], 'backfill': row[3]}) }}
{% endmacro %}


{#- 'full' or 'nightly' (see above); `state` from core_mart_state(this). -#}
{% macro core_mart_mode(state) %}
    {#- flags.FULL_REFRESH: a versions table (full_refresh=false) is incremental even under --full-refresh -#}
    {%- if not is_incremental() or flags.FULL_REFRESH or state is none or state['as_of'] is none or state['backfill'] -%}
        {{ return('full') }}
    {%- endif -%}
    {%- if core_is_backfill(state) -%}
        {{ return('full') }}
    {%- endif -%}
    {{ return('nightly') }}
{% endmacro %}


{#- The state columns every row of an incremental mart carries. -#}
{% macro core_mart_state_columns(state, watermark_tables) -%}
    {{ core_as_of_date() }}                         as _as_of_date,
    {{ core_knowledge_cutoff() }}                   as _cutoff_ts,
    {{ core_source_watermark(watermark_tables) }}   as _watermark,
    {{ 'true' if core_is_backfill(state) else 'false' }} as _backfill  {#- the next night rebuilds -#}
{%- endmacro %}


{#- loan_id of every loan whose rows may have changed since `state` (see above). -#}
{% macro core_mart_changed_loans(state, with_schedule=false) -%}
    {%- set prev_as_of = "date '" ~ state['as_of'] ~ "'" -%}
    {%- set prev_cutoff = "'" ~ state['cutoff'] ~ "'::timestamptz" -%}
    {%- set prev_wm = "'" ~ (state['watermark'] or '-infinity') ~ "'::timestamptz" -%}
    {%- set cutoff = core_knowledge_cutoff() -%}
    {%- set as_of = core_as_of_date() -%}
    select l.loan_id
    from {{ ref('stg_fineract__m_loan_with_deleted') }} l
    where l.extracted_at > {{ prev_wm }}
       or (l.created_on_utc >= {{ prev_cutoff }} and l.created_on_utc < {{ cutoff }})
       or (l.submitted_on_date > {{ prev_as_of }} and l.submitted_on_date <= {{ as_of }})
       or (l.written_off_on_date > {{ prev_as_of }} and l.written_off_on_date <= {{ as_of }})
    union
    select t.loan_id
    from {{ ref('stg_fineract__m_loan_transaction_with_deleted') }} t
    where t.extracted_at > {{ prev_wm }}
       or (t.created_on_utc >= {{ prev_cutoff }} and t.created_on_utc < {{ cutoff }})
       or (t.transaction_date > {{ prev_as_of }} and t.transaction_date <= {{ as_of }})
    {%- if with_schedule %}
    union
    select s.loan_id
    from {{ ref('stg_fineract__m_loan_repayment_schedule_with_deleted') }} s
    where s.extracted_at > {{ prev_wm }}
       or (s.created_on_utc >= {{ prev_cutoff }} and s.created_on_utc < {{ cutoff }})
    {%- endif %}
    union
    select l.loan_id
    from {{ ref('stg_fineract__m_loan_with_deleted') }} l
    join {{ ref('stg_fineract__m_client_with_deleted') }} c on c.client_id = l.client_id
    where c.extracted_at > {{ prev_wm }}
       or (c.created_on_utc >= {{ prev_cutoff }} and c.created_on_utc < {{ cutoff }})
       or (c.submitted_on_date > {{ prev_as_of }} and c.submitted_on_date <= {{ as_of }})
    union
    select l.loan_id
    from {{ ref('stg_fineract__m_loan_with_deleted') }} l
    join {{ ref('stg_fineract__m_group_with_deleted') }} g on g.group_id = l.group_id
    where g.extracted_at > {{ prev_wm }}
{%- endmacro %}


{#- The first month whose rows a nightly run rewrites regardless of changes. -#}
{% macro core_mart_moving_month(state) -%}
    date_trunc('month', date '{{ state['as_of'] }}')::date
{%- endmacro %}


{#-
  Pre-hook of an incremental model whose table an older version built without the columns
  `added_columns` ([[name, type], ...]; the first one tells), with `dropped_columns` instead: the
  table takes the new columns and is emptied, and the model, which sees the same missing column
  (core_relation_lacks_column) and so builds in full, writes every row again. none when the table
  is current, so that the pre-hook goes on with its usual statement ("upgrade or prepare").
  A column list that differs only by order passes on_schema_change='fail' (dbt compares the sets).
-#}
{% macro core_mart_upgrade(added_columns, dropped_columns=[]) %}
    {%- if not is_incremental() or not core_relation_lacks_column(this, added_columns[0][0]) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set changes = [] -%}
    {%- for c in dropped_columns -%}
        {%- do changes.append('drop column if exists ' ~ c) -%}
    {%- endfor -%}
    {%- for name, type in added_columns -%}
        {%- do changes.append('add column if not exists ' ~ name ~ ' ' ~ type) -%}
    {%- endfor -%}
    {{ return('alter table ' ~ this ~ ' ' ~ changes | join(', ') ~ '; ' ~ history_close()) }}
{% endmacro %}


{#-
  Pre-hook of an incremental mart: empty it (mode full on an existing table)
  or delete the rows the model is about to write again (mode nightly).
  date_column: the column whose month decides the moving rows (rows whose
  values move with the as-of date, as the portfolio's balances at period_end
  do); none when no row moves unless its loan changed (fct_loan_transaction).
  keep: optional macro, called with the select of the changed loans; it returns the condition
  (on alias t) of the current rows of those loans to leave open because tonight's row is the same
  (core_loan_transaction_unchanged): the table then grows by the rows that changed, not by every
  row of each changed loan.
-#}
{% macro core_mart_prepare(date_column=none, with_schedule=false, keep=none) %}
    {%- if not is_incremental() -%}
        {{ return('select 1') }}
    {%- endif -%}
    {%- set state = core_mart_state(this) -%}
    {%- if core_mart_mode(state) == 'full' -%}
        {{ return(history_close()) }}
    {%- endif -%}
    {#- two deletes (or closes, macros/history.sql), each through an index (date column; loan_id),
        rather than one OR that reads the table -#}
    {%- set sql -%}
        {%- if date_column is not none %}
        {{ history_close('t.' ~ date_column ~ ' >= ' ~ core_mart_moving_month(state)) }};
        {%- endif %}
        -- = any(array(...)): the changed loans as one array, so the delete goes through the index on
        -- loan_id instead of a hash join over the whole table (17.6 s at 500k clients for 98k rows)
        {%- set loans = core_mart_changed_loans(state, with_schedule) %}
        {{ history_close('t.loan_id = any(array(' ~ loans ~ '))' ~ ('' if keep is none else ' and not ' ~ keep(loans))) }}
    {%- endset -%}
    {{ return(sql) }}
{% endmacro %}
