"""Apply the SPM set-up inside Superset: admin, assets, branch roles, users, preflight.

Runs with Superset's own interpreter (.venv-superset/bin/python), started by
`dashboards.server.apply_setup`, which writes a JSON spec on stdin
(stdin, not argv or a file: it carries passwords). One process does all steps
because each Superset start costs seconds.

Spec keys (all optional):
  admin:     {"username", "password"}          create, or reset the password
  bundle:    "/path/to/bundle.zip"             import every asset, overwriting
  prune:     {"dashboards": [uuid], "charts": [uuid], "datasets": [uuid]}
                                               delete assets an earlier import made that the repo dropped
  access:    see dashboards.access.access_spec
  users:     [{"username", "password", "first_name", "last_name", "email", "roles": [..]}]
  preflight: "analytics.kpi_branch_month"      query it through the warehouse connection

Prints one line `SPM_RESULT {json}` with what was done. Standard library +
Superset only: this file must not import the project package. Superset's own
modules are imported inside the functions, after the app exists (`superset`
modules need an app context at import time).
"""

from __future__ import annotations

import json
import sys
import zipfile

from werkzeug.security import check_password_hash

ADMIN_ROLE = "Admin"
VIEWER_ROLE = "Gamma"


def ensure_user(sm, username: str, password: str, roles: list, first: str, last: str, email: str) -> str:
    user = sm.find_user(username=username)
    if user is None:
        created = sm.add_user(username, first, last, email, roles, password=password)
        if not created:
            raise SystemExit(f"could not create Superset user {username!r} (is the e-mail {email!r} taken?)")
        return "created"
    changed = False
    for role in roles:
        if role not in user.roles:
            user.roles.append(role)
            changed = True
    if password and not check_password_hash(user.password or "", password):
        sm.reset_password(user.id, password)
        changed = True
    if changed:
        sm.update_user(user)
    return "updated" if changed else "unchanged"


def import_bundle(path: str, admin_name: str) -> None:
    from superset import db
    from superset import security_manager as sm
    from superset.commands.importers.v1.assets import ImportAssetsCommand
    from superset.commands.importers.v1.utils import get_contents_from_bundle
    from superset.utils.core import override_user

    with zipfile.ZipFile(path) as bundle:
        contents = get_contents_from_bundle(bundle)
    with override_user(sm.find_user(username=admin_name)):
        ImportAssetsCommand(contents).run()
    db.session.commit()


def asset_counts() -> dict:
    from superset import db
    from superset.connectors.sqla.models import SqlaTable
    from superset.models.dashboard import Dashboard
    from superset.models.slice import Slice

    return {
        "dashboards": db.session.query(Dashboard).count(),
        "charts": db.session.query(Slice).count(),
        "datasets": db.session.query(SqlaTable).count(),
    }


def prune(uuids: dict, admin_name: str) -> dict:
    """Delete dashboards, then charts, then datasets (dependants first) by uuid."""
    from superset import db
    from superset import security_manager as sm
    from superset.commands.chart.delete import DeleteChartCommand
    from superset.commands.dashboard.delete import DeleteDashboardCommand
    from superset.commands.dataset.delete import DeleteDatasetCommand
    from superset.connectors.sqla.models import SqlaTable
    from superset.models.dashboard import Dashboard
    from superset.models.slice import Slice
    from superset.utils.core import override_user

    removed = {}
    steps = (("dashboards", Dashboard, DeleteDashboardCommand), ("charts", Slice, DeleteChartCommand),
             ("datasets", SqlaTable, DeleteDatasetCommand))
    with override_user(sm.find_user(username=admin_name)):
        for kind, model, command in steps:
            wanted = uuids.get(kind) or []
            ids = [obj.id for obj in db.session.query(model).all() if str(obj.uuid) in wanted]
            if ids:
                command(ids).run()
            removed[kind] = len(ids)
    db.session.commit()
    return removed


def apply_access(spec: dict) -> dict:
    """Branch roles: RLS filter first, then dataset read access, one commit.

    Roles that left the config lose their dataset access before their filter
    is deleted, so no role ever holds data access without its branch filter.
    """
    from superset import db
    from superset import security_manager as sm
    from superset.connectors.sqla.models import RowLevelSecurityFilter, SqlaTable
    from superset.utils.core import RowLevelSecurityFilterType

    datasets = db.session.query(SqlaTable).filter(SqlaTable.uuid.in_(spec["dataset_uuids"])).all()
    by_uuid = {str(ds.uuid): ds for ds in datasets}
    missing = sorted(set(spec["dataset_uuids"]) - set(by_uuid))
    if missing:
        raise SystemExit(f"datasets not imported yet: {missing}; import the bundle first")
    keyed = [by_uuid[u] for u in spec["branch_keyed_dataset_uuids"]]
    perm_views = [sm.add_permission_view_menu("datasource_access", ds.get_perm()) for ds in datasets]
    wanted = {r["filter_name"]: r for r in spec["roles"]}

    removed = []
    for flt in db.session.query(RowLevelSecurityFilter).filter(
        RowLevelSecurityFilter.name.startswith(spec["filter_prefix"])
    ):
        if flt.name in wanted:
            continue
        for role in flt.roles:
            role.permissions = [pv for pv in role.permissions if pv not in perm_views]
        removed.append(flt.name)
        db.session.delete(flt)

    applied = []
    for name, r in wanted.items():
        role = sm.find_role(r["name"]) or sm.add_role(r["name"])
        flt = db.session.query(RowLevelSecurityFilter).filter_by(name=name).one_or_none()
        if flt is None:
            flt = RowLevelSecurityFilter(name=name)
            db.session.add(flt)
        flt.filter_type = RowLevelSecurityFilterType.REGULAR.value
        flt.clause = r["clause"]
        flt.group_key = "branch"
        flt.description = (r.get("description") or "") + " [managed by spm_warehouse: branch_access.yaml]"
        flt.roles = [role]
        flt.tables = keyed
        db.session.flush()
        for pv in perm_views:
            if pv not in role.permissions:
                role.permissions.append(pv)
        applied.append({"role": r["name"], "clause": r["clause"], "datasets_filtered": len(keyed)})
    db.session.commit()
    return {"applied": applied, "removed": removed}


def preflight(table: str) -> dict:
    """Read one row through Superset's own warehouse connection (bi_reader)."""
    from sqlalchemy import text
    from superset import db
    from superset.models.core import Database

    database = db.session.query(Database).filter_by(database_name="SPM warehouse").one_or_none()
    if database is None:
        return {"ok": False, "error": "database 'SPM warehouse' is not imported"}
    try:
        with database.get_sqla_engine() as engine, engine.connect() as conn:
            conn.execute(text(f"SELECT 1 FROM {table} LIMIT 1")).fetchall()  # table: fixed by our launcher
    except Exception as exc:  # noqa: BLE001 - reported to the user as a warning
        return {"ok": False, "error": str(exc).splitlines()[0]}
    return {"ok": True}


def main() -> int:
    spec = json.loads(sys.stdin.read() or "{}")
    from superset.app import create_app

    app = create_app()
    result: dict = {}
    with app.app_context():
        from superset import security_manager as sm

        admin = spec.get("admin")
        if admin:
            result["admin"] = ensure_user(
                sm, admin["username"], admin["password"], [sm.find_role(ADMIN_ROLE)],
                "Superset", "Admin", admin.get("email") or f"{admin['username']}@localhost",
            )
        admin_name = admin["username"] if admin else "admin"
        if spec.get("bundle"):
            import_bundle(spec["bundle"], admin_name)
        if spec.get("prune"):
            result["pruned"] = prune(spec["prune"], admin_name)
        if spec.get("bundle"):
            result["imported"] = asset_counts()
        if spec.get("access") is not None:
            result["access"] = apply_access(spec["access"])
        for user in spec.get("users") or []:
            roles = [sm.find_role(VIEWER_ROLE)]
            for name in user.get("roles") or []:
                role = sm.find_role(name)
                if role is None:
                    raise SystemExit(f"role {name!r} does not exist; add it to branch_access.yaml and run the setup")
                roles.append(role)
            result.setdefault("users", {})[user["username"]] = ensure_user(
                sm, user["username"], user["password"], roles,
                user.get("first_name") or user["username"], user.get("last_name") or "-",
                user.get("email") or f"{user['username']}@localhost",
            )
        if spec.get("preflight"):
            result["preflight"] = preflight(spec["preflight"])
    print("SPM_RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
