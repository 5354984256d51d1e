-- Every dimension has its unknown member (key -1).
select 'dim_client' as dimension from (select 1) x where not exists (select 1 from {{ ref('dim_client') }} where client_sk = -1)
union all
select 'dim_branch' from (select 1) x where not exists (select 1 from {{ ref('dim_branch') }} where branch_id = -1)
union all
select 'dim_loan_officer' from (select 1) x where not exists (select 1 from {{ ref('dim_loan_officer') }} where loan_officer_id = -1)
union all
select 'dim_product' from (select 1) x where not exists (select 1 from {{ ref('dim_product') }} where product_id = -1)
union all
select 'dim_date' from (select 1) x where not exists (select 1 from {{ ref('dim_date') }} where date_key = -1)
