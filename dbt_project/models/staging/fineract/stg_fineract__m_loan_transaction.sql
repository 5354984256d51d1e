-- Loan transactions. Reversed ones stay visible here (is_reversed) so that
-- intermediate models can see the reversal; every business model drops them.
select
    t.id::bigint                                        as transaction_id,
    t.loan_id::bigint                                   as loan_id,
    t.office_id::bigint                                 as transaction_office_id,
    coalesce(t.is_reversed, false)                      as is_reversed,
    t.transaction_type_enum::int                        as transaction_type_code,
    coalesce(tt.enum_value, 'other_' || t.transaction_type_enum::text) as transaction_type,
    t.transaction_date::date                            as transaction_date,
    coalesce(t.amount, 0)::numeric(19, 6)               as amount,
    coalesce(t.principal_portion_derived, 0)::numeric(19, 6) as principal_portion,
    coalesce(t.interest_portion_derived, 0)::numeric(19, 6)  as interest_portion,
    coalesce(t.fee_charges_portion_derived, 0)::numeric(19, 6) as fee_charges_portion,
    coalesce(t.penalty_charges_portion_derived, 0)::numeric(19, 6) as penalty_charges_portion,
    coalesce(t.overpayment_portion_derived, 0)::numeric(19, 6) as overpayment_portion,
    t.outstanding_loan_balance_derived::numeric(19, 6)  as outstanding_loan_balance,
    t.submitted_on_date::date                           as submitted_on_date,
    t.reversed_on_date::date                            as reversed_on_date,
    t.created_on_utc::timestamptz                       as created_on_utc,
    t.last_modified_on_utc::timestamptz                 as last_modified_on_utc,
    t._extracted_at                                     as extracted_at
from {{ source('fineract', 'm_loan_transaction') }} t
left join {{ ref('fineract_enum_labels') }} tt
    on tt.enum_name = 'loan_transaction_type' and tt.enum_code = t.transaction_type_enum
where not t._deleted
