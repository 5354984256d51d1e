{#-
  History-sized facts kept once, in versions.

  Why: publication keeps three copies of the marts (analytics, analytics_prev for
  rollback, and tomorrow's build, recycled from the publication before last). For
  the facts that hold the whole loan book and survey history (fct_loan_transaction,
  fct_portfolio_month, fct_client_indicator) three full copies were most of the
  warehouse's disk, and the recycled copy had to catch up two nights of changes.

  How: the incremental model `<fact>__versions` (models/marts/history, schema
  history, which publication never renames) holds every row once, with the range of
  versions in which it is current: `_valid_from` (the version that wrote it) and
  `_valid_to` (the version that replaced or removed it; history_open_version() while
  it is current). A night never deletes or truncates such a table: it closes the rows
  it replaces (history_close) and appends their new values. Versions come from one
  sequence, history.versions, so they order every write of the warehouse.

  A model's rows take their version when its SQL is compiled, and its pre-hook closes
  the replaced rows with a later one: a view pinned between the two would show both.
  None is: pins are taken by publish only, when no build is writing (the night lease).

  The fact itself is a view in the build schema (history_current_view): the current
  rows, i.e. exactly what tonight's build wrote (the build's models read them through
  the partial indexes on the current rows). Publish pins the view to a version taken
  in the swap transaction, so the published fact and the previous one (rollback) keep
  showing their own night while later nights write new versions. The build stage deletes the rows that no published or previous view
  can show any more (plugins/spm_warehouse/fact_versions.py), so the table
  holds one copy plus about two nights of replaced rows.
-#}

{#- The _valid_to of a row that is current. -#}
{% macro history_open_version() -%}
    9223372036854775807
{%- endmacro %}


{#- The schema of the versioned facts (and of the versions sequence). -#}
{% macro history_schema() -%}
    history
{%- endmacro %}


{#- Run start (on-run-start): the schema and the versions sequence (created once, before any thread runs). -#}
{% macro history_setup() -%}
    create schema if not exists {{ history_schema() }};
    create sequence if not exists {{ history_schema() }}.versions
{%- endmacro %}


{#- A new version number (0 outside execution or before the sequence exists, e.g. `dbt compile` on an empty warehouse). -#}
{% macro history_next_version() %}
    {%- if not execute -%}
        {{ return(0) }}
    {%- endif -%}
    {%- set seq = history_schema() ~ '.versions' -%}
    {%- set result = run_query("select case when to_regclass('" ~ seq ~ "') is null then 0 else nextval('"
                               ~ seq ~ "') end") -%}
    {{ return(result.rows[0][0]) }}
{% endmacro %}


{#- True when `relation` is a versions table (it lives in the history schema). -#}
{% macro history_is_versioned(relation) %}
    {{ return(relation is not none and relation.schema == history_schema()) }}
{% endmacro %}


{#- The rows of a versions table that are current (the ones the build reads and replaces). -#}
{% macro history_is_open(alias=none) -%}
    {{ alias ~ '.' if alias else '' }}_valid_to = {{ history_open_version() }}
{%- endmacro %}


{#- `and <current rows only>` for a state query on `relation`, empty for an ordinary table. -#}
{% macro history_open_filter(relation, alias=none) -%}
    {%- if history_is_versioned(relation) %} and {{ history_is_open(alias) }}{% endif -%}
{%- endmacro %}


{#- The version columns of the rows a run writes: current from `version` on. -#}
{% macro history_version_columns(version) -%}
    {{ version }}::bigint                                as _valid_from,
    {{ history_open_version() }}::bigint       as _valid_to
{%- endmacro %}


{#-
  Remove rows of this model's table: delete them from an ordinary table, close them (the
  version they stop at) in a versions table. `where` is a condition on alias t; none for all rows.
-#}
{% macro history_close(where=none) -%}
    {%- if history_is_versioned(this) -%}
        update {{ this }} t set _valid_to = {{ history_next_version() }}
        where {{ history_is_open('t') }}{% if where %} and ({{ where }}){% endif %}
    {%- elif where -%}
        delete from {{ this }} t where {{ where }}
    {%- else -%}
        truncate table {{ this }}
    {%- endif -%}
{%- endmacro %}


{#- Post-hook: an index on `columns` of the current rows of a versions table (unique: the current rows' key).
    where_def is quoted for the SQL string core_index matches it in (quotes doubled). -#}
{% macro history_index(columns, unique=false) -%}
    {{ core_index(columns, unique=unique, where=history_is_open(),
                  where_def="(_valid_to = ''" ~ history_open_version() ~ "''::bigint)") }}
{%- endmacro %}


{#- Post-hook: the index on the closed rows, which the garbage collection deletes through. -#}
{% macro history_closed_index() -%}
    {{ core_index('_valid_to', where='_valid_to < ' ~ history_open_version(),
                  where_def="(_valid_to < ''" ~ history_open_version() ~ "''::bigint)") }}
{%- endmacro %}


{#- The columns of a versions table that its view shows (all but the version range). -#}
{% macro history_view_columns(relation) -%}
    {%- if not execute -%}
        *
    {%- else -%}
        {%- set names = [] -%}
        {%- for column in adapter.get_columns_in_relation(relation) -%}
            {%- if column.name not in ('_valid_from', '_valid_to') -%}
                {%- do names.append(adapter.quote(column.name)) -%}
            {%- endif -%}
        {%- endfor -%}
        {{ names | join(',\n    ') }}
    {%- endif -%}
{%- endmacro %}


{#-
  The body of a fact's view in the build schema: the current rows of `versions`, i.e. what
  tonight's build wrote. Publish pins the view to a version (plugins/spm_warehouse/fact_versions.py), so that the
  published and the previous fact keep their night while later builds write new versions.
-#}
{% macro history_current_view(versions) -%}
select
    {{ history_view_columns(versions) }}
from {{ versions }}
where {{ history_is_open() }}
{%- endmacro %}
