{#-
  The column is unique and not null because the raw table it renames carries a
  primary key on `key` (load.py merges by it). The raw tables that grow with
  history (transactions, schedule) are too big to GROUP BY every night for a
  property PostgreSQL already enforces on every write; this test checks the
  catalog instead, so it fails (naming the table) if the key is ever missing,
  e.g. after an initial load that could not rebuild it.
  The staging model must be a rename of that one table (no join that repeats rows).

  The one place outside models/staging that reads source(): it inspects the
  raw table's catalog entry (pg_constraint), not its rows, so there is no
  staging model to ref() instead.
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
