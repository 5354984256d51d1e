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

{#-
  The column is unique and not null because the raw table it renames carries a
  primary key on `key` (load.py merges by it). The raw tables that grow with
  history (transactions, schedule) are too big to GROUP BY every night for a
  property PostgreSQL already enforces on every write; this test checks the
  catalog instead, so it fails (naming the table) if the key is ever missing,
  e.g. after an initial load that could not rebuild it.
  The staging model must be a rename of that one table (no join that repeats rows).
-#}
{% test core_primary_key_in_source(model, column_name, source_name, table_name, key='id') %}
{%- set rel = source(source_name, table_name) -%}
select '{{ rel }}' as raw_table, '{{ key }}' as expected_primary_key
where not exists (
    select 1
    from pg_constraint c
    where c.conrelid = to_regclass('{{ rel }}')
      and c.contype = 'p'
      and (select array_agg(a.attname::text order by a.attname)
           from pg_attribute a
           where a.attrelid = c.conrelid and a.attnum = any (c.conkey)) = array['{{ key }}']
)
{% endtest %}
