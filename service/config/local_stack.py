"""Where a hint may name the project's local stack: in a checkout, where scripts/local-stack
exists, and not in the container image, where it does not (there the variable to set is the
whole hint)."""

from __future__ import annotations

from pathlib import Path

LOCAL_STACK = Path(__file__).resolve().parents[2] / "scripts" / "local-stack"


def local_stack_hint() -> str:
    """ " (locally: scripts/local-stack up)" in a checkout, else nothing."""
    return " (locally: scripts/local-stack up)" if LOCAL_STACK.exists() else ""
