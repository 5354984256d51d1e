{#-
  Incremental fct_client_indicator.

  Why: the fact holds every indicator value of every accepted survey (about
  thirteen rows per client at 100k clients, 1.3M rows) and was written again in
  full every night, while a night brings a few new surveys and a few client
  changes.

  A client's survey rows of the fact are a function of its own inputs only:
  its accepted surveys interviewed by the as-of date (both channels; the
  survey sequence is numbered within them), its current branch and its current
  dim_client row. int_surveys__client_indicator_inputs keeps, per client, a
  hash of those inputs and stamps _changed_at whenever they differ from what it
  stored (a changed survey fingerprint, surveys_fingerprint(), restamps every
  client). The fact's rows carry the stamp of the inputs they were made from
  (_inputs_changed_at), and the fact's state is the newest stamp it holds: a
  night rewrites the clients stamped after it. Stamps only grow and every run
  that writes a client writes all clients stamped after the state, so every
  change the fact has not seen has a later stamp, however old the fact is (the
  recycled build schema holds the publication before last). A rerun finds no
  new stamp and writes the same rows with the same stamps.
  The rows of mapped MIS datatables are dated at the as-of date, so a run
  rewrites all of them (no stamp); there are few (one per client and mapped
  column). A backfill needs no mode of its own: its stamps say which clients
  differ on its date.
  Compared with a build of everything at once in test_surveys_dbt.py, and with
  --full-refresh over nights with a late survey, a branch transfer and new
  client versions in test_kpi_incremental.py.
-#}

{#- {'stamp': text} of the fact in `relation`, or none when it must be built in full. -#}
{% macro surveys_indicator_state(relation) %}
    {%- set existing = core_existing_relation(relation) -%}
    {%- if existing is none or flags.FULL_REFRESH or core_relation_lacks_column(existing, '_inputs_changed_at') -%}
        {{ return(none) }}
    {%- endif -%}
    {#- through the index on the state columns: the rows of the latest run hold the newest stamps
        (a run writes the clients stamped after every stamp already here); after a backfill (an older
        _as_of_date written later) this is an older stamp, which rewrites more clients, not fewer -#}
    {%- set result = run_query("select _inputs_changed_at::text from " ~ existing
                               ~ " where _inputs_changed_at is not null" ~ history_open_filter(existing)
                               ~ " order by _as_of_date desc, _cutoff_ts desc, _inputs_changed_at desc limit 1") -%}
    {%- if result.rows | length == 0 -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return({'stamp': result.rows[0][0]}) }}
{% endmacro %}


{#- client_id of the clients whose survey rows the fact rewrites, given its state. -#}
{% macro surveys_indicator_changed_clients(state) -%}
    select i.client_id
    from {{ ref('int_surveys__client_indicator_inputs') }} as i
    where i._changed_at > '{{ state['stamp'] }}'::timestamptz
{%- endmacro %}


{#- Pre-hook of fct_client_indicator: empty the table (full) or delete what the model writes again. -#}
{% macro surveys_indicator_prepare() %}
    {%- set upgrade = core_mart_upgrade([['_as_of_date', 'date'], ['_cutoff_ts', 'timestamptz'],
                                         ['_inputs_changed_at', 'timestamptz']]) -%}
    {%- if upgrade -%}
        {{ return(upgrade) }}
    {%- endif -%}
    {%- if not is_incremental() -%}
        {{ return('select 1') }}
    {%- endif -%}
    {%- set state = surveys_indicator_state(this) -%}
    {%- if state is none -%}
        {{ return(history_close()) }}
    {%- endif -%}
    {#- two deletes (or closes, macros/history.sql), each through an index: the changed clients' rows,
        and every datatable row -#}
    {%- set sql -%}
        {{ history_close('t.client_id = any(array(' ~ surveys_indicator_changed_clients(state) ~ '))') }};
        {{ history_close('t.survey_sequence = 0') }}
    {%- endset -%}
    {{ return(sql) }}
{% endmacro %}


{#- Pre-hook of int_surveys__client_indicator_inputs: another survey fingerprint empties it, so every client is restamped. -#}
{% macro surveys_indicator_inputs_prepare() %}
    {%- if not is_incremental() -%}
        {{ return('select 1') }}
    {%- endif -%}
    {%- set stored = run_query("select _inputs_fingerprint from " ~ this ~ " order by _changed_at desc limit 1") -%}
    {%- if stored.rows | length > 0 and stored.rows[0][0] != surveys_fingerprint() -%}
        {{ return('truncate table ' ~ this) }}
    {%- endif -%}
    {{ return('select 1') }}
{% endmacro %}
