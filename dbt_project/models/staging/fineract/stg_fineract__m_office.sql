-- Offices (branches, regions, head office). Reference table copied whole.
select
    id::bigint              as office_id,
    parent_id::bigint       as parent_office_id,
    hierarchy::text         as hierarchy,
    name::text              as office_name,
    opening_date::date      as opening_date,
    external_id::text       as office_external_id,
    _extracted_at           as extracted_at
from {{ source('fineract', 'm_office') }}
where not _deleted
