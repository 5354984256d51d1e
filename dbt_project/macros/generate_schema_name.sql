{#- Custom schema names are used verbatim (staging, intermediate, reference,
    analytics_build) instead of dbt's default "<target>_<custom>" so that the
    warehouse layout is the same in every environment and publish can swap
    analytics_build into analytics. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
