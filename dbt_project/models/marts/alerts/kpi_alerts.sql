{#-
    Early warning: every period in which a branch, or a loan officer in a
    branch, is beyond a target of seeds/kpi_targets.csv, one row per breach.

    Indicators (from the columns of kpi_branch_month / kpi_loan_officer_month):
      par30_ratio            par30_ratio
      women_borrowers_share  women_borrowers / active_borrowers
      retention_rate_12m     retention_rate_12m
      ppi_coverage           ppi_assessed_clients / active_clients
    A target applies to a scope (branch or loan_officer) and to one branch
    (branch_id set) or to all (branch_id empty); a branch's own row wins.
    alert_kind 'threshold': value > threshold (direction above) or
    value < threshold (below); 'worsening': the value got worse (higher for
    above, lower for below) than the period before in each of the last
    worsening_periods periods. A null value (nothing to divide by) is never a
    breach and breaks a worsening run. Officer rows leave out the "no loan
    officer" member (-1): nobody to act on them.

    periods_in_breach counts the consecutive periods of the breach up to this
    one (1 = it started in this period: is_new); first_breach_period_end is the
    period it started. The night sends the rows with is_latest_period and
    is_new, keyed by alert_key (plugins/spm_warehouse/kpi_alerts.py).
-#}

with targets as (

    select
        t.indicator,
        t.branch_id,
        t.scope,
        t.threshold,
        t.direction,
        t.worsening_periods,
        t.label
    from {{ ref('kpi_targets') }} as t

),

branch_values as (

    select
        'branch'::text                      as scope,
        k.branch_id,
        null::bigint                        as loan_officer_id,
        k.period_month,
        k.period_end,
        k.is_latest_period,
        v.indicator,
        v.value
    from {{ ref('kpi_branch_month') }} as k
    cross join lateral (
        values
            ('par30_ratio', k.par30_ratio::numeric),
            ('women_borrowers_share', k.women_borrowers::numeric / nullif(k.active_borrowers, 0)),
            ('retention_rate_12m', k.retention_rate_12m::numeric),
            ('ppi_coverage', k.ppi_assessed_clients::numeric / nullif(k.active_clients, 0))
    ) as v (indicator, value)

),

officer_values as (

    select
        'loan_officer'::text                as scope,
        k.branch_id,
        k.loan_officer_id,
        k.period_month,
        k.period_end,
        k.is_latest_period,
        v.indicator,
        v.value
    from {{ ref('kpi_loan_officer_month') }} as k
    cross join lateral (
        values
            ('par30_ratio', k.par30_ratio::numeric),
            ('women_borrowers_share', k.women_borrowers::numeric / nullif(k.active_borrowers, 0)),
            ('retention_rate_12m', k.retention_rate_12m::numeric),
            ('ppi_coverage', k.ppi_assessed_clients::numeric / nullif(k.active_clients, 0))
    ) as v (indicator, value)
    where k.loan_officer_id <> -1

),

measured as (

    select bv.* from branch_values as bv
    union all
    select ov.* from officer_values as ov

),

applied as (

    -- the target of the branch itself, else the one for all branches
    select distinct on (m.scope, m.branch_id, m.loan_officer_id, m.indicator, m.period_month)
        m.*,
        t.threshold,
        t.direction,
        t.worsening_periods,
        t.label                                                         as indicator_label
    from measured as m
    inner join targets as t
        on t.indicator = m.indicator
       and t.scope = m.scope
       and (t.branch_id = m.branch_id or t.branch_id is null)
    order by m.scope, m.branch_id, m.loan_officer_id, m.indicator, m.period_month, t.branch_id nulls last

),

compared as (

    select
        a.*,
        lag(a.value) over w_series                                      as previous_value,
        coalesce(case a.direction
            when 'above' then a.value > a.threshold
            when 'below' then a.value < a.threshold
        end, false)                                                     as beyond_threshold,
        coalesce(case a.direction
            when 'above' then a.value > lag(a.value) over w_series
            when 'below' then a.value < lag(a.value) over w_series
        end, false)                                                     as worsened
    from applied as a
    window w_series as (partition by a.scope, a.branch_id, a.loan_officer_id, a.indicator order by a.period_month)

),

worsening_runs as (

    -- gaps and islands: a period that did not worsen starts a new run
    select
        c.*,
        sum(case when c.worsened then 0 else 1 end) over (
            partition by c.scope, c.branch_id, c.loan_officer_id, c.indicator
            order by c.period_month rows between unbounded preceding and current row
        )                                                               as worsening_run
    from compared as c

),

streaks as (

    select
        wr.*,
        sum(case when wr.worsened then 1 else 0 end) over (
            partition by wr.scope, wr.branch_id, wr.loan_officer_id, wr.indicator, wr.worsening_run
            order by wr.period_month rows between unbounded preceding and current row
        )                                                               as periods_worsened
    from worsening_runs as wr

),

kinds as (

    select
        s.*,
        k.alert_kind,
        k.in_breach
    from streaks as s
    cross join lateral (
        values
            ('threshold', s.beyond_threshold),
            ('worsening', s.worsening_periods is not null and s.periods_worsened >= s.worsening_periods)
    ) as k (alert_kind, in_breach)

),

breach_runs as (

    select
        k.*,
        sum(case when k.in_breach then 0 else 1 end) over (
            partition by k.scope, k.branch_id, k.loan_officer_id, k.indicator, k.alert_kind
            order by k.period_month rows between unbounded preceding and current row
        )                                                               as breach_run
    from kinds as k

),

breaches as (

    select
        br.*,
        sum(case when br.in_breach then 1 else 0 end) over w_run        as periods_in_breach,
        min(br.period_end) filter (where br.in_breach) over w_run       as first_breach_period_end,
        min(br.period_month) filter (where br.in_breach) over w_run     as first_breach_period_month
    from breach_runs as br
    window w_run as (
        partition by br.scope, br.branch_id, br.loan_officer_id, br.indicator, br.alert_kind, br.breach_run
        order by br.period_month rows between unbounded preceding and current row
    )

)

select
    b.scope,
    b.branch_id,
    db.branch_name,
    db.region_id,
    db.region_name,
    b.loan_officer_id,
    lo.loan_officer_name,
    b.indicator,
    b.indicator_label,
    b.period_end,
    b.period_month,
    round(b.value, 6)::numeric(12, 6)                                    as value,
    round(b.previous_value, 6)::numeric(12, 6)                           as previous_value,
    b.threshold,
    b.direction,
    b.worsening_periods,
    b.alert_kind,
    {{ display_label('alert_kind', 'b.alert_kind') }}                   as alert_kind_label,
    b.periods_in_breach::int                                            as periods_in_breach,
    b.first_breach_period_end,
    b.is_latest_period,
    b.periods_in_breach = 1                                             as is_new,
    concat_ws(':', b.scope, b.branch_id, coalesce(b.loan_officer_id, -1), b.indicator, b.alert_kind,
              to_char(b.first_breach_period_month, 'YYYY-MM'))          as alert_key
from breaches as b
left join {{ ref('dim_branch') }} as db
    on db.branch_id = b.branch_id
left join {{ ref('dim_loan_officer') }} as lo
    on lo.loan_officer_id = b.loan_officer_id
where b.in_breach
