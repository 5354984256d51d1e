-- The data-health views that publish creates inside every build (publication/health.py).
-- They travel with their build through every rename, so `publication_info` always describes the
-- data next to it. Views run with their owner's rights: BI roles read them without any access to
-- meta, and they expose run ids, dates, counts and statuses only.
-- Placeholders (psycopg sql.SQL.format): {publication_info}, {data_health_runs}, {build_id}.

CREATE VIEW {publication_info} AS
SELECT p.build_id,
       p.as_of_date,
       p.published_at,
       p.row_counts,
       p.check_summary,
       (SELECT max(l.published_at) FROM meta.publications l WHERE l.build_id = p.build_id) AS live_since,
       (p.watermarks ->> 'mis')::timestamptz AS mis_data_until,
       (p.watermarks ->> 'surveys')::timestamptz AS surveys_data_until,
       p.run_id
FROM meta.publications p
WHERE p.build_id = {build_id} AND p.action = 'publish';

COMMENT ON VIEW {publication_info} IS
    'What BI is looking at and how fresh it is (build, as-of date, publication time, row counts, checks)';

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
