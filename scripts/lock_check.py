"""Is requirements.lock current with pyproject.toml? Offline, for CI (scripts/lock --check).

Current means: the lock records the hash of the requirement list it was compiled from (the
[project] dependencies and [build-system] requires), that hash is today's, and every one of
those requirements that applies to the image (Linux, CPython 3.11) is pinned at a version it
allows. `--stamp` writes the hash after scripts/lock compiled the file.
"""

from __future__ import annotations

import hashlib
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

STAMP = "# inputs-sha256: "
IMAGE = {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11"}


def inputs(pyproject: Path) -> list[str]:
    data = tomllib.loads(pyproject.read_text())
    return sorted([*data["project"]["dependencies"], *data["build-system"]["requires"]])


def digest(requirements: list[str]) -> str:
    return hashlib.sha256("\n".join(requirements).encode()).hexdigest()


def pins(lock: str) -> dict[str, Version]:
    found = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", lock, flags=re.MULTILINE)
    return {canonicalize_name(name): Version(version) for name, version in found}


def problems(lock: str, requirements: list[str]) -> list[str]:
    wrong: list[str] = []
    if f"{STAMP}{digest(requirements)}" not in lock:
        wrong.append("pyproject.toml's dependencies changed since requirements.lock was compiled")
    pinned = pins(lock)
    for line in requirements:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate(IMAGE):
            continue
        version = pinned.get(canonicalize_name(requirement.name))
        if version is None:
            wrong.append(f"{requirement.name} is not pinned")
        elif not requirement.specifier.contains(version, prereleases=True):
            wrong.append(f"{requirement.name}=={version} does not satisfy {requirement}")
    return wrong


def main(argv: list[str]) -> int:
    stamp = argv[:1] == ["--stamp"]
    lock_path, pyproject = (Path(item) for item in argv[int(stamp) :])
    requirements = inputs(pyproject)
    lock = lock_path.read_text()
    if stamp:
        body = "".join(line for line in lock.splitlines(True) if not line.startswith(STAMP))
        lock_path.write_text(f"{STAMP}{digest(requirements)}\n{body}")
        return 0
    wrong = problems(lock, requirements)
    for item in wrong:
        print(f"lock: {item}", file=sys.stderr)
    if wrong:
        print("lock: requirements.lock is not current; run scripts/lock", file=sys.stderr)
        return 1
    print(f"lock: requirements.lock is current ({len(pins(lock))} pins)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
