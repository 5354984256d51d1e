{#- dim_client's surrogate key of a version of int_client__history (alias): client_id * 1000 + version number. -#}
{% macro client_sk(alias) -%}
    ({{ alias }}.client_id * 1000 + {{ alias }}.version_number)::bigint
{%- endmacro %}
