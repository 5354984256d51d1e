"""make test's parallel run: tests that read a shared world run on the worker that built it.

A small suite in a temporary folder, run by pytest-xdist with our scheduler
(fixtures/xdist_groups.py): a session-scoped `star_world` read by two modules
must be built once, and the tests of a module stay together.
"""

from __future__ import annotations

import os

import pytest
from project import FIXTURES

pytest_plugins = ["pytester"]

CONFTEST = """
import os, pytest, xdist_groups

def pytest_configure(config):
    config.pluginmanager.register(xdist_groups, "spm_xdist_groups")

@pytest.fixture(scope="session")
def star_world(tmp_path_factory):
    out = os.environ["BUILDS_DIR"]
    open(os.path.join(out, os.environ.get("PYTEST_XDIST_WORKER", "main")), "a").write("built\\n")
    return "world"
"""

WORLD_MODULE = """
import os
def test_{name}_{n}(star_world):
    open(os.path.join(os.environ["BUILDS_DIR"], "ran_" + os.environ["PYTEST_XDIST_WORKER"]), "a").write("x\\n")
"""


def test_a_shared_world_is_built_once_and_its_readers_share_a_worker(pytester: pytest.Pytester, tmp_path, monkeypatch):
    builds = tmp_path / "builds"
    builds.mkdir()
    pytester.makeconftest(CONFTEST)
    for name in ("alpha", "beta"):  # two modules read the world, 4 tests each
        pytester.makepyfile(**{f"test_{name}": "\n".join(WORLD_MODULE.format(name=name, n=n) for n in range(4))})
    for name in ("gamma", "delta", "epsilon"):  # modules without it, to keep the other worker busy
        pytester.makepyfile(**{f"test_{name}": "\n".join(f"def test_{n}(): pass" for n in range(3))})
    monkeypatch.setenv("BUILDS_DIR", str(builds))  # the pytest subprocess inherits the environment
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FIXTURES), os.environ.get("PYTHONPATH", "")]))
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=17)
    built = sorted(p.name for p in builds.iterdir() if not p.name.startswith("ran_"))
    ran = sorted(p.name for p in builds.iterdir() if p.name.startswith("ran_"))
    assert len(built) == 1, f"star_world built on {built}"
    assert ran == ["ran_" + built[0]] and len((builds / ran[0]).read_text().split()) == 8
