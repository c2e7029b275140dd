"""What a downgrade will delete, step by step, read from the revisions' `downgrade_drops`
(each revision names the data its downgrade deletes, or None), so that the operator is told
before any of it is gone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alembic.script import ScriptDirectory


@dataclass(frozen=True, slots=True)
class Step:
    revision: str
    down_to: str | None  # None: base
    title: str
    drops: str | None  # what it deletes; None: nothing
    # False for a revision without `downgrade_drops` (written before revisions declared it):
    # it is named as such, and does not need --yes.
    declared: bool = True

    def describe(self) -> str:
        if not self.declared:
            what = "does not say what data it drops"
        else:
            what = f"drops {self.drops}" if self.drops else "drops no data"
        return f"{self.revision} -> {self.down_to or 'base'} ({self.title}): {what}"


def downgrade_steps(script: ScriptDirectory, heads: Sequence[str], destination: str) -> list[Step]:
    """The steps from `heads` down to `destination` (a revision, "base" or "-N"), in the
    order they run."""
    steps = []
    for item in script.iterate_revisions(tuple(heads), destination):
        down = item.down_revision
        title = (item.doc or "").strip().splitlines()[0] if item.doc else item.revision
        declared = hasattr(item.module, "downgrade_drops")
        drops = item.module.downgrade_drops if declared else None
        down_to = down if isinstance(down, str) else None
        steps.append(Step(item.revision, down_to, title, drops, declared))
    return steps


class DowngradePlanned(Exception):
    """A downgrade stopped before its first step: the plan is all that was asked for
    (`--dry-run`), or it would delete data and was not allowed to (no `--yes`)."""

    def __init__(self, steps: Sequence[Step], *, dry_run: bool) -> None:
        super().__init__("; ".join(step.describe() for step in steps))
        self.steps = list(steps)
        self.dry_run = dry_run

    @property
    def drops_data(self) -> bool:
        return any(step.drops for step in self.steps)
