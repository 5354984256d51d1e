{{ config(pre_hook=core_session_settings()) }}
{#-
  Client events per period, from which every KPI mart rebuilds its client
  counts by cumulative sums (one row per client and month with an event;
  O(clients), never clients x months).

  * active: +1 in the month of activation_date, -1 in the month of
    closedon_date, for clients whose status is not pending/rejected/withdrawn
    and whose closure (if any) is after the activation. A client is then
    counted at D exactly when activation_date <= D < closedon_date.
  * new_clients / exited_clients: activation_date / closedon_date in the month
    (the contract's literal rules, whatever the status).
  * ppi: +1 / +likelihood when the client is both active and covered by an
    assessment, -1 / -likelihood when that stops. Each assessment covers from
    its interview date until the next one (latest by macro surveys_order, across
    Kobo and the MIS survey module); intersected with the active interval it
    gives exactly "active at D, latest assessment interviewed on or before D".
-#}
with clients as (
    select
        client_id,
        activation_date,
        closed_on_date,
        (not is_never_active_status
            and activation_date is not null
            and (closed_on_date is null or closed_on_date > activation_date)) as can_be_active
    from {{ ref('int_client__current') }}
)

, ppi_spans as (
    -- [start, stop): active and covered by this assessment; stop null = still so at as_of_date
    select
        s.client_id,
        greatest(s.covered_from, c.activation_date)                         as span_start,
        nullif(least(coalesce(s.covered_until, 'infinity'::date),
                     coalesce(c.closed_on_date, 'infinity'::date)), 'infinity'::date) as span_stop,
        s.poverty_likelihood
    from {{ ref('int_client__ppi_spans') }} s
    join clients c on c.client_id = s.client_id
    where c.can_be_active
)

, events as (
    select client_id, {{ core_period_month('activation_date') }} as period_month,
           1 as active_delta, 0 as new_clients, 0 as exited_clients,
           0 as ppi_delta, 0::numeric as likelihood_delta
    from clients where can_be_active
    union all
    select client_id, {{ core_period_month('closed_on_date') }}, -1, 0, 0, 0, 0
    from clients where can_be_active and closed_on_date is not null
    union all
    select client_id, {{ core_period_month('activation_date') }}, 0, 1, 0, 0, 0
    from clients where activation_date is not null
    union all
    select client_id, {{ core_period_month('closed_on_date') }}, 0, 0, 1, 0, 0
    from clients where closed_on_date is not null
    union all
    select client_id, {{ core_period_month('span_start') }}, 0, 0, 0, 1, poverty_likelihood
    from ppi_spans where span_stop is null or span_stop > span_start
    union all
    select client_id, {{ core_period_month('span_stop') }}, 0, 0, 0, -1, -poverty_likelihood
    from ppi_spans where span_stop > span_start
)

select
    client_id,
    period_month,
    sum(active_delta)::int              as active_delta,
    sum(new_clients)::int               as new_clients,
    sum(exited_clients)::int            as exited_clients,
    sum(ppi_delta)::int                 as ppi_assessed_delta,
    sum(likelihood_delta)               as poverty_likelihood_delta
from events
where period_month <= {{ core_as_of_month() }}
group by client_id, period_month
