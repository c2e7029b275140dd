"""Hypothesis-generated hostile inputs for the flood scenario.

Random bytes, wrong types, huge strings, deep nesting, injection-looking text, out-of-range
numbers and records near the broker's size limit. Most are invalid; some (injection-looking
text in a well-formed event) are valid and must be stored verbatim. The
independent model (testbed/model.py) decides.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from testbed import model

INJECTION = [
    "'; DROP TABLE products; --",
    '" OR 1=1 --',
    "$(rm -rf /)",
    "<script>alert(1)</script>",
    "\u0000nul byte",
    "%s%s%s%n",
    "{{7*7}}",
    "\\x00\\xff",
]
OUT_OF_RANGE: list[Any] = [0, -1, 2**63, 2**64, -(2**63), 10**30, 1e308, -0.0, "1e20", "NaN"]

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(INJECTION)
)
json_value = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = ["event_id", "event_type", "occurred_at", "product_id", "version", "data"]
DATA_FIELDS = ["name", "description", "price", "quantity", "delta", "reason"]


def base_event(kind: str, product_id: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "product.upserted": {"name": "flood", "price": "1.00", "quantity": 1},
        "product.deleted": {},
        "stock.adjusted": {"delta": 1},
    }[kind]
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": kind,
        "occurred_at": "2026-01-01T00:00:00+00:00",
        "product_id": product_id,
        "version": 1,
        "data": dict(data),
    }


kinds = st.sampled_from(["product.upserted", "product.deleted", "stock.adjusted"])
product_ids = st.integers(min_value=1_000_000, max_value=1_000_050)


@st.composite
def wrong_field(draw: st.DrawFn) -> bytes:
    event = base_event(draw(kinds), draw(product_ids))
    if draw(st.booleans()):
        event[draw(st.sampled_from(FIELDS))] = draw(json_value | st.sampled_from(OUT_OF_RANGE))
    else:
        event["data"][draw(st.sampled_from(DATA_FIELDS))] = draw(
            json_value | st.sampled_from(OUT_OF_RANGE)
        )
    if draw(st.booleans()):
        event.pop(draw(st.sampled_from(FIELDS)), None)
    return json.dumps(event).encode()


@st.composite
def huge_string(draw: st.DrawFn) -> bytes:
    event = base_event("product.upserted", draw(product_ids))
    size = draw(st.sampled_from([256, 10_001, 100_000]))
    event["data"][draw(st.sampled_from(["name", "description"]))] = "x" * size
    return json.dumps(event).encode()


@st.composite
def deep_nesting(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(min_value=50, max_value=20_000))
    if draw(st.booleans()):
        return b"[" * depth + b"]" * depth
    event = base_event("product.upserted", draw(product_ids))
    nested = "1"
    for _ in range(min(depth, 3000)):
        nested = '{"a":' + nested + "}"
    return json.dumps(event).replace('"quantity": 1', '"quantity": ' + nested).encode()


@st.composite
def injection_text(draw: st.DrawFn) -> bytes:
    """Well-formed events carrying injection-looking text: valid, stored verbatim."""
    event = base_event("product.upserted", draw(product_ids))
    event["data"]["name"] = draw(st.sampled_from(INJECTION)).replace("\u0000", "")
    event["data"]["description"] = draw(st.sampled_from(INJECTION)).replace("\u0000", "")
    return json.dumps(event).encode()


hostile = st.one_of(
    st.binary(max_size=300),
    json_value.map(lambda v: json.dumps(v).encode()),
    wrong_field(),
    huge_string(),
    deep_nesting(),
    injection_text(),
)


def collect(count: int, seed: int = 0) -> list[tuple[bytes | None, bytes | None]]:
    """`count` hostile (key, value) records, plus two near the 1 MB record limit."""
    found: list[tuple[bytes | None, bytes | None]] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(value=hostile, key=st.sampled_from([None, b"", b"1000001", b"not-a-number"]))
    def gather(value: bytes, key: bytes | None) -> None:
        found.append((key, value))

    gather()
    # A record that turns out to be a valid event is published as upstream must publish it,
    # keyed by its product id (unkeyed events of one product could land on several
    # partitions, and no consumer could then keep them in order).
    for index, (_key, value) in enumerate(found):
        event = model.read_record(None, value)
        if isinstance(event, model.Event):
            found[index] = (str(event.product_id).encode(), value)
    near_limit = 1_000_000
    found.append((b"1000002", b"\xff" * near_limit))
    big = base_event("product.upserted", 1_000_003)
    big["data"]["description"] = "y" * (near_limit - 400)
    found.append((b"1000003", json.dumps(big).encode()))
    return found[: count + 2]
