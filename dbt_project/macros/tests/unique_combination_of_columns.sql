{#-
  No two rows share the values of `combination_of_columns` (nulls compare equal,
  as in GROUP BY). One failing row per repeated combination.
  Same name and arguments as dbt_utils.unique_combination_of_columns, so that a
  project that installs dbt_utils can switch by prefixing the test name.
-#}
{% test unique_combination_of_columns(model, combination_of_columns, quote_columns=false) %}
{%- if quote_columns -%}
    {%- set columns = [] -%}
    {%- for c in combination_of_columns -%}
        {%- do columns.append(adapter.quote(c)) -%}
    {%- endfor -%}
{%- else -%}
    {%- set columns = combination_of_columns -%}
{%- endif %}
select {{ columns | join(', ') }}, count(*) as rows_with_these_values
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
