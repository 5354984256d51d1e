{#-
    The labels of the codes the marts show (seeds/display_labels.csv), published
    so that BI can join any code column to its label: on domain and code, e.g.
    kpi_segment_month.gender to (domain 'gender', code). Translating the seed's
    label column translates the dashboards.
-#}

select
    dl.domain,
    dl.code,
    dl.label,
    dl.sort_order
from {{ ref('display_labels') }} as dl
