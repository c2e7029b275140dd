"""scripts/lock_check.py: is requirements.lock current with pyproject.toml (offline)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock_check", ROOT / "scripts" / "lock_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock_check = load()
REQUIREMENTS = ["alembic>=1.13", "setuptools>=69", "uvloop>=0.19; sys_platform != 'win32'"]
LOCK = """alembic==1.20.1 \\
    --hash=sha256:00
setuptools==84.2.1 \\
    --hash=sha256:11
uvloop==0.23.0 \\
    --hash=sha256:22
"""


def stamped(lock: str, requirements: list[str]) -> str:
    return f"{lock_check.STAMP}{lock_check.digest(requirements)}\n{lock}"


def test_the_repository_lock_is_current() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    assert lock_check.problems(lock, lock_check.inputs(ROOT / "pyproject.toml")) == []


def test_a_lock_compiled_from_these_requirements_passes() -> None:
    assert lock_check.problems(stamped(LOCK, REQUIREMENTS), REQUIREMENTS) == []


def test_a_changed_requirement_list_is_reported() -> None:
    changed = [*REQUIREMENTS, "httpx>=0.27"]
    assert lock_check.problems(stamped(LOCK, REQUIREMENTS), changed) == [
        "pyproject.toml's dependencies changed since requirements.lock was compiled",
        "httpx is not pinned",
    ]


def test_a_pin_outside_the_specifier_is_reported() -> None:
    old = LOCK.replace("alembic==1.20.1", "alembic==1.12.0")
    assert lock_check.problems(stamped(old, REQUIREMENTS), REQUIREMENTS) == [
        "alembic==1.12.0 does not satisfy alembic>=1.13"
    ]


def test_requirements_for_other_platforms_need_no_pin() -> None:
    windows_only = ["pywin32>=300; sys_platform == 'win32'"]
    assert lock_check.problems(stamped("", windows_only), windows_only) == []


def test_stamp_writes_the_hash_once(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\ndependencies = ["alembic>=1.13"]\n'
        '[build-system]\nrequires = ["setuptools>=69"]\n'
    )
    (tmp_path / "requirements.lock").write_text(f"{lock_check.STAMP}stale\n{LOCK}")
    files = [str(tmp_path / "requirements.lock"), str(tmp_path / "pyproject.toml")]
    assert lock_check.main(["--stamp", *files]) == 0
    text = (tmp_path / "requirements.lock").read_text()
    assert text.count(lock_check.STAMP) == 1 and "stale" not in text
    assert lock_check.main(files) == 0
