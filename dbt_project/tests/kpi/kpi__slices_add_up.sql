-- The slices partition the same totals: per period, portfolio, PAR30, borrowers
-- and write-offs summed over loan officers, products or segments equal the
-- branch totals, and so do active and new clients over officers, segments and
-- products (clients count for their entry product).
with totals as (
    select 'branch' as slicing, period_end,
           sum(gross_loan_portfolio) as glp, sum(par30_principal) as par30, sum(active_borrowers) as borrowers,
           sum(write_off_amount) as write_off, sum(active_clients) as active, sum(new_clients) as new_clients
    from {{ ref('kpi_branch_month') }} group by period_end
    union all
    select 'loan_officer', period_end, sum(gross_loan_portfolio), sum(par30_principal), null,
           sum(write_off_amount), sum(active_clients), sum(new_clients)
    from {{ ref('kpi_loan_officer_month') }} group by period_end
    union all
    select 'product', period_end, sum(gross_loan_portfolio), sum(par30_principal), null,
           sum(write_off_amount), sum(active_clients), sum(new_clients)
    from {{ ref('kpi_product_month') }} group by period_end
    union all
    select 'segment', period_end, sum(gross_loan_portfolio), sum(par30_principal), sum(active_borrowers),
           sum(write_off_amount), sum(active_clients), sum(new_clients)
    from {{ ref('kpi_segment_month') }} group by period_end
)

select t.*, b.glp as branch_glp, b.active as branch_active
from totals t
join totals b on b.slicing = 'branch' and b.period_end = t.period_end
where t.slicing <> 'branch'
  and (t.glp <> b.glp
       or t.par30 <> b.par30
       or t.write_off <> b.write_off
       or (t.borrowers is not null and t.borrowers <> b.borrowers)
       or (t.active is not null and t.active <> b.active)
       or (t.new_clients is not null and t.new_clients <> b.new_clients))
