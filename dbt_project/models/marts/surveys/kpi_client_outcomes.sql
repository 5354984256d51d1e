{#-
    How clients fare between their baseline and their latest follow-up, for
    monthly household income, poverty likelihood and school enrolment,
    sliced by gender, rural/urban area, branch (with its region), product and
    poverty band at entry.

    One row per indicator and slice (the full cross of the five). Sums and
    counts are additive: to roll slices up, add them and divide (e.g. mean
    change = sum(change_sum) / sum(clients)); never average the means.
    Gender, area and poverty band at entry come from the client's current
    dim_client row, so these slices are the star schema's own (band of the
    client's first PPI assessment); branch and product from
    int_surveys__clients (current in the MIS). Clients dim_client does not
    know at the as-of date fall in gender/band 'unknown'.
    Per-client detail: intermediate int_surveys__client_wave_change.
-#}

with changes as (

    select * from {{ ref('int_surveys__client_wave_change') }}

),

clients as (

    select * from {{ ref('int_surveys__clients') }}

),

current_dim as (

    select client_id, gender, area, poverty_band_at_entry
    from {{ ref('dim_client') }}
    where is_current and client_id <> -1

)

select
    {{ core_as_of_date() }}                                     as as_of_date,
    ch.indicator_code,
    i.better_direction,
    c.branch_id,
    c.branch_name,
    b.region_id,
    b.region_name,
    coalesce(d.gender, 'unknown')                                       as gender,
    coalesce(d.area, 'unknown')                                         as area,
    c.product_id,
    coalesce(c.product_name, 'no loan')                                 as product_name,
    coalesce(d.poverty_band_at_entry, 'unknown')                        as poverty_band_at_entry,
    count(*)                                                            as clients,
    sum(ch.baseline_value)                                              as baseline_value_sum,
    sum(ch.followup_value)                                              as followup_value_sum,
    sum(ch.change)                                                      as change_sum,
    round(avg(ch.baseline_value), 6)                                    as mean_baseline_value,
    round(avg(ch.followup_value), 6)                                    as mean_followup_value,
    round(avg(ch.change), 6)                                            as mean_change,
    count(*) filter (where ch.direction_of_change = 'improved')         as clients_improved,
    count(*) filter (where ch.direction_of_change = 'worsened')         as clients_worsened,
    count(*) filter (where ch.direction_of_change = 'unchanged')        as clients_unchanged,
    round(count(*) filter (where ch.direction_of_change = 'improved')::numeric / count(*), 6)
                                                                        as share_improved,
    round(avg(ch.years_between), 2)                                     as mean_years_between
from changes as ch
inner join clients as c
    on c.client_id = ch.client_id
left join current_dim as d
    on d.client_id = ch.client_id
inner join {{ ref('dim_indicator') }} as i
    on i.indicator_code = ch.indicator_code
left join {{ ref('dim_branch') }} as b
    on b.branch_id = c.branch_id
group by 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12
