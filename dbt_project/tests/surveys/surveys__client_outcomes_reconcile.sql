{#- kpi_client_outcomes adds up to the per-client changes it aggregates (no client lost or counted twice). -#}

with per_client as (

    select indicator_code, count(*) as clients, sum(change) as change_sum
    from {{ ref('int_surveys__client_wave_change') }}
    group by 1

),

aggregated as (

    select indicator_code, sum(clients) as clients, sum(change_sum) as change_sum
    from {{ ref('kpi_client_outcomes') }}
    group by 1

)

select coalesce(p.indicator_code, a.indicator_code) as indicator_code,
       format('%s: %s clients and change %s per client, but %s clients and change %s in kpi_client_outcomes',
              coalesce(p.indicator_code, a.indicator_code), p.clients, p.change_sum, a.clients, a.change_sum) as problem
from per_client as p
full join aggregated as a
    on a.indicator_code = p.indicator_code
where p.clients is distinct from a.clients
   or abs(coalesce(p.change_sum, 0) - coalesce(a.change_sum, 0)) > 0.000001
