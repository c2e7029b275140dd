"""The committed contract files are what the code generates (upstreams read the files)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = ROOT / "contract" / "product-event.v1.schema.json"


def test_the_committed_json_schema_is_what_the_service_prints() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "service", "contract"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout

    assert SCHEMA.read_text() == printed, (
        f"{SCHEMA.relative_to(ROOT)} is not what the code generates; regenerate it with: "
        f"python -m service contract > {SCHEMA.relative_to(ROOT)}"
    )
