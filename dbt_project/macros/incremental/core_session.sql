{#-
  Per-statement settings for the heavy core models, as pre-hooks (they run inside
  the model's transaction, so SET LOCAL ends with it).
  jit off: these queries carry large row estimates (generate_series over dates,
  CTEs) that make PostgreSQL JIT-compile them, which costs seconds and saves
  nothing on set-based SQL of this size. work_mem: the window passes sort
  loan-months; 64MB keeps them in memory at 100k clients.
-#}
{#- nested_loops=false, merge_joins=false: for models whose joins the planner misestimates on freshly
    built inputs. The kpi_*_period marts: at 100k clients their span joins ran as nested loops for over
    ten minutes where hash joins take 5 s; without nested loops it chose merge joins on (slice) alone,
    with the month as a join filter over 9.2M pairs (kpi_segment_period 5.5 s; with hash joins 1.9 s). -#}
{% macro core_session_settings(nested_loops=true, merge_joins=true) -%}
    {%- set settings = ["set local jit = off", "set local work_mem = '" ~ var('core_work_mem', '64MB') ~ "'"] -%}
    {%- if not nested_loops -%}
        {%- do settings.append("set local enable_nestloop = off") -%}
    {%- endif -%}
    {%- if not merge_joins -%}
        {%- do settings.append("set local enable_mergejoin = off") -%}
    {%- endif -%}
    {{ return(settings) }}
{%- endmacro %}

{#-
  ANALYZE the tables of `schema_name` whose statistics are missing or stale
  (more than 10% of rows changed since). The extraction bulk-loads raw_mis with
  COPY and merges; until autovacuum gets to them the planner sees "12 rows" and
  picks nested loops over 100k-row tables. Cheap: ANALYZE samples.
-#}
{% macro core_analyze_stale(schema_name) -%}
do $core_analyze$
declare r record;
begin
    for r in
        select schemaname, relname
        from pg_stat_user_tables
        where schemaname = '{{ schema_name }}'
          and ((last_analyze is null and last_autoanalyze is null)
               or n_mod_since_analyze > 0.1 * greatest(n_live_tup, 1000))
    loop
        execute format('analyze %I.%I', r.schemaname, r.relname);
    end loop;
end
$core_analyze$
{%- endmacro %}

{#-
  Post-hook: an index on `columns` of this model unless it already has one.
  Checked by table and definition, not by name: when dbt rebuilds a table it
  renames the old one to a backup that keeps its index names until the end of
  the transaction, so "create index if not exists <name>" would silently skip
  the new table. The index gets PostgreSQL's generated name.
  where / where_def: a partial index, its predicate as written and as
  PostgreSQL prints it in pg_indexes (e.g. 'not in_life' / '(NOT in_life)').
-#}
{% macro core_index(columns, unique=false, where=none, where_def=none) -%}
do $core_index$
begin
    if not exists (
        select 1 from pg_indexes
        where schemaname = '{{ this.schema }}' and tablename = '{{ this.identifier }}'
          and indexdef like '%({{ columns }}){{ " WHERE " ~ where_def if where else "" }}'
    ) then
        create {{ 'unique ' if unique else '' }}index on {{ this }} ({{ columns }}){{ ' where ' ~ where if where else '' }};
    end if;
end
$core_index$
{%- endmacro %}
