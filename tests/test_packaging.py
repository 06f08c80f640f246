"""Packaging: a fresh resolve of the test tools picks versions that work together, and the project installs
under the one top-level name ``apudae``."""
from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _test_extra() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["optional-dependencies"]["test"]]


def test_every_test_tool_is_bounded_above():
    """An unbounded test tool lets a new machine resolve a release that the others do not support."""
    unbounded = [str(r) for r in _test_extra() if not any(s.operator in ("<", "<=", "==", "~=") for s in r.specifier)]
    assert unbounded == []


def test_a_fresh_resolve_of_the_test_tools_works_together(tmp_path):
    """Resolve the test extra as an empty venv would (installed packages ignored): every tool lands inside
    its bounds, and pytest stays below 9, which schemathesis 4.32 does not support."""
    report = tmp_path / "resolve.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--disable-pip-version-check", "--report", str(report),
                           *(str(r) for r in _test_extra())], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    resolved = {item["metadata"]["name"].lower(): Version(item["metadata"]["version"])
                for item in json.loads(report.read_text())["install"]}
    for requirement in _test_extra():
        assert requirement.specifier.contains(resolved[requirement.name.lower()]), requirement
    assert resolved["pytest"] < Version("9")


def test_the_wheel_installs_one_top_level_package(tmp_path):
    """Build the wheel pip installs from this checkout: no generic ``models``, ``service`` or ``training``
    package lands in site-packages, only ``apudae`` and its metadata."""
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("apudae-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"apudae"}
