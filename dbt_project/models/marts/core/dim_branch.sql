{{ config(post_hook=["{{ core_index('branch_id') }}"]) }}
-- Branches (Fineract offices) with their place in the office hierarchy.
-- region = the office directly under the head office on the way to this office
-- (the head office is its own region). Offices that facts name but the source
-- no longer has appear as inferred members; -1 is the unknown member.
with recursive offices as (
    select office_id, parent_office_id, office_name, hierarchy, opening_date
    from {{ ref('stg_fineract__m_office') }}
)

, tree as (
    select o.office_id, o.parent_office_id, 0 as hierarchy_level,
           o.office_id as root_office_id, null::bigint as region_office_id,
           array[o.office_id] as path
    from offices o
    where o.parent_office_id is null
       or not exists (select 1 from offices p where p.office_id = o.parent_office_id)
    union all
    select c.office_id, c.parent_office_id, t.hierarchy_level + 1,
           t.root_office_id, coalesce(t.region_office_id, c.office_id),
           t.path || c.office_id
    from offices c
    join tree t on c.parent_office_id = t.office_id
    where not c.office_id = any(t.path)
)

, referenced as (
    select branch_id as office_id from {{ ref('int_client__current') }}
    union
    select branch_id from {{ ref('int_loan__known_loans') }}
    union
    select office_id from {{ ref('stg_fineract__m_staff') }}
)

select
    o.office_id                                         as branch_id,
    o.office_name                                       as branch_name,
    o.parent_office_id,
    parent.office_name                                  as parent_office_name,
    coalesce(t.region_office_id, t.root_office_id)      as region_id,
    coalesce(region.office_name, root.office_name)      as region_name,
    o.hierarchy,
    t.hierarchy_level,
    not exists (select 1 from offices ch where ch.parent_office_id = o.office_id) as is_leaf,
    o.opening_date,
    false                                               as is_inferred
from offices o
left join tree t on t.office_id = o.office_id
left join offices parent on parent.office_id = o.parent_office_id
left join offices region on region.office_id = t.region_office_id
left join offices root on root.office_id = t.root_office_id

union all

select r.office_id, 'Unknown office ' || r.office_id, null, null, null, 'Unknown', null, null, true, null, true
from referenced r
where r.office_id is not null
  and r.office_id <> -1
  and not exists (select 1 from offices o where o.office_id = r.office_id)

union all

select -1, 'Unknown', null, null, null, 'Unknown', null, null, true, null, true
