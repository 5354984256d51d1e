"""One idempotent set-up of Superset for the warehouse: what `make dashboards` runs before serving.

Steps: venv from the lock -> metadata DB (db upgrade, init) -> admin from the
settings -> import bundle built from assets/ with the bi_reader URI, the
reporting currency and the branch colours -> branch
roles and RLS filters from branch_access.yaml (checked against the
warehouse's meta.branch_access) -> a preflight read of the published marts.
Every step can run again: the import overwrites by uuid, roles and filters are
upserted by name, and assets an earlier import made that the repository no
longer has are deleted (never assets people made by hand in Superset).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dashboards import access, bundle, config, import_values, install, server
from spm_warehouse import settings

PREFLIGHT_TABLE = "analytics.kpi_branch_month"
IMPORTED_FILE = "imported_assets.json"


class ProvisionError(RuntimeError):
    """A set-up problem the user must act on."""


@dataclass
class NewUser:
    """A Superset user to create (normally admins do this in the UI)."""

    username: str
    password: str
    roles: list[str] = field(default_factory=list)
    email: str = ""

    def spec(self) -> dict:
        return {"username": self.username, "password": self.password, "roles": self.roles, "email": self.email}


def expand_region_roles(roles: list[access.BranchRole]) -> list[access.BranchRole]:
    """Regional managers' roles get their regions' branches (read from the published analytics.dim_branch)."""
    if not any(r.region_ids for r in roles):
        return roles
    names = ", ".join(repr(r.name) for r in roles if r.region_ids)
    try:
        import psycopg
    except ImportError:
        raise ProvisionError(f"role(s) {names} name region_ids, but psycopg is missing to read their branches") from None
    try:
        with psycopg.connect(settings.connection("warehouse").libpq_url(), connect_timeout=10) as conn:
            regions = access.region_branches(conn)
    except psycopg.Error as exc:
        raise ProvisionError(f"role(s) {names} name region_ids, but analytics.dim_branch is not readable "
                             f"({str(exc).splitlines()[0]}); build and publish the warehouse first") from None
    return access.expand_regions(roles, regions)


def check_branch_roles(roles: list[access.BranchRole]) -> str:
    """Compare with meta.branch_access in the warehouse; raise on disagreement, return a status line."""
    if not any(r.warehouse_role for r in roles):
        return "no branch role names a warehouse_role: nothing to compare"
    try:
        import psycopg  # optional here: this module also runs in Superset's own virtual environment
    except ImportError:
        return "psycopg is not installed in this interpreter: meta.branch_access not compared"
    try:
        with psycopg.connect(settings.connection("warehouse").libpq_url(), connect_timeout=10) as conn:
            mapping = access.warehouse_branch_access(conn)
    except psycopg.Error as exc:
        return f"warehouse not reachable with the owner connection ({str(exc).splitlines()[0]}): not compared"
    if mapping is None:
        return "meta.branch_access does not exist yet: not compared"
    problems = access.check_against_warehouse(roles, mapping)
    if problems:
        raise ProvisionError("branch_access.yaml disagrees with the warehouse's meta.branch_access:\n- "
                             + "\n- ".join(problems))
    return "branch roles agree with meta.branch_access"


def provision(p: config.SupersetPaths, *, do_install: bool = True, access_file: Path | None = None,
              users: list[NewUser] | None = None) -> dict:
    """Bring Superset at `p` to the state the repository describes; return a summary."""
    if do_install:
        install.ensure_venv(p)
    elif not p.superset.is_file():
        raise ProvisionError(f"Superset is not installed in {p.venv}; run without --no-install")
    server.migrate_and_init(p)

    roles = expand_region_roles(access.load_branch_roles(access_file or config.branch_access_file()))
    summary: dict = {"branch_check": check_branch_roles(roles)}

    zip_path = p.home / "import_bundle.zip"
    values = import_values.import_values()
    summary["import_values"] = values.notes
    bundle.write_bundle(zip_path, config.warehouse_placeholders(), **values.bundle_kwargs())
    current = bundle.asset_uuids()
    spec = {
        "admin": {"username": config.admin_user(), "password": config.admin_password(p.home)},
        "bundle": str(zip_path),
        "prune": stale_assets(p, current),
        "access": access.access_spec(roles),
        "users": [u.spec() for u in users or []],
        "preflight": PREFLIGHT_TABLE,
    }
    try:
        summary.update(server.apply_setup(p, spec))
    finally:
        zip_path.unlink(missing_ok=True)  # it holds the warehouse password
    (p.home / IMPORTED_FILE).write_text(json.dumps(current, indent=1) + "\n")
    return summary


def stale_assets(p: config.SupersetPaths, current: dict[str, list[str]]) -> dict[str, list[str]]:
    """Assets the previous import made that the repository no longer has (to delete).

    Only uuids recorded by our own earlier import are candidates: dashboards
    people built by hand in Superset are never touched.
    """
    try:
        previous = json.loads((p.home / IMPORTED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {kind: sorted(set(previous.get(kind, [])) - set(current.get(kind, []))) for kind in current}


def add_users(p: config.SupersetPaths, users: list[NewUser]) -> dict:
    """Create or update users only (Gamma + the given roles)."""
    return server.apply_setup(p, {"users": [u.spec() for u in users]})
