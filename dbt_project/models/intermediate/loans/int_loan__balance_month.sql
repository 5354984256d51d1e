{{
  config(
    materialized='incremental',
    unique_key=['loan_id', 'period_month'],
    incremental_strategy='delete+insert',
    on_schema_change='append_new_columns',
    pre_hook=["{{ core_chunked_full_build_begin(this) }}"] + core_session_settings() + [
      "{% if is_incremental() and core_relation_lacks_column(this, 'next_due_date') %}truncate table {{ this }}{% else %}select 1{% endif %}"
    ],
    post_hook=[
      "{{ core_chunked_full_build_insert(this) }}",
      "delete from {{ this }} where not in_life",
      "{{ core_index('loan_id', where='not in_life', where_def='(NOT in_life)') }}",
      "{{ core_index('loan_id, period_month', unique=true) }}",
      "{{ core_index('period_month') }}",
      "analyze {{ this }}"
    ]
  )
}}
-- The change feeds that the incremental scope reads (macros/incremental/):
-- depends_on: {{ ref('stg_fineract__m_loan_with_deleted') }}
-- depends_on: {{ ref('stg_fineract__m_loan_transaction_with_deleted') }}
-- depends_on: {{ ref('stg_fineract__m_loan_repayment_schedule_with_deleted') }}
{#-
  Persistent per-loan per-month balance snapshots (the state behind
  fct_portfolio_month). Lives in `intermediate`, which survives the nightly
  publish swap of the marts schema.

  First build / --full-refresh: every known loan, whole life, in statements of
  var core_full_build_chunk_loans loans each (macros/incremental/core_chunked_full_build.sql).
  Nightly (as_of_date >= state as-of): only
    * the months from the previous run's as-of month on, for loans outstanding
      then (their last period_end moved and their days in arrears grow daily)
      or whose row of that month ended on a mid-month as-of date: rolled
      forward from the stored row when none of the loan's inputs changed
      (core_loan_balance_rollforward: no transaction is read, and the schedule
      only of loans with an installment falling due since), else recomputed;
    * affected loans, recomputed from the month of their earliest affected date:
      - transactions merged since the last run (_extracted_at > watermark,
        reversals and deletions included), entered since the last cutoff
        (created_on_utc), or dated after the last as-of date: their transaction_date;
      - loans merged/entered since (m_loan): the month where the write-off date
        changed, or the whole loan when it appeared or disappeared;
      - schedule rows merged/entered since: the first month whose schedule
        fingerprint (installments due before period_end) differs.
  Backfill (as_of_date before the state's): writes nothing, so the state stays
  that of the latest night; int_loan__balances_as_of computes the backfill
  date from scratch instead.
-#}
{#- a table of an older version (without next_due_date) is rebuilt in full, see core_relation_lacks_column -#}
{%- set upgrade = is_incremental() and core_relation_lacks_column(this, 'next_due_date') -%}
{%- set state = core_incremental_state(this) if is_incremental() and not upgrade else none -%}
{%- set backfill = is_incremental() and core_is_backfill(state) -%}
{%- set nightly = is_incremental() and state is not none and state['as_of'] is not none and not backfill -%}

{%- if core_balance_month_full_build(this) -%}
    {#- the first chunk of loans; the post-hook inserts the others (macros/incremental/core_chunked_full_build.sql) -#}
    {%- set bounds = core_loan_chunk_bounds() -%}
    {%- set scope_sql = core_loan_chunk_scope(none, bounds[0] if bounds else none) -%}
{%- elif backfill -%}
    {%- set scope_sql -%}
        select null::bigint as loan_id, null::date as from_month where false
    {%- endset -%}
{%- else -%}
    {%- set prev_as_of = "date '" ~ state['as_of'] ~ "'" -%}
    {%- set prev_cutoff = "'" ~ state['cutoff'] ~ "'::timestamptz" -%}
    {%- set prev_wm = "'" ~ (state['watermark'] or '-infinity') ~ "'::timestamptz" -%}
    {%- set cutoff = core_knowledge_cutoff() -%}
    {%- set changed_sql -%}
        -- transactions changed, newly known, or newly dated into the window
        select t.loan_id, min(date_trunc('month', t.transaction_date)::date) as from_month
        from {{ ref('stg_fineract__m_loan_transaction_with_deleted') }} t
        where t.extracted_at > {{ prev_wm }}
           or (t.created_on_utc >= {{ prev_cutoff }} and t.created_on_utc < {{ cutoff }})
           or (t.transaction_date > {{ prev_as_of }} and t.transaction_date <= {{ core_as_of_date() }})
        group by t.loan_id

        union all
        -- loans changed: whole loan when it appeared/disappeared, else from the write-off change
        select l.loan_id,
            case
                when l.is_deleted or k.loan_id is null or st.loan_id is null then date '1900-01-01'
                when k.written_off_on_date is distinct from st.source_written_off_on
                    then date_trunc('month', least(k.written_off_on_date, st.source_written_off_on))::date
            end
        from {{ ref('stg_fineract__m_loan_with_deleted') }} l
        left join {{ ref('int_loan__known_loans') }} k on k.loan_id = l.loan_id
        left join lateral (
            select b.loan_id, b.source_written_off_on
            from {{ this }} b
            where b.loan_id = l.loan_id
            order by b.period_month desc
            limit 1
        ) st on true
        where l.extracted_at > {{ prev_wm }}
           or (l.created_on_utc >= {{ prev_cutoff }} and l.created_on_utc < {{ cutoff }})
           or (l.submitted_on_date > {{ prev_as_of }} and l.submitted_on_date <= {{ core_as_of_date() }})
           or (l.written_off_on_date > {{ prev_as_of }} and l.written_off_on_date <= {{ core_as_of_date() }})

        union all
        -- schedules changed: first month whose fingerprint differs from the stored one
        select stored.loan_id, min(stored.period_month)
        from (
            with changed as (
                select distinct s.loan_id
                from {{ ref('stg_fineract__m_loan_repayment_schedule_with_deleted') }} s
                where s.extracted_at > {{ prev_wm }}
                   or (s.created_on_utc >= {{ prev_cutoff }} and s.created_on_utc < {{ cutoff }})
            )
            , stored_rows as (
                -- = any(array(...)): through the index on loan_id; as a join the planner, blind to the
                -- CTE's size, hashed the whole table (1.9M rows at 100k clients, 1.3 s of the night's 5.8 s)
                select b.loan_id, b.period_month, b.period_end, b.schedule_basis_hash
                from {{ this }} b
                where b.loan_id = any(array(select c.loan_id from changed c))
            )
            , schedule as (
                {{ core_schedule_cumulative('changed', by_index=true) }}
            )
            , fresh as (
                {{ core_schedule_prefix('stored_rows', 'schedule') }}
            )
            select r.loan_id, r.period_month
            from stored_rows r
            join fresh f on f.loan_id = r.loan_id and f.period_month = r.period_month
            where f.schedule_basis_hash is distinct from r.schedule_basis_hash
        ) stored
        group by stored.loan_id
    {%- endset -%}
    {%- set scope_sql -%}
        select loan_id, from_month from nightly_changed
        union all
        -- a changed loan that was outstanding at the previous as-of month: from that month on
        -- (its period_end moved there too)
        select b.loan_id, b.period_month
        from {{ this }} b
        where b.period_month = date_trunc('month', {{ prev_as_of }})::date
          and (b.outstanding_principal > 0 or b.period_end <> {{ core_period_end('b.period_month') }})
          and exists (select 1 from nightly_changed c where c.loan_id = b.loan_id and c.from_month is not null)
    {%- endset -%}
{%- endif %}
{%- if nightly %}
with nightly_changed as (
    {{ changed_sql }}
)
{%- endif %}

{%- set balances_sql -%}
    (
    {{ core_loan_balance_rows(scope_sql, stored_relation=(this if nightly else none)) }}
    )
    {%- if nightly %}
    union all
    (
    {{ core_loan_balance_rollforward(this, "date_trunc('month', " ~ prev_as_of ~ ")::date", 'nightly_changed') }}
    )
    {%- endif %}
{%- endset %}

{{ core_loan_balance_select(balances_sql) }}
