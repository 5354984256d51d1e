{#-
  The SQL expression holds on every row (a row where it is false or null fails).
  With column_name (the test under a column), the expression is appended to the
  column: `expression: "> 0"`. Same name and arguments as dbt_utils.expression_is_true.
-#}
{% test expression_is_true(model, expression, column_name=none) %}
select *
from {{ model }}
where not ({{ column_name ~ ' ' if column_name is not none else '' }}{{ expression }})
{% endtest %}
