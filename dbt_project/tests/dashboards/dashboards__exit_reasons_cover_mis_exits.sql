{#- Every client the MIS closed appears in kpi_exit_reasons_branch_month: its mis_exits add up to
    kpi_branch_month.exited_clients for every branch and period (not_recorded when no exit interview). -#}

with reasons as (

    select branch_id, period_end, sum(mis_exits) as mis_exits
    from {{ ref('kpi_exit_reasons_branch_month') }}
    group by 1, 2

),

kpi as (

    select branch_id, period_end, exited_clients
    from {{ ref('kpi_branch_month') }}
    where exited_clients > 0

)

select
    coalesce(k.branch_id, r.branch_id)                                  as branch_id,
    coalesce(k.period_end, r.period_end)                                as period_end,
    k.exited_clients,
    r.mis_exits
from kpi as k
full outer join reasons as r
    on r.branch_id = k.branch_id
   and r.period_end = k.period_end
where coalesce(k.exited_clients, 0) <> coalesce(r.mis_exits, 0)
