"""Branch-manager roles: the config file, its validation and its tie to the warehouse.

Why: a branch manager must see only their branch. Superset reads the
warehouse as one role (bi_reader), so the per-user restriction is Superset's
own row-level security: for each role in branch_access.yaml, a filter
`branch_id IN (...)` on every dataset that has a `branch_id` column, plus read
access to the warehouse datasets. The same mapping exists in the warehouse as
`meta.branch_access(role_name, branch_id)` for direct SQL users; `check_against_warehouse`
refuses a Superset role whose branches differ from the warehouse's mapping of
its `warehouse_role`, so the two policies cannot drift apart silently.

A regional manager's role names `region_ids` (the m_office ids of regions,
the offices directly under the head office): `expand_regions` turns them into
the region's branches (leaf offices, from analytics.dim_branch) before the
filter is written and before the comparison with meta.branch_access, so the
warehouse side lists the same branch ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from dashboards.config import ASSETS_DIR

ALLOWED_ROLE_KEYS = {"name", "warehouse_role", "branch_ids", "region_ids", "description"}
# Superset's built-in roles must never receive a branch filter by mistake.
RESERVED_ROLES = {"Admin", "Alpha", "Gamma", "Public", "granter", "sql_lab"}
ROLE_NAME = re.compile(r"^[A-Za-z0-9 _.:()-]{1,64}$")
RLS_FILTER_PREFIX = "spm branch access: "


class AccessConfigError(ValueError):
    """branch_access.yaml is wrong; the message names the entry and the problem."""


@dataclass(frozen=True)
class BranchRole:
    name: str
    branch_ids: tuple[int, ...]
    warehouse_role: str | None = None
    description: str = ""
    region_ids: tuple[int, ...] = ()

    @property
    def clause(self) -> str:
        """The SQL Superset adds to every query of the role on branch-keyed datasets."""
        if not self.branch_ids:
            raise AccessConfigError(f"role {self.name!r}: its regions were not expanded into branches")
        if len(self.branch_ids) == 1:
            return f"branch_id = {self.branch_ids[0]}"
        return "branch_id IN (" + ", ".join(str(b) for b in self.branch_ids) + ")"

    @property
    def filter_name(self) -> str:
        return RLS_FILTER_PREFIX + self.name


def parse_branch_roles(data: object, where: str = "branch_access.yaml") -> list[BranchRole]:
    """Validate the parsed YAML; every mistake is an AccessConfigError naming the entry."""
    if data is None:
        return []
    if not isinstance(data, dict) or set(data) - {"branch_roles"}:
        raise AccessConfigError(f"{where}: expected a mapping with the single key 'branch_roles'")
    entries = data.get("branch_roles") or []
    if not isinstance(entries, list):
        raise AccessConfigError(f"{where}: 'branch_roles' must be a list")
    roles: list[BranchRole] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries, start=1):
        label = f"{where}: branch_roles entry {i}"
        if not isinstance(entry, dict):
            raise AccessConfigError(f"{label}: expected a mapping")
        unknown = set(entry) - ALLOWED_ROLE_KEYS
        if unknown:
            raise AccessConfigError(f"{label}: unknown key(s) {', '.join(sorted(unknown))}")
        name = entry.get("name")
        if not isinstance(name, str) or not ROLE_NAME.match(name):
            raise AccessConfigError(f"{label}: 'name' must be 1-64 letters, digits, spaces or _.:()-")
        if name in RESERVED_ROLES:
            raise AccessConfigError(f"{label}: {name!r} is a built-in Superset role; choose another name")
        if name in seen:
            raise AccessConfigError(f"{label}: role {name!r} appears twice")
        seen.add(name)
        ids = _id_list(entry, "branch_ids", f"{label} ({name})")
        regions = _id_list(entry, "region_ids", f"{label} ({name})")
        if not ids and not regions:
            raise AccessConfigError(f"{label} ({name}): give 'branch_ids' or 'region_ids' (a non-empty list of "
                                    "positive whole numbers)")
        warehouse_role = entry.get("warehouse_role")
        if warehouse_role is not None and not isinstance(warehouse_role, str):
            raise AccessConfigError(f"{label} ({name}): 'warehouse_role' must be text")
        roles.append(
            BranchRole(
                name=name,
                branch_ids=tuple(sorted(set(ids))),
                warehouse_role=warehouse_role,
                description=str(entry.get("description") or ""),
                region_ids=tuple(sorted(set(regions))),
            )
        )
    return roles


def _id_list(entry: dict, key: str, label: str) -> list[int]:
    ids = entry.get(key)
    if ids is None:
        return []
    if not isinstance(ids, list) or not ids or not all(
            isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in ids):
        raise AccessConfigError(f"{label}: {key!r} must be a non-empty list of positive whole numbers")
    return ids


def region_branches(conn) -> dict[int, set[int]]:
    """region id -> its branches (leaf offices the MIS has) from the published analytics.dim_branch."""
    mapping: dict[int, set[int]] = {}
    for region_id, branch_id in conn.execute(
            """SELECT region_id, branch_id FROM analytics.dim_branch
               WHERE is_leaf AND NOT is_inferred AND region_id IS NOT NULL AND branch_id > 0"""):
        mapping.setdefault(int(region_id), set()).add(int(branch_id))
    return mapping


def expand_regions(roles: list[BranchRole], regions: dict[int, set[int]]) -> list[BranchRole]:
    """Roles with their regions' branches added to branch_ids; a region without branches is an error."""
    out = []
    for role in roles:
        branches = set(role.branch_ids)
        for region in role.region_ids:
            if region not in regions:
                known = ", ".join(map(str, sorted(regions))) or "none"
                raise AccessConfigError(f"role {role.name!r}: region {region} has no branches in "
                                        f"analytics.dim_branch (regions with branches: {known})")
            branches |= regions[region]
        out.append(BranchRole(name=role.name, branch_ids=tuple(sorted(branches)), warehouse_role=role.warehouse_role,
                              description=role.description, region_ids=role.region_ids))
    return out


def load_branch_roles(path: Path) -> list[BranchRole]:
    if not path.is_file():
        raise AccessConfigError(f"{path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise AccessConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_branch_roles(data, where=str(path))


def branch_keyed_datasets(assets_dir: Path = ASSETS_DIR) -> dict[str, str]:
    """uuid -> table name of every dataset with a `branch_id` column (those get the filter)."""
    keyed: dict[str, str] = {}
    for path in sorted((assets_dir / "datasets").rglob("*.yaml")):
        ds = yaml.safe_load(path.read_text(encoding="utf-8"))
        if any(col.get("column_name") == "branch_id" for col in ds.get("columns") or []):
            keyed[str(ds["uuid"])] = ds["table_name"]
    return keyed


def all_datasets(assets_dir: Path = ASSETS_DIR) -> dict[str, str]:
    """uuid -> table name of every dataset of the bundle (branch roles may read them)."""
    found: dict[str, str] = {}
    for path in sorted((assets_dir / "datasets").rglob("*.yaml")):
        ds = yaml.safe_load(path.read_text(encoding="utf-8"))
        found[str(ds["uuid"])] = ds["table_name"]
    return found


def access_spec(roles: list[BranchRole], assets_dir: Path = ASSETS_DIR) -> dict:
    """What the Superset-side script applies (plain JSON-able data)."""
    return {
        "filter_prefix": RLS_FILTER_PREFIX,
        "dataset_uuids": sorted(all_datasets(assets_dir)),
        "branch_keyed_dataset_uuids": sorted(branch_keyed_datasets(assets_dir)),
        "roles": [
            {"name": r.name, "clause": r.clause, "filter_name": r.filter_name, "description": r.description}
            for r in roles
        ],
    }


def warehouse_branch_access(conn) -> dict[str, set[int]] | None:
    """role_name -> branch ids from meta.branch_access; None when the table does not exist.

    `conn` is a psycopg.Connection on the warehouse (an owner, not bi_reader).
    """
    exists = conn.execute("SELECT to_regclass('meta.branch_access') IS NOT NULL").fetchone()[0]
    if not exists:
        return None
    mapping: dict[str, set[int]] = {}
    for role_name, branch_id in conn.execute("SELECT role_name, branch_id FROM meta.branch_access"):
        mapping.setdefault(role_name, set()).add(int(branch_id))
    return mapping


def check_against_warehouse(roles: list[BranchRole], mapping: dict[str, set[int]]) -> list[str]:
    """Problems where a Superset role and its warehouse role disagree (empty: consistent)."""
    problems = []
    for role in roles:
        if role.warehouse_role is None:
            continue
        wanted = mapping.get(role.warehouse_role)
        if wanted is None:
            problems.append(
                f"role {role.name!r}: warehouse role {role.warehouse_role!r} has no row in meta.branch_access"
            )
        elif wanted != set(role.branch_ids):
            problems.append(
                f"role {role.name!r}: branches {sorted(role.branch_ids)} but meta.branch_access gives "
                f"{role.warehouse_role!r} branches {sorted(wanted)}"
            )
    return problems
