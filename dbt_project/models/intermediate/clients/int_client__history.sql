{{
  config(
    materialized='incremental',
    unique_key='client_id',
    incremental_strategy='delete+insert',
    on_schema_change='append_new_columns',
    pre_hook=core_session_settings() + ["{{ core_client_history_prepare() }}"],
    post_hook=[
      "{{ core_index('client_id, valid_from', unique=true) }}",
      "{{ core_index('next_event_on') }}",
      "analyze {{ this }}"
    ]
  )
}}
-- The change feeds that the incremental scope reads (macros/incremental/):
-- depends_on: {{ ref('stg_fineract__m_client_with_deleted') }}
{#-
  Type 2 history of each known client: one row per period during which its
  branch, loan officer, classification, status and poverty band stayed the
  same (valid_from .. valid_to inclusive; the current row has valid_to 9999-12-31).

  Where each change comes from:
    * branch, loan officer, classification: the versions logged by
      int_client__observed_versions (seen at or before the as-of cutoff). The
      first version holds from submission; a branch change is dated by
      office_joining_date (Fineract sets it on transfer), other changes by the
      day the source modified the row. A first version whose office_joining_date
      is after its activation was transferred in from an office we never saw:
      the branch before that date is unknown (-1).
    * status: the lifecycle dates of every logged version (submitted ->
      pending, reactivated -> pending, activation -> active, closed, rejected,
      withdrawn), so a closure that a later reactivation erased stays in history
      when the warehouse saw it.
    * poverty band: the band of each accepted PPI assessment from its interview date.
  Events after as_of_date are ignored; the earliest of them is kept on the
  client's rows (next_event_on), with a fingerprint of its PPI assessments
  (ppi_basis_hash).
  Incremental (macros/incremental/core_client_history.sql): a night rewrites
  the clients whose raw row changed or whose version became visible since the
  state, whose assessments' fingerprint changed, or whose next_event_on has come.
-#}
{#- a table of an older version (not incremental yet) is rebuilt in full, see core_relation_lacks_column -#}
{%- set upgrade = is_incremental() and core_relation_lacks_column(this, 'next_event_on') %}
{%- set state = core_mart_state(this) if is_incremental() and not upgrade else none %}
{%- set mode = core_mart_mode(state) %}
with known as (
    select c.client_id from {{ ref('int_client__current') }} c
    {%- if mode == 'nightly' %}
    where c.client_id in ({{ core_client_history_scope(state) }})
    {%- endif %}
)

, versions_all as (
    select v.*,
        row_number() over (partition by v.client_id order by v.observed_at) as version_seq,
        (v.observed_at < {{ core_knowledge_cutoff() }})                       as seen_by_cutoff
    from {{ ref('int_client__observed_versions') }} v
    join known k on k.client_id = v.client_id
)

, versions as (
    -- versions seen by the cutoff; a client first modified later keeps its earliest version
    select v.*,
        (v.observed_at at time zone '{{ var("mis_timezone", "UTC") }}')::date as observed_date,
        lag(v.office_id) over w                                              as prev_office_id,
        lag(v.office_joining_date) over w                                    as prev_office_joining_date,
        lag(v.staff_id) over w                                               as prev_staff_id,
        lag(v.client_classification_cv_id) over w                            as prev_classification_cv_id
    from versions_all v
    where v.seen_by_cutoff or v.version_seq = 1
    window w as (partition by v.client_id order by v.version_seq)
)

, base as (
    select client_id,
        coalesce(submitted_on_date, activation_date, observed_date)          as base_date
    from versions
    where version_seq = 1
)

, events as (
    -- branch
    select v.client_id, b.base_date as effective_date, v.version_seq * 10 as ord,
        case when v.office_joining_date > coalesce(v.activation_date, v.submitted_on_date) then -1 else v.office_id end as branch_id,
        null::bigint as loan_officer_id, null::bigint as classification_cv_id, null::text as status, null::text as poverty_band,
        1 as attr_ord
    from versions v join base b on b.client_id = v.client_id
    where v.version_seq = 1
    union all
    select v.client_id, v.office_joining_date, v.version_seq * 10 + 1, v.office_id, null, null, null, null, 1
    from versions v
    where v.version_seq = 1 and v.office_joining_date > coalesce(v.activation_date, v.submitted_on_date)
    union all
    select v.client_id,
        case when (v.office_joining_date is distinct from v.prev_office_joining_date) and v.office_joining_date is not null
             then v.office_joining_date else v.observed_date end,
        v.version_seq * 10, v.office_id, null, null, null, null, 1
    from versions v
    where v.version_seq > 1 and v.office_id is distinct from v.prev_office_id
    -- loan officer
    union all
    select v.client_id, case when v.version_seq = 1 then b.base_date else v.observed_date end, v.version_seq * 10,
        null, coalesce(v.staff_id, -1), null, null, null, 2
    from versions v join base b on b.client_id = v.client_id
    where v.version_seq = 1 or v.staff_id is distinct from v.prev_staff_id
    -- classification
    union all
    select v.client_id, case when v.version_seq = 1 then b.base_date else v.observed_date end, v.version_seq * 10,
        null, null, coalesce(v.client_classification_cv_id, -1), null, null, 3
    from versions v join base b on b.client_id = v.client_id
    where v.version_seq = 1 or v.client_classification_cv_id is distinct from v.prev_classification_cv_id
    -- status, from lifecycle dates (first version that shows each date wins its place)
    union all
    select client_id, effective_date, min(version_seq) * 10 + priority, null, null, null, status, null, 4
    from (
        select v.client_id, v.version_seq, x.effective_date, x.status, x.priority
        from versions v
        join base b on b.client_id = v.client_id
        cross join lateral (values
            (b.base_date, 'pending', 1),
            (v.reactivated_on_date, 'pending', 2),
            (v.activation_date, 'active', 3),
            (v.rejected_on_date, 'rejected', 4),
            (v.withdrawn_on_date, 'withdrawn', 4),
            (v.closed_on_date, 'closed', 5)
        ) as x(effective_date, status, priority)
        where x.effective_date is not null
    ) lifecycle
    group by client_id, effective_date, status, priority
    -- poverty band of each assessment
    union all
    select a.client_id, a.interview_date,
        1000000 + row_number() over (partition by a.client_id, a.interview_date order by {{ surveys_order('a') }}),
        null, null, null, null, coalesce(pb.band_code, 'unknown'), 5
    from {{ ref('int_client__ppi_assessments') }} a
    join known k on k.client_id = a.client_id
    left join {{ ref('poverty_likelihood_bands') }} pb
        on a.poverty_likelihood >= pb.likelihood_from and a.poverty_likelihood < pb.likelihood_to
)

-- what can change a client's rows without a change of its raw row: a date passing, new assessments
, next_events as (
    select client_id, min(effective_date) as next_event_on
    from events
    where effective_date > {{ core_as_of_date() }}
    group by client_id
)

, ppi_basis as (
    select a.client_id, {{ core_ppi_basis_hash('a') }} as ppi_basis_hash
    from {{ ref('int_client__ppi_assessments') }} a
    join known k on k.client_id = a.client_id
    group by a.client_id
)

, grouped as (
    select e.*,
        count(branch_id) over w            as g_branch,
        count(loan_officer_id) over w      as g_officer,
        count(classification_cv_id) over w as g_class,
        count(status) over w               as g_status,
        count(poverty_band) over w         as g_band
    from events e
    where e.effective_date <= {{ core_as_of_date() }}
    window w as (partition by e.client_id order by e.effective_date, e.ord, e.attr_ord rows between unbounded preceding and current row)
)

, filled as (
    select client_id, effective_date, ord, attr_ord,
        first_value(branch_id) over (partition by client_id, g_branch order by effective_date, ord, attr_ord)             as branch_id,
        first_value(loan_officer_id) over (partition by client_id, g_officer order by effective_date, ord, attr_ord)      as loan_officer_id,
        first_value(classification_cv_id) over (partition by client_id, g_class order by effective_date, ord, attr_ord)   as classification_cv_id,
        first_value(status) over (partition by client_id, g_status order by effective_date, ord, attr_ord)                as status,
        coalesce(first_value(poverty_band) over (partition by client_id, g_band order by effective_date, ord, attr_ord), 'unknown') as poverty_band
    from grouped
)

, end_of_day as (
    -- the state at the end of each day with an event (its last event in the window order)
    select distinct on (client_id, effective_date) *
    from filled
    order by client_id, effective_date, ord desc, attr_ord desc
)

, changes as (
    select d.*,
        lag(row(branch_id, loan_officer_id, classification_cv_id, status, poverty_band)::text)
            over (partition by client_id order by effective_date) as prev_state
    from end_of_day d
)

, kept as (
    select *
    from changes
    where prev_state is distinct from row(branch_id, loan_officer_id, classification_cv_id, status, poverty_band)::text
)

select
    k.client_id,
    k.effective_date                                                        as valid_from,
    coalesce(lead(k.effective_date) over w - 1, date '9999-12-31')          as valid_to,
    lead(k.effective_date) over w is null                                   as is_current,
    row_number() over w                                                     as version_number,
    k.branch_id,
    k.loan_officer_id,
    k.classification_cv_id,
    k.status,
    k.poverty_band,
    ne.next_event_on,
    coalesce(pp.ppi_basis_hash, 0)                                          as ppi_basis_hash,
    {{ core_mart_state_columns(state, ['m_client']) }}
from kept k
left join next_events ne on ne.client_id = k.client_id
left join ppi_basis pp on pp.client_id = k.client_id
window w as (partition by k.client_id order by k.effective_date)
