{#-
  Full builds of int_loan__balance_month in chunks of loans.

  Why: a full build (the first night, --full-refresh, the upgrade of an older table) computes every
  loan's months at once, and its sorts over every loan-month and every installment spill to
  temporary files: 2.5 GB at 100,000 clients, the largest disk use of the whole first night, and
  it grows with the loan book (about 25 GB at 1M clients). Balances are computed loan by loan
  (every window of core_loan_balance_rows is partitioned by loan_id, every join is on loan_id), so
  the same rows come out of several statements over consecutive ranges of loan_id, and each
  statement's temporary files are freed when it ends.

  How, in the order dbt runs them:
  1. the model computes the ranges (core_loan_chunk_bounds) and its own statement builds the
     first one;
  2. its first pre-hook (core_chunked_full_build_begin), run just before that statement, works out
     again whether this is a full build and records the other ranges in a transaction-local
     setting: dbt runs the pre-hooks, the model's statement and the post-hooks in one transaction
     on one connection, and a post-hook cannot tell a first build from a nightly one by itself
     (the table exists by then, so is_incremental() is true);
  3. its first post-hook (core_chunked_full_build_insert) inserts the other ranges.
  A nightly run records no ranges: its post-hook inserts nothing.

  var core_full_build_chunk_loans: loans per statement (default 50000; 0 = one statement).
-#}

{#- The first loan_id of every chunk after the first, in order ([] = one statement). -#}
{% macro core_loan_chunk_bounds() %}
    {%- set size = var('core_full_build_chunk_loans', 50000) | int -%}
    {%- if not execute or size <= 0 -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set result = run_query(
        "select loan_id from (select loan_id, row_number() over (order by loan_id) as rn from "
        ~ ref('int_loan__known_loans') ~ " where loan_id is not null) k "
        ~ "where rn > 1 and (rn - 1) % " ~ size ~ " = 0 order by loan_id"
    ) -%}
    {{ return(result.columns[0].values() | map('int') | list) }}
{% endmacro %}


{#- The known loans with lo <= loan_id < hi (none = unbounded), from their first month on. -#}
{% macro core_loan_chunk_scope(lo=none, hi=none) -%}
    select loan_id, date '1900-01-01' as from_month
    from {{ ref('int_loan__known_loans') }}
    where true
    {%- if lo is not none %} and loan_id >= {{ lo }}{% endif %}
    {%- if hi is not none %} and loan_id < {{ hi }}{% endif %}
{%- endmacro %}


{#- True when int_loan__balance_month builds every loan: first build, --full-refresh, an older
    table (without next_due_date), or a table without state. The model and its pre-hook both ask. -#}
{% macro core_balance_month_full_build(relation) %}
    {%- if not is_incremental() or core_relation_lacks_column(relation, 'next_due_date') -%}
        {{ return(true) }}
    {%- endif -%}
    {#- the state's as-of date is none (core_incremental_state) when no row has one; asked row by
        row, not as max(), so that a nightly run does not read the whole table once more -#}
    {%- set result = run_query("select not exists (select 1 from " ~ relation ~ " where _as_of_date is not null)") -%}
    {{ return(result.columns[0].values()[0]) }}
{% endmacro %}


{#- Pre-hook: record the chunks after the first for this transaction ('' = none). -#}
{% macro core_chunked_full_build_begin(relation) -%}
    {%- set bounds = core_loan_chunk_bounds() if execute and core_balance_month_full_build(relation) else [] -%}
    select set_config('spm.full_build_chunks', '{{ bounds | join(",") }}', true)
{%- endmacro %}


{#- Post-hook: insert the chunks the pre-hook recorded, one statement each. -#}
{% macro core_chunked_full_build_insert(relation) -%}
    {%- set recorded = run_query("select current_setting('spm.full_build_chunks', true)").columns[0].values()[0]
        if execute else none -%}
    {%- set bounds = recorded.split(',') | map('int') | list if recorded else [] -%}
    {%- if not bounds -%}
        select 1
    {%- else -%}
        {%- set columns = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
        {%- set column_list = '"' ~ columns | join('", "') ~ '"' -%}
        {%- for lo in bounds %}
insert into {{ relation }} ({{ column_list }}) /* chunk {{ loop.index + 1 }} of {{ bounds | length + 1 }} */
select {{ column_list }} from (
    {{ core_loan_balance_select(core_loan_balance_rows(core_loan_chunk_scope(lo, none if loop.last else bounds[loop.index]))) }}
) chunk;
        {%- endfor %}
select set_config('spm.full_build_chunks', '', true)
    {%- endif -%}
{%- endmacro %}


{#- The model's rows: balance rows (balances_sql) with the run's bookkeeping columns. The model and the
    chunks of a full build both write them through this. -#}
{% macro core_loan_balance_select(balances_sql) -%}
select
    balances.*,
    {{ core_as_of_date() }}                                                      as _as_of_date,
    {{ core_knowledge_cutoff() }}                                                as _cutoff_ts,
    {{ core_source_watermark(['m_loan', 'm_loan_transaction', 'm_loan_repayment_schedule']) }} as _watermark
from (
    {{ balances_sql }}
) balances
{%- endmacro %}
