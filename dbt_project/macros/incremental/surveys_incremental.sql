{#-
  Incremental int_surveys__submissions.

  Why: the survey history only grows (every wave of every client), while a
  night brings a few new submissions. Reading and ranking every submission
  each night would make the nightly time grow with history.

  Every row records the state of the build that wrote it: _loaded_until (the
  newest raw_kobo.submissions.loaded_at then) and _inputs_fingerprint (what
  else decides the rows: the field map and PPI scorecard seeds, the default
  scorecard and poverty line vars and the project's code, var
  code_fingerprint, passed by the pipeline).
  A night is incremental when the table exists and its fingerprint is
  today's; it then recomputes the submission keys of raw rows loaded since
  _loaded_until, plus the keys those rows replace (meta/deprecatedID).
  Anything else (first build, --full-refresh, another fingerprint) rebuilds.
-#}

{% macro surveys_fingerprint() %}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set parts = [] -%}
    {%- for seed in ['survey_field_map', 'ppi_scorecard_points', 'ppi_scorecard_likelihoods'] -%}
        {%- set digest = run_query("select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from "
                                   ~ ref(seed) ~ " t") -%}
        {%- do parts.append(digest.rows[0][0]) -%}
    {%- endfor -%}
    {%- do parts.extend([var('ppi_default_scorecard') | string, var('ppi_poverty_line') | string,
                         var('code_fingerprint', '') | string]) -%}
    {{ return(local_md5(parts | join('|'))) }}
{% endmacro %}


{% macro surveys_state(relation) %}
    {%- set existing = core_existing_relation(relation) -%}
    {%- if existing is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set result = run_query("select t._loaded_until::text, t._inputs_fingerprint from " ~ existing
                               ~ " t where t._loaded_until is not null order by t._loaded_until desc limit 1") -%}
    {%- if result.rows | length == 0 -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return({'loaded_until': result.rows[0][0], 'fingerprint': result.rows[0][1]}) }}
{% endmacro %}


{% macro surveys_mode(state) %}
    {%- if not is_incremental() or state is none or state['loaded_until'] is none -%}
        {{ return('full') }}
    {%- endif -%}
    {%- if state['fingerprint'] != surveys_fingerprint() -%}
        {{ return('full') }}
    {%- endif -%}
    {{ return('nightly') }}
{% endmacro %}


{#- Submission keys a night recomputes: those of rows loaded since the state, and the keys they replace. -#}
{% macro surveys_affected_keys(state) -%}
    select coalesce(n.instance_id, 'content:' || n.content_hash) as submission_key
    from {{ ref('stg_kobo__spm_client_monitoring') }} n
    where n.loaded_at > '{{ state['loaded_until'] }}'::timestamptz
    union
    select n.deprecated_id
    from {{ ref('stg_kobo__spm_client_monitoring') }} n
    where n.loaded_at > '{{ state['loaded_until'] }}'::timestamptz
      and n.deprecated_id is not null
{%- endmacro %}


{% macro surveys_state_columns() -%}
    (select max(loaded_at) from {{ ref('stg_kobo__submissions') }})      as _loaded_until,
    '{{ surveys_fingerprint() }}'::text                                 as _inputs_fingerprint
{%- endmacro %}


{#- Pre-hook: empty the table (full) or delete the keys the night recomputes (nightly); int_surveys__submissions
    and int_surveys__ppi_scored, one row per submission key each. -#}
{% macro surveys_submissions_prepare() %}
    {%- if not is_incremental() -%}
        {{ return('select 1') }}
    {%- endif -%}
    {%- set state = surveys_state(this) -%}
    {%- if surveys_mode(state) == 'full' -%}
        {{ return('truncate table ' ~ this) }}
    {%- endif -%}
    {{ return('delete from ' ~ this ~ ' where submission_key in (' ~ surveys_affected_keys(state) ~ ')') }}
{% endmacro %}


{#- Pre-hook of int_surveys__unknown_field_counts (append-only): empty it when it must count every raw row again. -#}
{% macro surveys_unknown_fields_prepare() %}
    {%- if is_incremental() and surveys_mode(surveys_state(this)) == 'full' -%}
        {{ return('truncate table ' ~ this) }}
    {%- endif -%}
    {{ return('select 1') }}
{% endmacro %}
