"""requirements/test.lock agrees with pyproject.toml: every declared dependency is pinned, inside its range.

scripts/test installs with `-c requirements/test.lock`; a dependency added or re-bounded in
pyproject.toml without refreshing the lock (scripts/lock) would otherwise surface only as CI
resolving something other than what the lock claims.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]


def pinned() -> dict[str, str]:
    versions: dict[str, str] = {}
    for line in (REPO / "requirements" / "test.lock").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"not an exact pin: {line!r}"
        versions[canonicalize_name(name)] = version
    return versions


def declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    texts = [*project["dependencies"], *extras["server"], *extras["test"]]
    return [Requirement(text) for text in texts if not text.startswith(project["name"] + "[")]


def test_every_declared_dependency_is_pinned_inside_its_range() -> None:
    versions = pinned()
    problems = []
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        if name not in versions:
            problems.append(f"{requirement.name} is not in the lock")
        elif not requirement.specifier.contains(versions[name], prereleases=True):
            problems.append(f"{requirement.name}=={versions[name]} is outside {requirement.specifier}")
    assert not problems, "refresh requirements/test.lock with scripts/lock: " + "; ".join(problems)


def test_the_lock_pins_only_exact_versions_and_not_ghdeploy_itself() -> None:
    versions = pinned()
    assert "ghdeploy" not in versions
    assert len(versions) > 20  # the whole closure, not only the direct dependencies
