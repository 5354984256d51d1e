{#- Generic test: no two rows share the same values of `columns` (dbt_utils is not a dependency). -#}
{% test surveys_unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as rows_with_these_values
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
