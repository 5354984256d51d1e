{{ config(post_hook=["{{ core_index('indicator_code') }}"]) }}
{#- The indicator catalogue (seeds/indicator_catalogue.csv) as a dimension. -#}

select
    indicator_code,
    indicator_name,
    spm_dimension,
    unit,
    better_direction,
    change_unit,
    source_fields,
    description
from {{ ref('indicator_catalogue') }}
