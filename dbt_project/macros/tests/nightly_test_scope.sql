{#-
  The data tests of history-sized incremental models test, on a nightly run, only the rows that
  run wrote; a full run (or a backfill, which rebuilds the marts) writes, and so tests, every row.

  Why: fct_loan_transaction, fct_portfolio_month and int_loan__balance_month hold the whole loan
  history, and a night rewrites only the rows of the day's changed loans and moving months
  (macros/incremental/README.md); fct_client_indicator holds every survey's indicator values, and a
  night rewrites the clients whose inputs changed. A row not rewritten tonight is the row an earlier night wrote
  and tested, so testing it again every night makes the build grow with history, not with the day.

  How: a model opts in with `+meta: {nightly_test_scope: written_tonight}` (dbt_project.yml).
  dbt wraps the model of every generic test in get_where_subquery(); this project's version adds,
  for tests whose meaning is per row, the rows written by this run: the state columns
  `_as_of_date` and `_cutoff_ts` equal to this run's as-of date and knowledge cutoff (indexed,
  so an index scan of tonight's rows). Per-row tests: not_null, accepted_values, accepted_range,
  expression_is_true, and relationships (from the fact side: a row's key must exist in the
  dimension, which is rebuilt whole every night). Tests across rows (unique,
  unique_combination_of_columns, singular tests) keep reading every row; the unique indexes of
  the incremental marts (core_index(..., unique=true)) hold uniqueness as well.
  A `where` configured on the test itself still applies (and-ed).
-#}
{% macro nightly_per_row_tests() -%}
    {{ return(['not_null', 'accepted_values', 'accepted_range', 'expression_is_true', 'relationships']) }}
{%- endmacro %}


{#- The rows written by this run: the state every incremental row carries. -#}
{% macro rows_written_tonight() -%}
    (_as_of_date = {{ core_as_of_date() }} and _cutoff_ts = {{ core_knowledge_cutoff() }})
{%- endmacro %}


{#- The scope of this test node: 'written_tonight' or none (every row). -#}
{% macro nightly_test_scope() -%}
    {%- set kind = (model.test_metadata or {}).get('name') if model.test_metadata is defined else none -%}
    {%- set attached = model.attached_node if model.attached_node is defined else none -%}
    {%- if not execute or kind not in nightly_per_row_tests() or not attached or attached not in graph.nodes -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return((graph.nodes[attached].config.meta or {}).get('nightly_test_scope')) }}
{%- endmacro %}


{% macro get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- set where = config.get('where') -%}
    {%- if where -%}
        {%- do conditions.append('(' ~ where ~ ')') -%}
    {%- endif -%}
    {%- set scope = nightly_test_scope() -%}
    {%- if scope == 'written_tonight' -%}
        {%- do conditions.append(rows_written_tonight()) -%}
    {%- elif scope -%}
        {{ exceptions.raise_compiler_error("meta nightly_test_scope must be written_tonight, got '" ~ scope ~ "'") }}
    {%- endif -%}
    {%- if conditions -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ conditions | join(' and ') }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}
