{#-
  State of an incremental model that records, on every row it writes, the
  as-of date, knowledge cutoff and source watermark of the run that wrote it.
  Returns a dict {as_of, cutoff, watermark} (strings, none when the table is
  empty) or none outside execution / when the relation does not exist yet.

  The maxima are those of the latest run that wrote rows; a run that wrote
  nothing leaves an older state, which only makes the next run look at more
  changes than needed (never fewer).
-#}
{#- The relation as it exists in the database, or none (also outside execution, when nothing may be queried). -#}
{% macro core_existing_relation(relation) %}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(adapter.get_relation(database=relation.database, schema=relation.schema, identifier=relation.identifier)) }}
{% endmacro %}


{% macro core_incremental_state(relation) %}
    {%- set existing = core_existing_relation(relation) -%}
    {%- if existing is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set result = run_query(
        "select max(_as_of_date)::text, max(_cutoff_ts)::text, max(_watermark)::text from " ~ existing
    ) -%}
    {%- set row = result.rows[0] -%}
    {{ return({'as_of': row[0], 'cutoff': row[1], 'watermark': row[2]}) }}
{% endmacro %}


{#- True when this run's as_of_date is before the state's: a backfill, which must not rewrite the state. -#}
{% macro core_is_backfill(state) %}
    {%- if state is none or state['as_of'] is none -%}
        {{ return(false) }}
    {%- endif -%}
    {{ return(core_as_of_string() < state['as_of']) }}
{% endmacro %}


{#-
  Latest _extracted_at over the raw tables a model reads (deleted rows included),
  through their staging change feeds: `tables` are raw_mis table names, each read
  as ref('stg_fineract__<table>_with_deleted'). A model calling this from a branch
  that parsing does not render must declare those refs (-- depends_on).
-#}
{% macro core_source_watermark(tables) -%}
    (select max(w) from (
        {%- for t in tables %}
        select max(extracted_at) as w from {{ ref('stg_fineract__' ~ t ~ '_with_deleted') }}{% if not loop.last %} union all{% endif %}
        {%- endfor %}
    ) wm)
{%- endmacro %}


{#-
  True when the incremental table exists but lacks `column` (built by an older version of the
  model). The model then rebuilds itself in full (its pre-hook empties the table and dbt appends
  the column, on_schema_change='append_new_columns'), instead of failing the night or rolling
  rows forward from a state that does not carry what the roll-forward needs.
-#}
{% macro core_relation_lacks_column(relation, column) %}
    {%- set existing = core_existing_relation(relation) -%}
    {%- if existing is none -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set names = adapter.get_columns_in_relation(existing) | map(attribute='name') | map('lower') | list -%}
    {{ return(column | lower not in names) }}
{% endmacro %}


{#-
  The start of a rewrite-by-key pre-hook (core_lifecycle_prepare, core_client_history_prepare):
  {'sql': statement, 'state': none} when the hook has nothing to delete by key - 'select 1' on a
  first or full-refresh build, 'truncate' when the table predates `marker_column` or its state
  asks for a full rebuild - else {'sql': none, 'state': the mart's state} for the keyed delete.
-#}
{% macro core_rewrite_by_key_start(marker_column) %}
    {%- if not is_incremental() -%}
        {{ return({'sql': 'select 1', 'state': none}) }}
    {%- endif -%}
    {%- if core_relation_lacks_column(this, marker_column) -%}
        {{ return({'sql': 'truncate table ' ~ this, 'state': none}) }}
    {%- endif -%}
    {%- set state = core_mart_state(this) -%}
    {%- if core_mart_mode(state) == 'full' -%}
        {{ return({'sql': 'truncate table ' ~ this, 'state': none}) }}
    {%- endif -%}
    {{ return({'sql': none, 'state': state}) }}
{% endmacro %}
