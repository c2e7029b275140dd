"""The architecture in pyproject.toml's [tool.importlinter] holds for the tree, and each
contract breaks when an import crosses it (so a rule that no longer guards anything shows)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "crossing", "broken", "named"),
    [
        # A lower layer reaching up: the core asking the database.
        ("core/records.py", "import service.postgres.engine", "Layers", "service.core.records"),
        # The edges are independent: Kafka knows nothing of PostgreSQL.
        ("kafka/topics.py", "import service.postgres.models", "Layers", "service.kafka.topics"),
        # The core does no I/O, not even through a library.
        ("core/domain.py", "import sqlalchemy", "The core is pure", "service.core.domain"),
        # Two modules of one package that import each other.
        (
            "write_path/retry.py",
            "import service.write_path.transaction",
            "No import cycles",
            "No cycles are allowed in service.write_path.",
        ),
    ],
)
def test_an_import_across_a_contract_breaks_it(
    tmp_path: Path, module: str, crossing: str, broken: str, named: str
) -> None:
    shutil.copytree(
        ROOT / "service",
        tmp_path / "service",
        ignore=shutil.ignore_patterns("__pycache__", "migrations"),
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "service" / module
    target.write_text(target.read_text() + f"\n{crossing}  # crossing\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout, result.stdout
    assert named in result.stdout, result.stdout
