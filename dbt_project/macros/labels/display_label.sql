{#-
  The label managers read for a code: display_label('exit_reason', 'e.exit_reason')
  looks the code up in seeds/display_labels.csv (domain, code, label) and falls
  back to the code itself, so a code the seed does not know yet (a new form
  choice, a new poverty band) shows as its code and never as an empty cell.
  Labels are translated by editing the seed's label column; codes stay as they are.
-#}
{% macro display_label(domain, column) -%}
    coalesce(
        (select dl.label from {{ ref('display_labels') }} as dl
         where dl.domain = '{{ domain }}' and dl.code = ({{ column }})::text),
        ({{ column }})::text
    )
{%- endmacro %}
