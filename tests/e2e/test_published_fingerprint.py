"""What BI users read does not change unless a commit means it to (see fixtures/published_fingerprint.py)."""

from __future__ import annotations

import json

import pytest
from project import FIXTURES

pytestmark = pytest.mark.e2e

RECORDED = FIXTURES / "published_fingerprint.json"


def test_published_tables_match_the_recorded_fingerprint(demo_warehouse, request):
    assert demo_warehouse.returncode == 0, demo_warehouse.log[-3000:]
    now = demo_warehouse.first_fingerprint
    assert len(now) >= 15, sorted(now)  # the star schema and the KPI marts, not an empty schema
    if request.config.getoption("--update-fingerprint"):
        RECORDED.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    recorded = json.loads(RECORDED.read_text())
    changed = {name: {"recorded": {k: recorded[name][k] for k in ("rows", "md5")},
                      "now": {k: now[name][k] for k in ("rows", "md5")}}
               for name in sorted(set(recorded) & set(now)) if recorded[name] != now[name]}
    assert sorted(now) == sorted(recorded), {"added": sorted(set(now) - set(recorded)),
                                             "removed": sorted(set(recorded) - set(now))}
    assert not changed, changed
