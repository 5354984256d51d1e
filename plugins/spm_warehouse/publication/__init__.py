"""Publication: the atomic swap of an audited build into the schema BI reads, and rollback.

- schemas.py   the schemas of the cycle (build, published, previous, spare), the one
               SchemaState each carries, seeding and pruning the build schema;
- swap.py      `publish(conn, run_id, as_of, verdict)`: one transaction of renames;
- rollback.py  `rollback(conn)`: the previous publication back, the same way;
- locking.py   how both take the live tables without hurting or starving readers;
- health.py    the data-health views created inside each build (health_views.sql).
"""

from spm_warehouse.publication.locking import PublishError
from spm_warehouse.publication.rollback import RollbackUnavailable, rollback
from spm_warehouse.publication.schemas import (
                                               RECYCLED_KEY,
                                               SchemaState,
                                               prune_build_schema,
                                               read_state,
                                               reset_restricted_build,
                                               retained_history_versions,
                                               stamp_build,
)
from spm_warehouse.publication.swap import PublishBlocked, ensure_publication_tables, publish

__all__ = ["RECYCLED_KEY", "PublishBlocked", "PublishError", "RollbackUnavailable", "SchemaState",
           "ensure_publication_tables", "prune_build_schema", "publish", "read_state", "reset_restricted_build",
           "retained_history_versions", "rollback",
           "stamp_build"]
