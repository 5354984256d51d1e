{{ config(materialized='view') }}
{#-
    fct_loan_transaction as tonight's build wrote it: the current rows of fct_loan_transaction__versions
    (models/marts/history), where the logic and the incremental rules are. The
    rows are kept once, in versions, for every copy of the marts; publish pins
    this view to the version of its night (macros/history.sql).
-#}
{{ history_current_view(ref('fct_loan_transaction__versions')) }}
