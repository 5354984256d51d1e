"""Where things live on disk: the project's folders, a run's folders.

Why a module of its own: the build, the gate, the report and the alerts all
name a run's folders; each used to reach into another stage's module for it.
Folders that the operator chooses (SPM_LOCAL_DIR, SPM_REPORTS_DIR, ...) come
from settings; this module only derives from them.
"""

from __future__ import annotations

from pathlib import Path

from spm_warehouse import settings

PROJECT_ROOT = settings.PROJECT_ROOT
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
GX_PROJECT_DIR = PROJECT_ROOT / "expectations"


def run_dir_name(run_id: str) -> str:
    """A folder name for a run id (Airflow's contain ':' and '+')."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)


def dbt_target_dir(run_id: str) -> Path:
    """dbt's target and log folders of one run: <SPM_LOCAL_DIR>/dbt/<run>."""
    return settings.local_dir() / "dbt" / run_dir_name(run_id)


def dbt_parse_cache() -> Path:
    """dbt's partial-parse file, shared by every run so a night does not re-parse the project."""
    return settings.local_dir() / "dbt" / "partial_parse.msgpack"


def run_report_dir(run_id: str, reports_dir: Path | None = None) -> Path:
    """The run report's folder: <SPM_REPORTS_DIR>/<run>."""
    return (reports_dir or settings.reports_dir()) / run_dir_name(run_id)
