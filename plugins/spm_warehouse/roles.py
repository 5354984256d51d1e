"""Who may read what: the bi_reader role and optional branch row-level security.

bi_reader (created by the project; password from SPM_BI_READER_PASSWORD when set)
gets USAGE on the published schema and SELECT on everything in it - nothing
else: not raw_mis, raw_kobo, staging, intermediate, reference, meta,
analytics_build or analytics_prev. Because publish swaps in a new schema every
night, the grants live on the schema objects and are re-applied by publish
(and rollback) inside the swap transaction: BI never sees a published schema
it cannot read.

Branch row-level security (optional, SPM_BRANCH_RLS=true): a branch manager's
PostgreSQL login role, listed in meta.branch_access(role_name, branch_id) and
member of the group role bi_branch_reader, sees only the rows of its branches
in every published table that has a branch_id column. The policies are plain
PostgreSQL RLS policies with the branch ids written in (no lookup at query
time, so branch roles need no access to meta); they are re-created at every
publish and rollback, and by `apply_published_access` after a change of
meta.branch_access. Tables without branch_id are given to branch roles only
when they hold no client or loan rows (dimensions such as dim_product); tables
with client_id or loan_id but no branch_id, views and materialized views stay
out of their reach, because RLS cannot filter them.
The data-health views (data_health_runs, publication_info) carry no branch
data and are readable by both roles.

Real account numbers are not in analytics (it publishes keyed pseudonyms) but
in the restricted schema analytics_restricted (client_account, loan_account),
published with analytics: bi_reader never reads it; branch roles read their
branches' rows of it, under RLS, when SPM_BRANCH_RLS is on
(`apply_restricted_access`).

Roles are cluster-wide in PostgreSQL; grants and policies are per database.
Superset reads as bi_reader and applies its own per-user branch filters (see
dashboards/access.py); branch roles are for direct SQL users.
"""

from __future__ import annotations

import logging
import time

import psycopg
from psycopg import sql

from spm_warehouse import fact_versions, settings

log = logging.getLogger(__name__)

BI_READER = "bi_reader"
BRANCH_GROUP = "bi_branch_reader"
POLICY_PREFIX = "spm_"
# Views made by publish in the published schema: no branch data, readable by every BI role.
HEALTH_VIEWS = ("data_health_runs", "publication_info", "data_health_checks", "data_health_quarantine")
# Schemas BI roles must never read (besides analytics_build / analytics_prev, added at run time).
PRIVATE_SCHEMAS = ("raw_mis", "raw_kobo", "meta", "staging", "intermediate", "history", "reference", "build")

ROLES_DDL: tuple[str, ...] = (
    "CREATE SCHEMA IF NOT EXISTS meta",
    """CREATE TABLE IF NOT EXISTS meta.branch_access (
        role_name  text   NOT NULL,
        branch_id  bigint NOT NULL,
        granted_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (role_name, branch_id)
    )""",
    """COMMENT ON TABLE meta.branch_access IS
        'Branch row-level security: the PostgreSQL role role_name (member of bi_branch_reader) sees only rows of '
        'these m_office ids in published tables with a branch_id. Applied at publish, rollback and '
        'roles.apply_published_access; effective only with SPM_BRANCH_RLS=true.'""",
)


def branch_rls_enabled() -> bool:
    """The SPM_BRANCH_RLS setting (false when the setting is not declared)."""
    try:
        value = settings.get("SPM_BRANCH_RLS")
    except KeyError:
        return False
    return value.strip().lower() in ("1", "true", "yes", "on")


def _role_exists(conn: psycopg.Connection, role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def _create_role(conn: psycopg.Connection, role: str, login: bool) -> None:
    """CREATE ROLE unless it exists; tolerant of a concurrent creator (roles are cluster-wide)."""
    if _role_exists(conn, role):
        return
    try:
        with conn.transaction():
            conn.execute(sql.SQL("CREATE ROLE {} " + ("LOGIN" if login else "NOLOGIN")).format(sql.Identifier(role)))
    except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
        pass


ROLE_UPDATE_ATTEMPTS = 5


def _alter_role(conn: psycopg.Connection, statement: sql.Composable) -> None:
    """ALTER ROLE, again when another database of the cluster changed the same role at the same moment.

    Why: roles are cluster-wide, and the advisory lock of ensure_bi_roles is per database. Two warehouses
    of one server (several MFIs, or the fault suite's two workers) publishing at once both update
    bi_reader's pg_authid row; the later one waits for the earlier one's commit and then fails with
    "tuple concurrently updated". Each attempt runs in a savepoint, so a failed one leaves the
    publish transaction usable; the next attempt sees the committed row and succeeds.
    """
    for attempt in range(1, ROLE_UPDATE_ATTEMPTS + 1):
        try:
            with conn.transaction():
                conn.execute(statement)
            return
        except psycopg.errors.InternalError_ as exc:
            if "tuple concurrently updated" not in str(exc) or attempt == ROLE_UPDATE_ATTEMPTS:
                raise
            log.info("role %s was changed by another database at the same moment; trying again", BI_READER)
            time.sleep(0.2 * attempt)


def ensure_bi_roles(wh_conn: psycopg.Connection) -> None:
    """Create bi_reader and bi_branch_reader, meta.branch_access, and apply grants to what is published.

    Idempotent; commits when it opened the transaction itself. bi_reader's
    password is set from SPM_BI_READER_PASSWORD every time it is non-empty;
    when the setting is empty the role's password is left as it is (a new
    role then has none: only trust/peer authentication can log it in), so a
    password a DBA set by hand is not wiped by the next night.
    """
    with wh_conn.transaction():
        wh_conn.execute("SELECT pg_advisory_xact_lock(hashtext('spm_warehouse.roles'))")
        for stmt in ROLES_DDL:
            wh_conn.execute(stmt)
        _create_role(wh_conn, BI_READER, login=True)
        _create_role(wh_conn, BRANCH_GROUP, login=False)
        password = settings.get("SPM_BI_READER_PASSWORD")
        if password:
            _alter_role(wh_conn, sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                sql.Identifier(BI_READER), sql.Literal(password)))
        elif not wh_conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (BI_READER,)).fetchone()[0]:
            # only when needed: roles are cluster-wide, and warehouses of one cluster (tests, several
            # MFIs) would otherwise update the same pg_authid row at once ("tuple concurrently updated")
            _alter_role(wh_conn, sql.SQL("ALTER ROLE {} WITH LOGIN").format(sql.Identifier(BI_READER)))
        dbname = wh_conn.info.dbname
        for role in (BI_READER, BRANCH_GROUP):
            wh_conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(dbname), sql.Identifier(role)))
        revoke_private(wh_conn)
        analytics = settings.analytics_schema()
        if _schema_exists(wh_conn, analytics):
            apply_published_access(wh_conn, analytics, prev_schema=analytics + "_prev", policies=False)


def _schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    return conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (schema,)).fetchone()[0]


def revoke_private(conn: psycopg.Connection) -> None:
    """Take back anything BI roles were ever given outside the published schema (defence in depth)."""
    schemas = list(PRIVATE_SCHEMAS) + [settings.build_schema(), settings.analytics_schema() + "_prev",
                                       settings.restricted_build_schema(), settings.restricted_prev_schema()]
    for schema in schemas:
        if not _schema_exists(conn, schema):
            continue
        for role in (BI_READER, BRANCH_GROUP):
            if not _role_exists(conn, role):
                continue
            conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(sql.Identifier(schema), sql.Identifier(role)))
            conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(
                sql.Identifier(schema), sql.Identifier(role)))


def _relations(conn: psycopg.Connection, schema: str) -> list[tuple[str, str, set[str], bool]]:
    """(name, relkind, column names, RLS enabled) of every table, view and materialized view of a schema."""
    rows = conn.execute(
        """SELECT c.relname, c.relkind, coalesce(array_agg(a.attname) FILTER (WHERE a.attnum > 0), '{}'),
                  c.relrowsecurity
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped
           WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
           GROUP BY c.relname, c.relkind, c.relrowsecurity ORDER BY 1""", (schema,)).fetchall()
    return [(name, kind, set(cols), bool(rls)) for name, kind, cols, rls in rows]


def branch_mapping(conn: psycopg.Connection) -> dict[str, list[int]]:
    """role -> branch ids from meta.branch_access, for roles that exist (others are logged and skipped)."""
    if conn.execute("SELECT to_regclass('meta.branch_access') IS NULL").fetchone()[0]:
        return {}
    mapping: dict[str, list[int]] = {}
    for role, branches, exists in conn.execute(
            """SELECT b.role_name, array_agg(b.branch_id ORDER BY b.branch_id),
                      EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = b.role_name)
               FROM meta.branch_access b GROUP BY b.role_name ORDER BY 1""").fetchall():
        if not exists:
            log.warning("meta.branch_access names role %r, which does not exist: skipped", role)
            continue
        mapping[role] = [int(b) for b in branches]
    return mapping


def apply_published_access(conn: psycopg.Connection, schema: str, prev_schema: str | None = None,
                           branch_rls: bool | None = None, policies: bool = True) -> dict:
    """Grants (and, when enabled, branch RLS policies) on the published schema; nothing on prev_schema.

    Called by publish and rollback inside their swap transaction (policies=True:
    the tables are not visible to readers yet, so re-creating policies blocks
    nobody), by ensure_bi_roles (policies=False: grants only, which take no
    table locks, so live readers are never waited for) and by set_branch_access.
    Returns what it did (for the publication record).
    """
    branch_rls = branch_rls_enabled() if branch_rls is None else branch_rls
    done = {"schema": schema, "bi_reader": False, "branch_rls": branch_rls, "rls_tables": [], "branch_roles": []}
    ident = sql.Identifier(schema)
    if prev_schema and _schema_exists(conn, prev_schema):
        for role in (BI_READER, BRANCH_GROUP):
            if _role_exists(conn, role):
                conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(sql.Identifier(prev_schema), sql.Identifier(role)))
                conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(
                    sql.Identifier(prev_schema), sql.Identifier(role)))
    relations = _relations(conn, schema)
    if _role_exists(conn, BI_READER):
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident, sql.Identifier(BI_READER)))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(ident, sql.Identifier(BI_READER)))
        done["bi_reader"] = True
    else:
        log.warning("role %s does not exist: run roles.ensure_bi_roles; %s not granted", BI_READER, schema)

    mapping = branch_mapping(conn) if branch_rls else {}
    group = _role_exists(conn, BRANCH_GROUP)
    if group:
        conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(ident, sql.Identifier(BRANCH_GROUP)))
        if branch_rls:
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident, sql.Identifier(BRANCH_GROUP)))
        else:
            conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(ident, sql.Identifier(BRANCH_GROUP)))
    for name, kind, cols, rls_on in relations:
        table = sql.Identifier(schema, name)
        if kind in ("r", "p") and policies:
            _drop_our_policies(conn, schema, name)
            if branch_rls and "branch_id" in cols:
                conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(table))
                if _role_exists(conn, BI_READER):
                    conn.execute(sql.SQL("CREATE POLICY {} ON {} FOR SELECT TO {} USING (true)").format(
                        sql.Identifier(POLICY_PREFIX + "bi_reader_all"), table, sql.Identifier(BI_READER)))
                for role, branches in mapping.items():
                    conn.execute(sql.SQL("CREATE POLICY {} ON {} FOR SELECT TO {} USING (branch_id = ANY ({}::bigint[]))").format(
                        sql.Identifier((POLICY_PREFIX + "branch_" + role)[:63]), table, sql.Identifier(role),
                        sql.Literal(branches)))
                done["rls_tables"].append(name)
            elif rls_on:
                conn.execute(sql.SQL("ALTER TABLE {} DISABLE ROW LEVEL SECURITY").format(table))
        if branch_rls and group and _branch_readable(name, kind, cols):
            conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(table, sql.Identifier(BRANCH_GROUP)))
    done["rls_tables"] += _apply_fact_versions_access(conn, schema, branch_rls, mapping, group, policies)
    done["branch_roles"] = sorted(mapping)
    if schema == settings.analytics_schema():
        done["restricted_tables"] = apply_restricted_access(conn, branch_rls, mapping, policies)
    return done


def apply_restricted_access(conn: psycopg.Connection, branch_rls: bool, mapping: dict[str, list[int]],
                            policies: bool = True) -> list[str]:
    """The restricted schema (real account numbers): branch roles under RLS only; never bi_reader.

    bi_reader loses anything it was ever given on the restricted schemas. With
    branch RLS on, bi_branch_reader may read the restricted tables that have a
    branch_id, each filtered by the branch policies of meta.branch_access (no
    policy for bi_reader: even a stray grant would show it no row). Without
    branch RLS nobody but the owner reads it. Returns the tables branch roles may read.
    """
    restricted = settings.restricted_schema()
    for schema in (restricted, settings.restricted_prev_schema(), settings.restricted_build_schema()):
        if not _schema_exists(conn, schema):
            continue
        for role in ("PUBLIC", BI_READER) + (() if schema == restricted else (BRANCH_GROUP,)):
            if role != "PUBLIC" and not _role_exists(conn, role):
                continue
            grantee = sql.SQL("PUBLIC") if role == "PUBLIC" else sql.Identifier(role)
            conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(sql.Identifier(schema), grantee))
            conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(sql.Identifier(schema), grantee))
    if not _schema_exists(conn, restricted):
        return []
    group = _role_exists(conn, BRANCH_GROUP)
    ident = sql.Identifier(restricted)
    if group:
        conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(ident, sql.Identifier(BRANCH_GROUP)))
        conn.execute(sql.SQL("{} USAGE ON SCHEMA {} {} {}").format(
            sql.SQL("GRANT" if branch_rls else "REVOKE"), ident, sql.SQL("TO" if branch_rls else "FROM"),
            sql.Identifier(BRANCH_GROUP)))
    readable = []
    for name, kind, cols, _rls_on in _relations(conn, restricted):
        if kind not in ("r", "p"):
            continue
        table = sql.Identifier(restricted, name)
        if policies:
            _drop_our_policies(conn, restricted, name)
            # always on: without a policy for a role, the role sees no row of real account numbers
            conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(table))
            if branch_rls and "branch_id" in cols:
                for role, branches in mapping.items():
                    conn.execute(sql.SQL("CREATE POLICY {} ON {} FOR SELECT TO {} USING (branch_id = ANY ({}::bigint[]))").format(
                        sql.Identifier((POLICY_PREFIX + "branch_" + role)[:63]), table, sql.Identifier(role),
                        sql.Literal(branches)))
        if branch_rls and group and "branch_id" in cols:
            conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(table, sql.Identifier(BRANCH_GROUP)))
            readable.append(name)
    return readable


def _apply_fact_versions_access(conn: psycopg.Connection, schema: str, branch_rls: bool,
                                mapping: dict[str, list[int]], group: bool, policies: bool) -> list[str]:
    """Branch RLS on the published views of the versioned facts (fact_versions.py); returns those views.

    Such a view reads a versions table of the history schema, which holds every
    night's rows. Without branch RLS it reads it with its owner's rights, and BI
    roles get nothing on the history schema. With branch RLS the view runs with
    the reader's rights (security_invoker), and the versions table carries the
    policies: bi_reader and each branch role see only the rows of the published
    version (a branch role: of its branches too), so even a direct read of the
    table shows no other night and no other branch. publish and rollback re-create
    the policies with the version of the publication they make live.
    """
    facts = fact_versions.history_views(conn, schema)
    if not facts:
        return []
    readers = [r for r in (BI_READER, BRANCH_GROUP) if _role_exists(conn, r)]
    history = sql.Identifier(fact_versions.HISTORY_SCHEMA)
    secured = []
    for view, table in facts:
        base = sql.Identifier(fact_versions.HISTORY_SCHEMA, table)
        version = fact_versions.view_version(conn, schema, view)
        under_rls = branch_rls and version is not None and "branch_id" in fact_versions.relation_columns(conn, schema, view)
        if policies:
            # ALTER VIEW locks the view: only inside publish/rollback (or a change of branch access)
            conn.execute(sql.SQL("ALTER VIEW {} SET (security_invoker = {})").format(
                sql.Identifier(schema, view), sql.SQL("true" if under_rls else "false")))
            _drop_our_policies(conn, fact_versions.HISTORY_SCHEMA, table)
            conn.execute(sql.SQL("ALTER TABLE {} {} ROW LEVEL SECURITY").format(
                base, sql.SQL("ENABLE" if under_rls else "DISABLE")))
            if under_rls:
                pinned = fact_versions.pinned_rows(version)
                if BI_READER in readers:
                    conn.execute(sql.SQL("CREATE POLICY {} ON {} FOR SELECT TO {} USING ({})").format(
                        sql.Identifier(POLICY_PREFIX + "bi_reader_all"), base, sql.Identifier(BI_READER), pinned))
                for role, branches in mapping.items():
                    conn.execute(sql.SQL("CREATE POLICY {} ON {} FOR SELECT TO {} USING (branch_id = ANY ({}::bigint[]) AND {})").format(
                        sql.Identifier((POLICY_PREFIX + "branch_" + role)[:63]), base, sql.Identifier(role),
                        sql.Literal(branches), pinned))
        for role in readers:
            conn.execute(sql.SQL("{} SELECT ON {} {} {}").format(
                sql.SQL("GRANT" if under_rls else "REVOKE"), base, sql.SQL("TO" if under_rls else "FROM"),
                sql.Identifier(role)))
        if under_rls:
            if group:
                conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(schema, view),
                                                                        sql.Identifier(BRANCH_GROUP)))
            secured.append(view)
    for role in readers:
        conn.execute(sql.SQL("{} USAGE ON SCHEMA {} {} {}").format(
            sql.SQL("GRANT" if secured else "REVOKE"), history, sql.SQL("TO" if secured else "FROM"),
            sql.Identifier(role)))
    return secured


def _branch_readable(name: str, kind: str, cols: set[str]) -> bool:
    """What a branch role may read: RLS-filtered tables, client/loan-free tables, the health views."""
    if name in HEALTH_VIEWS:
        return True
    if kind not in ("r", "p"):
        return False
    return "branch_id" in cols or not ({"client_id", "loan_id"} & cols)


def _drop_our_policies(conn: psycopg.Connection, schema: str, table: str) -> None:
    for (policy,) in conn.execute(
            """SELECT policyname FROM pg_policies WHERE schemaname = %s AND tablename = %s AND policyname LIKE %s""",
            (schema, table, POLICY_PREFIX + "%")).fetchall():
        conn.execute(sql.SQL("DROP POLICY {} ON {}").format(sql.Identifier(policy), sql.Identifier(schema, table)))


def set_branch_access(conn: psycopg.Connection, role_name: str, branch_ids: list[int],
                      create_login: bool = False, password: str | None = None) -> None:
    """Give a branch manager's role exactly these branches (replaces its rows in meta.branch_access).

    With create_login=True the role is created (LOGIN, optional password) when
    missing. The role is made a member of bi_branch_reader. Policies on the
    published schema are re-created so the change applies at once.
    """
    with conn.transaction():
        for stmt in ROLES_DDL:
            conn.execute(stmt)
        _create_role(conn, BRANCH_GROUP, login=False)
        if create_login:
            _create_role(conn, role_name, login=True)
            if password:
                conn.execute(sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(sql.Identifier(role_name), sql.Literal(password)))
        if not _role_exists(conn, role_name):
            raise LookupError(f"role {role_name!r} does not exist: create it (CREATE ROLE ... LOGIN) or pass create_login=True")
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(BRANCH_GROUP), sql.Identifier(role_name)))
        conn.execute("DELETE FROM meta.branch_access WHERE role_name = %s", (role_name,))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO meta.branch_access (role_name, branch_id) VALUES (%s, %s)",
                            [(role_name, int(b)) for b in sorted(set(branch_ids))])
        analytics = settings.analytics_schema()
        if _schema_exists(conn, analytics):
            apply_published_access(conn, analytics, prev_schema=analytics + "_prev")
