{#-
  Every value of the column lies between min_value and max_value (either may be
  left out; bounds included unless inclusive=false; nulls pass).
  Same name and arguments as dbt_utils.accepted_range.
-#}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}
select {{ column_name }}
from {{ model }}
where 1 = 2
{%- if min_value is not none %}
   or not ({{ column_name }} >{{ '=' if inclusive }} {{ min_value }})
{%- endif %}
{%- if max_value is not none %}
   or not ({{ column_name }} <{{ '=' if inclusive }} {{ max_value }})
{%- endif %}
{% endtest %}
