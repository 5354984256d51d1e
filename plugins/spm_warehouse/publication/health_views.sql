-- The data-health views that publish creates inside every build (publication/health.py).
-- They travel with their build through every rename, so `publication_info` always describes the
-- data next to it. Views run with their owner's rights: BI roles read them without any access to
-- meta, and they expose run ids, dates, counts and statuses only.
-- Placeholders (psycopg sql.SQL.format): {publication_info}, {data_health_runs}, {data_health_checks},
-- {data_health_quarantine}, {build_id}, {stale_after_days} (SPM_PUBLICATION_STALE_DAYS).

CREATE VIEW {publication_info} AS
SELECT p.build_id,
       p.as_of_date,
       p.published_at,
       p.row_counts,
       p.check_summary,
       (SELECT max(l.published_at) FROM meta.publications l WHERE l.build_id = p.build_id) AS live_since,
       (p.watermarks ->> 'mis')::timestamptz AS mis_data_until,
       (p.watermarks ->> 'surveys')::timestamptz AS surveys_data_until,
       p.run_id,
       current_date - p.as_of_date AS data_age_days,
       p.published_at::date - p.as_of_date AS as_of_lag_at_publication_days,
       {stale_after_days}::integer AS stale_after_days,
       (current_date - p.as_of_date > {stale_after_days}) AS is_stale,
       CASE WHEN current_date - p.as_of_date > {stale_after_days}
            THEN 'STALE: the figures are as of ' || p.as_of_date || ', ' || (current_date - p.as_of_date)
                 || ' days ago (published ' || to_char(p.published_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')
                 || ', limit ' || {stale_after_days} || ' days)'
            ELSE 'Fresh: the figures are as of ' || p.as_of_date || ', ' || (current_date - p.as_of_date)
                 || ' days ago'
       END AS freshness
FROM meta.publications p
WHERE p.build_id = {build_id} AND p.action = 'publish';

COMMENT ON VIEW {publication_info} IS
    'What BI is looking at and how fresh it is (build, as-of date, publication time, row counts, checks, '
    'whether the as-of date is older than SPM_PUBLICATION_STALE_DAYS today)';

-- Every run the gate judged, and runs that loaded data but never reached the gate ("incomplete").
CREATE VIEW {data_health_runs} AS
WITH runs AS (
    SELECT g.run_id, g.as_of_date, g.passed, g.checks_passed, g.checks_failed, g.checks_warned,
           g.finished_at AS checked_at
    FROM meta.gate_runs g
    UNION ALL
    SELECT m.run_id, max(m.as_of), NULL::boolean, NULL::integer, NULL::integer, NULL::integer, max(m.finished_at)
    FROM meta.load_manifest m
    WHERE NOT EXISTS (SELECT 1 FROM meta.gate_runs g WHERE g.run_id = m.run_id)
    GROUP BY m.run_id
)
SELECT r.run_id,
       r.as_of_date,
       p.published_at,
       CASE WHEN p.published_at IS NOT NULL THEN 'published'
            WHEN r.passed THEN 'passed'
            WHEN r.passed IS NULL THEN 'incomplete'
            ELSE 'blocked' END::text AS status,
       r.checks_passed,
       r.checks_failed,
       r.checks_warned,
       coalesce(q.n, 0)::bigint AS quarantine_rows,
       r.checked_at
FROM runs r
LEFT JOIN LATERAL (
    SELECT max(x.published_at) AS published_at FROM meta.publications x
    WHERE x.run_id = r.run_id AND x.action = 'publish') p ON true
LEFT JOIN (SELECT run_id, count(*) AS n FROM meta.quarantine GROUP BY run_id) q ON q.run_id = r.run_id;

COMMENT ON VIEW {data_health_runs} IS
    'Every nightly run: as-of date, gate verdict counts, quarantined rows, when it was published';

-- Every check of every run that did not pass: which check, whether it blocks, and the gate's own message.
CREATE VIEW {data_health_checks} AS
SELECT c.run_id,
       g.as_of_date,
       c.check_name,
       c.kind,
       c.status,
       c.blocking,
       c.message,
       c.checked_at
FROM meta.check_results c
LEFT JOIN meta.gate_runs g ON g.run_id = c.run_id
WHERE c.status <> 'pass';

COMMENT ON VIEW {data_health_checks} IS
    'Checks that warned or failed, per run: name, kind, blocking or not, and why (the gate message)';

-- Quarantined input per run, source and reason code. The reason code is the text before the first ':'
-- (the rest names the rejected value, e.g. an account number, which BI must not read).
CREATE VIEW {data_health_quarantine} AS
SELECT q.run_id,
       g.as_of_date,
       coalesce(q.source, 'unknown') AS source,
       coalesce(nullif(btrim(split_part(q.reason, ':', 1)), ''), 'no reason recorded') AS reason,
       count(*)::bigint AS quarantined_rows,
       min(q.detected_at) AS first_detected_at
FROM meta.quarantine q
LEFT JOIN meta.gate_runs g ON g.run_id = q.run_id
GROUP BY q.run_id, g.as_of_date, coalesce(q.source, 'unknown'),
         coalesce(nullif(btrim(split_part(q.reason, ':', 1)), ''), 'no reason recorded');

COMMENT ON VIEW {data_health_quarantine} IS
    'Quarantined rows per run, source and reason code (never the rejected values themselves)';
