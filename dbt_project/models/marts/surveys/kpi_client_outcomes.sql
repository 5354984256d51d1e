{#-
    How clients fare between their baseline and their latest follow-up, for
    monthly household income, poverty likelihood and school enrolment,
    sliced by gender, rural/urban area, branch, product and poverty band at entry.

    One row per indicator and slice (the full cross of the five). Sums and
    counts are additive: to roll slices up, add them and divide (e.g. mean
    change = sum(change_sum) / sum(clients)); never average the means.
    Gender, area and poverty band at entry come from the client's current
    dim_client row, so these slices are the star schema's own (band of the
    client's first PPI assessment); branch and product from
    int_surveys__clients (current in the MIS). Clients dim_client does not
    know at the as-of date fall in gender/band 'unknown'.

    Small samples: a row with fewer clients than var min_cell_n (setting
    SPM_MIN_CELL_N, default 10) is is_small_sample, and its means
    (mean_baseline_value, mean_followup_value, mean_change, share_improved,
    mean_years_between) are null: too few clients to read a mean from. The
    counts and sums stay, so roll-ups over several rows still add up.
    Units: values and sums are in the indicator's unit (value_unit: a share
    is a fraction 0-1); mean_change is in change_unit, percentage points
    ('pp') for shares (the fraction's change x 100), else the value's unit.
    poverty_line names the line poverty likelihood is measured against (var
    ppi_poverty_line) on poverty_likelihood rows.
    Per-client detail: intermediate int_surveys__client_wave_change.
-#}

{%- set min_cell_n = var('min_cell_n', 10) | int -%}

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

),

aggregated as (

    select
        ch.indicator_code,
        i.better_direction,
        i.unit                                                              as value_unit,
        i.change_unit,
        c.branch_id,
        c.branch_name,
        coalesce(d.gender, 'unknown')                                       as gender,
        coalesce(d.area, 'unknown')                                         as area,
        c.product_id,
        coalesce(c.product_name, 'no loan')                                 as product_name,
        coalesce(d.poverty_band_at_entry, 'unknown')                        as poverty_band_at_entry,
        count(*)                                                            as clients,
        sum(ch.baseline_value)                                              as baseline_value_sum,
        sum(ch.followup_value)                                              as followup_value_sum,
        sum(ch.change)                                                      as change_sum,
        avg(ch.baseline_value)                                              as mean_baseline,
        avg(ch.followup_value)                                              as mean_followup,
        avg(ch.change)                                                      as mean_change_raw,
        count(*) filter (where ch.direction_of_change = 'improved')         as clients_improved,
        count(*) filter (where ch.direction_of_change = 'worsened')         as clients_worsened,
        count(*) filter (where ch.direction_of_change = 'unchanged')        as clients_unchanged,
        avg(ch.years_between)                                               as mean_years
    from changes as ch
    inner join clients as c
        on c.client_id = ch.client_id
    left join current_dim as d
        on d.client_id = ch.client_id
    inner join {{ ref('dim_indicator') }} as i
        on i.indicator_code = ch.indicator_code
    group by 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11

)

select
    {{ core_as_of_date() }}                                             as as_of_date,
    a.indicator_code,
    a.better_direction,
    a.branch_id,
    a.branch_name,
    b.region_id,
    b.region_name,
    a.gender,
    {{ display_label('gender', 'a.gender') }}                           as gender_label,
    a.area,
    {{ display_label('area', 'a.area') }}                               as area_label,
    a.product_id,
    a.product_name,
    a.poverty_band_at_entry,
    {{ display_label('poverty_band', 'a.poverty_band_at_entry') }}      as poverty_band_at_entry_label,
    a.clients,
    a.clients < {{ min_cell_n }}                                        as is_small_sample,
    a.baseline_value_sum,
    a.followup_value_sum,
    a.change_sum,
    case when a.clients >= {{ min_cell_n }} then round(a.mean_baseline, 6) end
                                                                        as mean_baseline_value,
    case when a.clients >= {{ min_cell_n }} then round(a.mean_followup, 6) end
                                                                        as mean_followup_value,
    case when a.clients >= {{ min_cell_n }}
         then round(a.mean_change_raw * case when a.change_unit = 'pp' then 100 else 1 end, 6) end
                                                                        as mean_change,
    a.value_unit,
    a.change_unit,
    {{ display_label('unit', 'a.change_unit') }}                        as change_unit_label,
    case when a.indicator_code = 'poverty_likelihood' then '{{ var("ppi_poverty_line") }}' end
                                                                        as poverty_line,
    case when a.indicator_code = 'poverty_likelihood'
         then {{ display_label('poverty_line', "'" ~ var('ppi_poverty_line') ~ "'") }} end
                                                                        as poverty_line_label,
    a.clients_improved,
    a.clients_worsened,
    a.clients_unchanged,
    case when a.clients >= {{ min_cell_n }}
         then round(a.clients_improved::numeric / a.clients, 6) end    as share_improved,
    case when a.clients >= {{ min_cell_n }} then round(a.mean_years, 2) end
                                                                        as mean_years_between
from aggregated as a
left join {{ ref('dim_branch') }} as b
    on b.branch_id = a.branch_id
