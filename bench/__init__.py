"""Benchmark harness for inventory-sink: `python -m bench run --help`.

Runs against the real broker and database on 127.0.0.1 (scripts/local-stack up), in a
database (`inventory_bench_<pid>`, dropped when the run succeeded) and on topics and consumer
groups unique to each run.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# `testbed` (the seeded event stream, the oracle, the publisher) is imported from the checkout.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
