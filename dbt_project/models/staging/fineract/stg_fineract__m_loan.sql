-- Loans (one row per loan account), enum codes turned into labels.
select
    l.id::bigint                                    as loan_id,
    l.account_no::text                              as loan_account_no,
    l.client_id::bigint                             as client_id,
    l.group_id::bigint                              as group_id,
    l.product_id::bigint                            as product_id,
    l.loan_officer_id::bigint                       as loan_officer_id,
    l.loanpurpose_cv_id::bigint                     as loan_purpose_cv_id,
    l.loan_status_id::int                           as loan_status_code,
    coalesce(ls.enum_value, 'unknown_' || l.loan_status_id::text) as loan_status,
    l.loan_type_enum::int                           as loan_type_code,
    lt.enum_value                                   as loan_type,
    l.currency_code::text                           as currency_code,
    l.principal_amount_proposed::numeric(19, 6)     as principal_proposed,
    l.principal_amount::numeric(19, 6)              as principal_amount,
    l.approved_principal::numeric(19, 6)            as principal_approved,
    l.annual_nominal_interest_rate::numeric(19, 6)  as annual_nominal_interest_rate,
    l.term_frequency::int                           as term_frequency,
    l.term_period_frequency_enum::int               as term_period_frequency_code,
    tf.enum_value                                   as term_period_frequency,
    l.repay_every::int                              as repay_every,
    l.repayment_period_frequency_enum::int          as repayment_frequency_code,
    rf.enum_value                                   as repayment_frequency,
    l.number_of_repayments::int                     as number_of_repayments,
    l.submittedon_date::date                        as submitted_on_date,
    l.approvedon_date::date                         as approved_on_date,
    l.expected_disbursedon_date::date               as expected_disbursed_on_date,
    l.disbursedon_date::date                        as disbursed_on_date,
    l.expected_maturedon_date::date                 as expected_matured_on_date,
    l.maturedon_date::date                          as matured_on_date,
    l.closedon_date::date                           as closed_on_date,
    l.rejectedon_date::date                         as rejected_on_date,
    l.withdrawnon_date::date                        as withdrawn_on_date,
    l.writtenoffon_date::date                       as written_off_on_date,
    l.loan_counter::int                             as loan_counter,
    l.loan_product_counter::int                     as loan_product_counter,
    l.principal_disbursed_derived::numeric(19, 6)   as principal_disbursed_derived,
    l.principal_repaid_derived::numeric(19, 6)      as principal_repaid_derived,
    l.principal_writtenoff_derived::numeric(19, 6)  as principal_written_off_derived,
    l.principal_outstanding_derived::numeric(19, 6) as principal_outstanding_derived,
    l.interest_charged_derived::numeric(19, 6)      as interest_charged_derived,
    l.interest_repaid_derived::numeric(19, 6)       as interest_repaid_derived,
    l.interest_outstanding_derived::numeric(19, 6)  as interest_outstanding_derived,
    l.total_outstanding_derived::numeric(19, 6)     as total_outstanding_derived,
    l.created_on_utc::timestamptz                   as created_on_utc,
    l.last_modified_on_utc::timestamptz             as last_modified_on_utc,
    l._extracted_at                                 as extracted_at
from {{ source('fineract', 'm_loan') }} l
left join {{ ref('fineract_enum_labels') }} ls
    on ls.enum_name = 'loan_status' and ls.enum_code = l.loan_status_id
left join {{ ref('fineract_enum_labels') }} lt
    on lt.enum_name = 'loan_type' and lt.enum_code = l.loan_type_enum
left join {{ ref('fineract_enum_labels') }} tf
    on tf.enum_name = 'period_frequency' and tf.enum_code = l.term_period_frequency_enum
left join {{ ref('fineract_enum_labels') }} rf
    on rf.enum_name = 'period_frequency' and rf.enum_code = l.repayment_period_frequency_enum
where not l._deleted
