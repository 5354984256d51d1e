{#-
  Loan balances per period, as the KPI contract defines them.

  core_loan_balance_rows(scope_sql, stored_relation) returns one SELECT giving,
  for every loan of `scope_sql` (columns loan_id, from_month), one row per
  period month from from_month on while the loan "lives" (from the month of its
  first disbursement to the month in which its outstanding principal becomes 0
  for good, or the as-of month). With stored_relation (the incremental table),
  months that the table holds for the loan but that are no longer in its life
  are returned too, with in_life = false, so that delete+insert overwrites them
  and the model's post-hook removes them.

  Rules (docs/kpi-contract.md): reversed transactions never exist;
  disbursed by D = sum(amount) of type 1; repaid by D = sum(principal portion)
  of types 2 and 5; outstanding = 0 before the first disbursement and from the
  write-off (writtenoffon_date or a type 6 transaction) on, else
  max(0, disbursed - repaid). Days in arrears: first installment k (by number)
  whose cumulative principal C_k exceeds repaid + arrears_tolerance; if its due
  date is before D, D - due date, else 0.

  Everything is set-based: two window passes find, for every loan-month, the
  first unpaid installment and the schedule prefix, instead of a join of every
  month with every installment.

  next_due_date (on the loan's last row in life only, else null): the earliest
  installment due on or after the row's period_end. Until that date passes, the
  row's schedule prefix cannot change, which lets a nightly run roll the row
  forward (core_loan_balance_rollforward) without reading the loan's schedule.
  The last row in life is always among the rows generated for a loan in scope
  (gen_from never passes it), so a nightly recompute keeps it exact.
-#}

{% macro core_loan_balance_rows(scope_sql, stored_relation=none) %}
with scope_raw as (
    {{ scope_sql }}
)

, loan_scope as (
    select loan_id, min(from_month) as from_month
    from scope_raw
    where loan_id is not null and from_month is not null
    group by loan_id
)

, txn as (
    select t.loan_id, t.transaction_date, t.transaction_type_code, t.amount, t.principal_portion
    from {{ ref('int_loan__known_transactions') }} t
    join loan_scope s on s.loan_id = t.loan_id
    where t.transaction_type_code in (1, 2, 5, 6)
)

, txn_facts as (
    select
        loan_id,
        min(transaction_date) filter (where transaction_type_code = 1)          as first_disbursed_on,
        min(transaction_date) filter (where transaction_type_code = 6)          as first_write_off_txn_on,
        coalesce(sum(amount) filter (where transaction_type_code = 1), 0)
          - coalesce(sum(principal_portion) filter (where transaction_type_code in (2, 5)), 0) as final_balance,
        max(transaction_date)                                                   as last_transaction_date
    from txn
    group by loan_id
)

, life as (
    select
        s.loan_id,
        s.from_month,
        k.loan_id is not null                                                   as is_known,
        k.written_off_on_date                                                   as source_written_off_on,
        f.first_disbursed_on,
        least(k.written_off_on_date, f.first_write_off_txn_on)                 as written_off_on,
        {{ core_period_month('f.first_disbursed_on') }}                         as life_start_month,
        case
            when k.loan_id is null or f.first_disbursed_on is null then null
            when least(k.written_off_on_date, f.first_write_off_txn_on) is not null
                then {{ core_period_month('greatest(least(k.written_off_on_date, f.first_write_off_txn_on), f.first_disbursed_on)') }}
            when f.final_balance > 0 then {{ core_as_of_month() }}
            else {{ core_period_month('f.last_transaction_date') }}
        end                                                                     as life_end_month
    from loan_scope s
    left join {{ ref('int_loan__known_loans') }} k on k.loan_id = s.loan_id
    left join txn_facts f on f.loan_id = s.loan_id
)

{% if stored_relation is not none %}
, stored as (
    select b.loan_id, min(b.period_month) as stored_min_month, max(b.period_month) as stored_max_month
    from {{ stored_relation }} b
    join loan_scope s on s.loan_id = b.loan_id
    group by b.loan_id
)
{% endif %}

{%- set stored_min = 'st.stored_min_month' if stored_relation is not none else 'null::date' -%}
{%- set stored_max = 'st.stored_max_month' if stored_relation is not none else 'null::date' %}
, bounds as (
    select
        l.*,
        -- least/greatest ignore nulls: a loan without stored rows spans its life only
        -- (both null: nothing to write for this loan)
        case when coalesce(l.life_start_month, {{ stored_min }}) is not null
             then least(greatest(l.from_month, least(l.life_start_month, {{ stored_min }})),
                        least(l.life_end_month, {{ core_as_of_month() }})) end                  as gen_from,
        case when coalesce(l.life_end_month, {{ stored_max }}) is not null
             then least(greatest(l.life_end_month, {{ stored_max }}), {{ core_as_of_month() }}) end as gen_to
    from life l
    {% if stored_relation is not none %}left join stored st on st.loan_id = l.loan_id{% endif %}
)

, months as (
    select
        b.loan_id,
        gs::date                                                                as period_month,
        coalesce(gs::date between b.life_start_month and b.life_end_month, false) as in_life
    from bounds b
    cross join lateral generate_series(b.gen_from, b.gen_to, interval '1 month') as gs
    where b.gen_from is not null and b.gen_to is not null
)

, txn_month as (
    select
        loan_id,
        {{ core_period_month('transaction_date') }}                              as txn_month,
        coalesce(sum(amount) filter (where transaction_type_code = 1), 0)        as disbursed,
        coalesce(sum(principal_portion) filter (where transaction_type_code in (2, 5)), 0) as repaid
    from txn
    group by 1, 2
)

-- principal moved before the first generated month (the months before are not recomputed)
, base as (
    select b.loan_id, sum(tm.disbursed) as disbursed, sum(tm.repaid) as repaid
    from bounds b
    join txn_month tm on tm.loan_id = b.loan_id and tm.txn_month < b.gen_from
    group by b.loan_id
)

, cumulative as (
    select
        m.loan_id,
        m.period_month,
        {{ core_period_end('m.period_month') }}                                  as period_end,
        m.in_life,
        l.first_disbursed_on,
        l.written_off_on,
        l.source_written_off_on,
        coalesce(bs.disbursed, 0) + sum(coalesce(tm.disbursed, 0)) over w        as principal_disbursed_to_date,
        coalesce(bs.repaid, 0) + sum(coalesce(tm.repaid, 0)) over w              as principal_repaid_to_date
    from months m
    join life l on l.loan_id = m.loan_id
    left join txn_month tm on tm.loan_id = m.loan_id and tm.txn_month = m.period_month
    left join base bs on bs.loan_id = m.loan_id
    window w as (partition by m.loan_id order by m.period_month rows between unbounded preceding and current row)
)

, balances as (
    select
        c.*,
        (case
            when c.first_disbursed_on is null or c.first_disbursed_on > c.period_end then 0
            when c.written_off_on <= c.period_end then 0
            else greatest(0, c.principal_disbursed_to_date - c.principal_repaid_to_date)
        end)::numeric(19, 6)                                                     as outstanding_principal
    from cumulative c
)

, schedule as (
    {{ core_schedule_cumulative('loan_scope') }}
)

-- First unpaid installment: in descending order of amount, the smallest installment
-- seen so far among those whose cumulative principal exceeds repaid + tolerance
-- (at equal amounts the month row sorts first, so C_k = repaid + tolerance is paid).
, arrears_stream as (
    select loan_id, period_month, (principal_repaid_to_date + {{ var('arrears_tolerance') }})::numeric as amount_key,
           0 as kind, null::bigint as installment_seq
    from balances
    where outstanding_principal > 0
    union all
    select loan_id, null::date, cumulative_principal_due, 1, installment_seq
    from schedule
)

, first_unpaid as (
    select loan_id, period_month, first_unpaid_seq
    from (
        select
            loan_id, period_month, kind,
            min(installment_seq) over (
                partition by loan_id order by amount_key desc, kind
                rows between unbounded preceding and current row
            ) as first_unpaid_seq
        from arrears_stream
    ) x
    where kind = 0
)

, prefix as (
    {{ core_schedule_prefix('balances', 'schedule') }}
)

-- the loan's last row in life: the earliest installment due on or after its period_end
, next_due as (
    select b.loan_id, b.period_month, min(s.due_date) as next_due_date
    from balances b
    join life l on l.loan_id = b.loan_id and b.period_month = least(l.life_end_month, {{ core_as_of_month() }})
    join schedule s on s.loan_id = b.loan_id and s.due_date >= b.period_end
    group by b.loan_id, b.period_month
)

select
    b.loan_id,
    b.period_month,
    b.period_end,
    b.in_life,
    -- loan-level dates as known at the row's period_end, so that a row not
    -- recomputed tonight still equals what a full rebuild would write
    case when b.first_disbursed_on <= b.period_end then b.first_disbursed_on end    as first_disbursed_on,
    case when b.written_off_on <= b.period_end then b.written_off_on end            as written_off_on,
    case when b.source_written_off_on <= b.period_end then b.source_written_off_on end as source_written_off_on,
    b.principal_disbursed_to_date::numeric(19, 6)                               as principal_disbursed_to_date,
    b.principal_repaid_to_date::numeric(19, 6)                                  as principal_repaid_to_date,
    b.outstanding_principal,
    (case
        when b.outstanding_principal > 0 and s.due_date < b.period_end then b.period_end - s.due_date
        else 0
    end)::int                                                                   as days_in_arrears,
    case when b.outstanding_principal > 0 then s.due_date end                   as first_unpaid_due_date,
    p.schedule_basis_hash,
    nd.next_due_date
from balances b
left join first_unpaid fu on fu.loan_id = b.loan_id and fu.period_month = b.period_month
left join schedule s on s.loan_id = fu.loan_id and s.installment_seq = fu.first_unpaid_seq
left join prefix p on p.loan_id = b.loan_id and p.period_month = b.period_month
left join next_due nd on nd.loan_id = b.loan_id and nd.period_month = b.period_month
{% endmacro %}


{#- Known schedule of the loans in `loans_cte` (column loan_id) with C_k and the prefix fingerprint.
    by_index: select the loans as one array (= any(array(...))), so that their rows are read through the
    index on loan_id. For a small CTE of the night's loans: joined instead, the planner, blind to the
    CTE's size, may hash the whole schedule (at 500k clients a sequential scan of 23.5M rows, 5.7 s of
    the night's int_loan__balance_month, for 19,640 loans). -#}
{% macro core_schedule_cumulative(loans_cte, by_index=false) %}
    select
        s.loan_id,
        s.due_date,
        row_number() over w                                                     as installment_seq,
        sum(s.principal_due) over (w rows between unbounded preceding and current row) as cumulative_principal_due,
        -- fingerprint of installments 1..k: a running sum of 64-bit hashes (O(1) per row,
        -- unlike a growing string); each term names the installment, so order counts
        sum(hashtextextended(s.installment_number::text || ':' || s.due_date::text || ':' || s.principal_due::text, 0)::numeric)
            over (w rows between unbounded preceding and current row)          as prefix_hash
    from {{ ref('int_loan__known_schedule') }} s
    {%- if by_index %}
    where s.loan_id = any(array(select ls.loan_id from {{ loans_cte }} ls))
    {%- else %}
    join {{ loans_cte }} ls on ls.loan_id = s.loan_id
    {%- endif %}
    window w as (partition by s.loan_id order by s.installment_number, s.installment_id)
{% endmacro %}


{#-
  Fingerprint of the schedule that can matter for days in arrears at each row's
  period_end: the installments due before it (due dates rise with the installment
  number in Fineract). Stored with every balance row; a schedule change that
  leaves the fingerprint of a month unchanged cannot change that month.
  rows_cte: loan_id, period_month, period_end; schedule_cte: core_schedule_cumulative.
-#}
{% macro core_schedule_prefix(rows_cte, schedule_cte) %}
    select x.loan_id, x.period_month, coalesce(sc.prefix_hash, 0) as schedule_basis_hash
    from (
        select
            loan_id, period_month, kind,
            max(installment_seq) over (
                partition by loan_id order by key_date, kind
                rows between unbounded preceding and current row
            ) as prefix_seq
        from (
            select loan_id, period_month, period_end as key_date, 0 as kind, null::bigint as installment_seq
            from {{ rows_cte }}
            union all
            select loan_id, null::date, due_date, 1, installment_seq
            from {{ schedule_cte }}
        ) stream
    ) x
    left join {{ schedule_cte }} sc on sc.loan_id = x.loan_id and sc.installment_seq = x.prefix_seq
    where x.kind = 0
{% endmacro %}


{#-
  Balance rows rolled forward from the stored month, for loans none of whose
  inputs changed since the state (see int_loan__balance_month).

  Why: re-ageing a loan from its transactions and schedule reads its whole
  history; a loan whose inputs did not change keeps its amounts, first unpaid
  installment and write-off, and only its period_end moves (and the as-of month
  row appears when the month turns). Days in arrears follow from the stored
  first_unpaid_due_date; the schedule prefix and next_due_date change only for
  loans whose stored next_due_date has passed, and only those loans' schedules
  are read. Equal, row for row, to what core_loan_balance_rows would write
  (test_kpi_incremental.py compares with --full-refresh).

  stored_relation: the incremental table; prev_month: the state's as-of month;
  changed_cte: loans (loan_id, from_month) recomputed in full tonight, which are
  not rolled.
-#}
{% macro core_loan_balance_rollforward(stored_relation, prev_month, changed_cte) %}
with rolled as (
    select b.*
    from {{ stored_relation }} b
    where b.period_month = {{ prev_month }}
      and (b.outstanding_principal > 0 or b.period_end <> {{ core_period_end('b.period_month') }})
      and not exists (
          select 1 from {{ changed_cte }} c
          where c.loan_id = b.loan_id and c.from_month is not null
      )
)

, rows as (
    select
        r.loan_id,
        gs::date                                                                as period_month,
        {{ core_period_end('gs::date') }}                                       as period_end,
        gs::date = {{ core_as_of_month() }} or r.outstanding_principal = 0      as is_last,
        r.first_disbursed_on,
        r.written_off_on,
        r.source_written_off_on,
        r.principal_disbursed_to_date,
        r.principal_repaid_to_date,
        r.outstanding_principal,
        r.first_unpaid_due_date,
        r.schedule_basis_hash,
        r.next_due_date
    from rolled r
    -- a loan still outstanding lives on to the as-of month; one paid off or written off
    -- ended its life in the stored month, whose period_end alone moves
    cross join lateral generate_series(
        r.period_month,
        case when r.outstanding_principal > 0 then {{ core_as_of_month() }} else r.period_month end,
        interval '1 month') as gs
)

-- loans with an installment falling due since the stored period_end: their prefix moves
, due_loans as (
    select distinct loan_id
    from rows
    where next_due_date < period_end
)

, due_rows as (
    select r.loan_id, r.period_month, r.period_end, r.is_last
    from rows r
    join due_loans d on d.loan_id = r.loan_id
)

, schedule as (
    {{ core_schedule_cumulative('due_loans') }}
)

, prefix as (
    {{ core_schedule_prefix('due_rows', 'schedule') }}
)

, next_due as (
    select r.loan_id, r.period_month, min(s.due_date) as next_due_date
    from due_rows r
    join schedule s on s.loan_id = r.loan_id and s.due_date >= r.period_end
    where r.is_last
    group by r.loan_id, r.period_month
)

select
    r.loan_id,
    r.period_month,
    r.period_end,
    true                                                                        as in_life,
    r.first_disbursed_on,
    r.written_off_on,
    r.source_written_off_on,
    r.principal_disbursed_to_date,
    r.principal_repaid_to_date,
    r.outstanding_principal,
    (case
        when r.outstanding_principal > 0 and r.first_unpaid_due_date < r.period_end
            then r.period_end - r.first_unpaid_due_date
        else 0
    end)::int                                                                   as days_in_arrears,
    r.first_unpaid_due_date,
    case when r.next_due_date < r.period_end then p.schedule_basis_hash
         else r.schedule_basis_hash end                                         as schedule_basis_hash,
    case when not r.is_last then null
         when r.next_due_date < r.period_end then nd.next_due_date
         else r.next_due_date end                                               as next_due_date
from rows r
left join prefix p on p.loan_id = r.loan_id and p.period_month = r.period_month
left join next_due nd on nd.loan_id = r.loan_id and nd.period_month = r.period_month
{% endmacro %}
