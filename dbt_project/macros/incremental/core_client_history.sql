{#-
  Incremental int_client__history (type 2 rows per client).

  Why: the model re-derived the history of every client each night. A
  client's rows change only through its own observed versions (its raw row),
  its PPI assessments, the passing of one of its own event dates, or the
  poverty band seed. So a night rewrites the clients:
    * whose raw row was merged, marked deleted, entered or dated inside the
      window since the state (as core_mart_changed_loans does for loans);
    * whose logged version became visible since the state's cutoff (a row
      modified after that cutoff but extracted before it);
    * whose assessments' fingerprint (ppi_basis_hash: a sum of the hashes of
      the rows of int_client__ppi_assessments known at the cutoff) differs from
      the stored one: this reads the assessments, which is survey-sized;
    * whose stored next_event_on has come.
  delete+insert on client_id; the pre-hook deletes the rows of clients no
  longer known. Mode full (first build, --full-refresh, backfill, or a table of
  the version before this one) as for the marts. A change of the poverty band
  seed needs `--full-refresh` (or a full build) to restate older rows.
  Compared with --full-refresh in test_kpi_incremental.py.
-#}

{% macro core_ppi_basis_hash(alias) -%}
    sum(hashtextextended({{ alias }}::text, 0)::numeric)
{%- endmacro %}


{% macro core_client_history_scope(state) -%}
    {%- set prev_as_of = "date '" ~ state['as_of'] ~ "'" -%}
    {%- set prev_cutoff = "'" ~ state['cutoff'] ~ "'::timestamptz" -%}
    {%- set prev_wm = "'" ~ (state['watermark'] or '-infinity') ~ "'::timestamptz" -%}
    select c.client_id
    from {{ ref('stg_fineract__m_client_with_deleted') }} c
    where c.extracted_at > {{ prev_wm }}
       or (c.created_on_utc >= {{ prev_cutoff }} and c.created_on_utc < {{ core_knowledge_cutoff() }})
       or (c.submitted_on_date > {{ prev_as_of }} and c.submitted_on_date <= {{ core_as_of_date() }})
    union
    select v.client_id
    from {{ ref('int_client__observed_versions') }} v
    where v.observed_at >= {{ prev_cutoff }} and v.observed_at < {{ core_knowledge_cutoff() }}
    union
    select h.client_id
    from {{ this }} h
    where h.next_event_on <= {{ core_as_of_date() }}
    union
    select coalesce(a.client_id, h.client_id)
    from (
        select x.client_id, {{ core_ppi_basis_hash('x') }} as ppi_basis_hash
        from {{ ref('int_client__ppi_assessments') }} x
        group by x.client_id
    ) a
    full join (
        select client_id, ppi_basis_hash from {{ this }} where is_current
    ) h on h.client_id = a.client_id
    where coalesce(a.ppi_basis_hash, 0) is distinct from coalesce(h.ppi_basis_hash, 0)
{%- endmacro %}


{% macro core_client_history_prepare() %}
    {%- set start = core_rewrite_by_key_start('next_event_on') -%}
    {%- if start['sql'] is not none -%}
        {{ return(start['sql']) }}
    {%- endif -%}
    {%- set state = start['state'] -%}
    {%- set sql -%}
        delete from {{ this }} t
        where not exists (select 1 from {{ ref('int_client__current') }} k where k.client_id = t.client_id)
          and t.client_id in (
              select c.client_id from {{ ref('stg_fineract__m_client_with_deleted') }} c
              where c.extracted_at > '{{ state['watermark'] or '-infinity' }}'::timestamptz
          )
    {%- endset -%}
    {{ return(sql) }}
{% endmacro %}
