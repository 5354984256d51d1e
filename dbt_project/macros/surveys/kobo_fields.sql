{#-
    Reading Kobo answers out of a JSONB payload.

    Why macros: Kobo serves every answer as text ("5", "2024-03-01"), exports
    may carry "" for unanswered questions, and a hand-typed value can be
    anything. A cast that fails would stop the whole build for one bad
    answer, so these casts return null instead, and the raw text stays in
    raw_kobo.submissions for anyone who needs to look.
-#}

{% macro kobo_text(json_col, field) -%}
    nullif(btrim({{ json_col }} ->> '{{ field }}'), '')
{%- endmacro %}

{% macro kobo_int(json_col, field) -%}
    case when btrim({{ json_col }} ->> '{{ field }}') ~ '^[+-]?[0-9]{1,9}(\.0*)?$'
         then trunc(btrim({{ json_col }} ->> '{{ field }}')::numeric)::integer end
{%- endmacro %}

{% macro kobo_numeric(json_col, field) -%}
    case when btrim({{ json_col }} ->> '{{ field }}') ~ '^[+-]?([0-9]{1,15}(\.[0-9]*)?|\.[0-9]+)$'
         then btrim({{ json_col }} ->> '{{ field }}')::numeric end
{%- endmacro %}

{#- A calendar date from the first ten characters of a text (YYYY-MM-DD...);
    null when they are not a real date (e.g. 2024-02-30). Nested CASE so the
    cast only runs on text already checked. -#}
{% macro kobo_date_prefix(text_expr) -%}
    case when left({{ text_expr }}, 10) ~ '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$'
         then case when substr({{ text_expr }}, 9, 2)::integer
                        <= extract(day from (date_trunc('month', (left({{ text_expr }}, 8) || '01')::date)
                                             + interval '1 month - 1 day'))::integer
                   then left({{ text_expr }}, 10)::date end
    end
{%- endmacro %}
