{#-
  The run's logical date and what the warehouse may know at it.

  as_of_date is the Airflow logical date (see core_as_of_string). The knowledge
  cutoff is the end of that local day in the MIS's time zone (var mis_timezone,
  default UTC): a source row whose created_on_utc is at or after it was entered
  after the as-of date and is ignored, so a backfill does not see the future
  and a rerun for the same date sees the same rows.
-#}

{#-
  The as-of date as 'YYYY-MM-DD'. The runner passes it in the environment
  (SPM_AS_OF_DATE), read only while executing: a date in --vars would change
  dbt's vars hash every night and force a full re-parse of the project, and an
  env_var() read while parsing would be recorded for partial parsing. Run by
  hand, `--vars '{as_of_date: ...}'` works as before (the environment wins
  when both are set, which only the runner does).
-#}
{% macro core_as_of_string() -%}
    {%- if execute -%}
        {{ return(env_var('SPM_AS_OF_DATE', var('as_of_date') | string) | string) }}
    {%- endif -%}
    {{ return(var('as_of_date') | string) }}
{%- endmacro %}

{% macro core_as_of_date() -%}
    {%- set raw = core_as_of_string() -%}
    {%- if not modules.re.match('^\d{4}-\d{2}-\d{2}$', raw) -%}
        {{ exceptions.raise_compiler_error("var as_of_date must be YYYY-MM-DD, got '" ~ raw ~ "'") }}
    {%- endif -%}
    date '{{ raw }}'
{%- endmacro %}

{% macro core_as_of_month() -%}
    (date_trunc('month', {{ core_as_of_date() }})::date)
{%- endmacro %}

{% macro core_knowledge_cutoff() -%}
    ((({{ core_as_of_date() }} + 1)::timestamp) at time zone '{{ var("mis_timezone", "UTC") }}')
{%- endmacro %}

{#- True when a source row was created by the end of the as-of date (or the source does not say). -#}
{% macro core_known_at_cutoff(created_col) -%}
    ({{ created_col }} is null or {{ created_col }} < {{ core_knowledge_cutoff() }})
{%- endmacro %}

{#- The period a date falls in: its calendar month (dates after as_of belong to no period). -#}
{% macro core_period_month(date_col) -%}
    (date_trunc('month', {{ date_col }})::date)
{%- endmacro %}

{#- Last day of a period: month end, or as_of_date for the month of as_of_date. -#}
{% macro core_period_end(month_col) -%}
    least(({{ month_col }} + interval '1 month' - interval '1 day')::date, {{ core_as_of_date() }})
{%- endmacro %}

{#- yyyymmdd integer key of a date for dim_date; -1 (the unknown member) when null. -#}
{% macro core_date_key(date_col) -%}
    coalesce(to_char({{ date_col }}, 'YYYYMMDD')::int, -1)
{%- endmacro %}
