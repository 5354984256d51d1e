-- Each client's entry product: the loan product of the client's first disbursed
-- loan (loan_cycle 1 of int_loan__lifecycle: first disbursement date, then loan
-- id). The product KPI mart attributes clients (active, new, exited, retention,
-- PPI) to it, as the segment mart attributes them to their poverty band at
-- entry; clients without a disbursed loan have no row (product -1 in the marts).
select
    client_id,
    product_id                          as entry_product_id,
    loan_id                             as entry_loan_id,
    disbursed_on                        as entry_disbursed_on
from {{ ref('int_loan__lifecycle') }}
where loan_cycle = 1
  and client_id is not null
