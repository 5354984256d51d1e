{#- Generic tests of the core/KPI models (no dbt packages are installed). -#}

{#- No two rows share the values of `columns`. -#}
{% test core_unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

{#- Every value of the column lies in [min_value, max_value] (nulls allowed). -#}
{% test core_between(model, column_name, min_value, max_value) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} < {{ min_value }} or {{ column_name }} > {{ max_value }}
{% endtest %}

{#- The SQL expression holds on every row. -#}
{% test core_expression_is_true(model, expression, column_name=none) %}
select *
from {{ model }}
where not ({{ expression }})
{% endtest %}
