-- kpi_branch_month has exactly one row per branch named by any client and per period.
with expected as (
    select b.branch_id, p.period_end
    from (select distinct coalesce(branch_id, -1) as branch_id from {{ ref('int_client__current') }}) b
    cross join {{ ref('int_kpi__periods') }} p
)

select coalesce(e.branch_id, k.branch_id) as branch_id, coalesce(e.period_end, k.period_end) as period_end,
       e.branch_id is null as unexpected, k.branch_id is null as missing
from expected e
full join {{ ref('kpi_branch_month') }} k on k.branch_id = e.branch_id and k.period_end = e.period_end
where e.branch_id is null or k.branch_id is null
