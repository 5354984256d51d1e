{#-
  Incremental int_loan__lifecycle (one row per known loan).

  Why: the model aggregated every known transaction of every loan each night.
  A loan's row changes only through its own raw rows, those of its client or
  group (branch), the passing of one of its own source dates (status and dates
  as of the as-of date), and, for loan_cycle, the disbursements of the other
  loans of its client. So a night rewrites:
    * the changed loans (core_mart_changed_loans: raw deltas since the state,
      rows entered since its cutoff, dates newly inside the as-of window);
    * the loans whose stored next_event_on (earliest source date after the
      state's as-of date) has come;
    * every loan of the clients of those loans (their cycles), with the client
      the row had before (a loan moved to another client) and the one it has now.
      Only the changed loans (and a loan of those clients that has no stored row)
      are computed from their transactions: the others' inputs did not change,
      so their stored row is written again with the client's cycles ranked anew
      (loan_cycle is the only column that depends on another loan).
  The model writes them with delete+insert on loan_id; the pre-hook deletes
  the rows of changed loans that are no longer known (deleted in the source),
  which the model does not write. Mode full (first build, --full-refresh,
  backfill) as for the marts (core_mart_mode), and when the table was built
  by the version before this one (no next_event_on: the pre-hook empties it,
  dbt appends the new columns). Compared with --full-refresh in
  test_kpi_incremental.py.
-#}

{#- loan_id of the loans changed since `state`: raw deltas and dated changes, and stored next_event_on come. -#}
{% macro core_lifecycle_changed(state) -%}
    {{ core_mart_changed_loans(state) }}
    union
    select t.loan_id from {{ this }} t where t.next_event_on <= {{ core_as_of_date() }}
{%- endmacro %}


{#- loan_id of every loan a night writes: the changed loans (the CTE named `changed`) and every loan of their clients. -#}
{% macro core_lifecycle_scope(changed='changed') -%}
    with clients as (
        -- = any(array(...)): through the loan_id indexes, not a hash of each whole table
        select k.client_id from {{ ref('int_loan__known_loans') }} k
        where k.loan_id = any(array(select c.loan_id from {{ changed }} c))
        union
        select l.client_id from {{ ref('stg_fineract__m_loan_with_deleted') }} l
        where l.loan_id = any(array(select c.loan_id from {{ changed }} c))
        union
        select t.client_id from {{ this }} t
        where t.loan_id = any(array(select c.loan_id from {{ changed }} c))
    )
    select c.loan_id from {{ changed }} c
    union
    -- (a semi-join: known_loans has no index on client_id, and = any() of a subquery's array
    -- is a linear search for each row of a scan)
    select k.loan_id from {{ ref('int_loan__known_loans') }} k
    where k.client_id in (select c.client_id from clients c)
    union
    -- loans without a client (group loans) share one partition of loan_cycle
    select k.loan_id from {{ ref('int_loan__known_loans') }} k
    where k.client_id is null and exists (select 1 from clients c where c.client_id is null)
{%- endmacro %}


{% macro core_lifecycle_prepare() %}
    {%- set start = core_rewrite_by_key_start('next_event_on') -%}
    {%- if start['sql'] is not none -%}
        {{ return(start['sql']) }}
    {%- endif -%}
    {%- set state = start['state'] -%}
    {%- set sql -%}
        delete from {{ this }} t
        using ({{ core_mart_changed_loans(state) }}) changed
        where t.loan_id = changed.loan_id
          and not exists (select 1 from {{ ref('int_loan__known_loans') }} k where k.loan_id = t.loan_id)
    {%- endset -%}
    {{ return(sql) }}
{% endmacro %}
