"""The independent model (testbed/model.py) and the service's own decode + fold agree.

The fault suite and the write-path tests judge the service by the model; this test keeps the
two honest against each other. A disagreement is a bug in one of them: the failure names the
records that differ and what each side decided.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.core.claims import kept_ids
from service.core.decoding import Unusable, decode
from service.core.domain import Applied, Rejected, Stale, fold
from testbed import model
from testbed.events import LabelledSpec, Rec, generate_records
from tests.faults import bad_inputs
from tests.support.write_path import SimpleRecord

MAX_QUANTITY = 2**31 - 1
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def service_fates(
    records: Sequence[Rec], limit: int, cuts: Sequence[int] = ()
) -> tuple[list[str], dict[int, Any], set]:  # type: ignore[type-arg]
    """Each record's fate (or dead-letter reason), the changed products and processed ids,
    as the service decides them in one batch, or in batches that end at `cuts` (indexes
    into the records): each batch folds over the states the earlier ones left, with their
    kept ids as `already`, as the write path does."""
    decoded = [
        decode(SimpleRecord("t", 0, i, r.key, r.value, r.headers), limit)
        for i, r in enumerate(records)
    ]
    states: dict[int, Any] = {}
    processed: set[uuid.UUID] = set()
    all_outcomes: list[Any] = []
    bounds = [0, *sorted(set(cuts)), len(decoded)]
    for start, stop in itertools.pairwise(bounds):
        events = [item for item in decoded[start:stop] if not isinstance(item, Unusable)]
        result = fold(states, events, frozenset(processed))
        states.update(result.changed)
        processed.update(kept_ids(events, result.outcomes))
        all_outcomes.extend(result.outcomes)
    outcomes = iter(all_outcomes)
    fates = []
    for item in decoded:
        if isinstance(item, Unusable):
            fates.append(item.reason.value)
            continue
        outcome = next(outcomes)
        if outcome is None:
            fates.append(model.DUPLICATE)
        elif isinstance(outcome, Rejected):
            fates.append(outcome.reason.value)
        elif isinstance(outcome, Stale):
            fates.append(model.STALE)
        else:
            assert isinstance(outcome, Applied)
            fates.append(model.APPLIED)
    products = {pid: tuple(p) for pid, p in states.items()}
    return fates, products, processed


def assert_agree(
    records: Sequence[Rec], limit: int = model.DEFAULT_MAX_RECORD_BYTES, cuts: Sequence[int] = ()
) -> None:
    """The service (in one batch, or in the batches `cuts` make) and the model, which knows
    nothing of batches, decide every record, every product and the processed ids alike."""
    fates, products, processed = service_fates(records, limit, cuts)
    expected = model.expect([r[:3] for r in records], limit)
    differing = [
        f"record {i}: service {ours}, model {theirs}: {records[i].value!r:.160}"
        for i, (ours, theirs) in enumerate(zip(fates, expected.fates, strict=True))
        if ours != theirs
    ]
    assert not differing, "model and service disagree:\n" + "\n".join(differing[:10])
    wanted = {pid: tuple(p) for pid, p in expected.products.items()}
    rows = [
        f"product {pid}: service {products.get(pid)}, model {wanted.get(pid)}"
        for pid in sorted(products.keys() | wanted.keys())
        if products.get(pid) != wanted.get(pid)
    ]
    assert not rows, "model and service end in different states:\n" + "\n".join(rows[:10])
    assert processed == expected.processed_ids


# -- hypothesis streams: few products, few versions and ids, so every rule meets every other --

ids = st.sampled_from([uuid.UUID(int=n, version=4) for n in range(1, 12)]) | st.uuids()
pids = st.integers(min_value=1, max_value=4)
versions = st.integers(min_value=1, max_value=5)
quantities = st.none() | st.sampled_from([0, 1, 7, MAX_QUANTITY - 1, MAX_QUANTITY])
deltas = st.sampled_from([1, -1, 2, -3, 10, MAX_QUANTITY, -MAX_QUANTITY, MAX_QUANTITY - 1])
moments = st.integers(min_value=0, max_value=10_000).map(lambda s: BASE + timedelta(seconds=s))
# Strings and JSON numbers, valid and not (a number off the cent, out of range, 0.1 + 0.2).
prices = st.sampled_from(["1.50", "0", "1e2", "24.999", 24.9, 0.29, 100.0, 7, 0, -0.0]) | (
    st.sampled_from([9999999999.99, 24.999, 0.1 + 0.2, 1e-7, -1, -0.01, 1e11, True, None])
)
header_values = st.none() | st.binary(max_size=8) | st.sampled_from([b"1", b"2", b" 1", b""])
headers = st.lists(
    st.tuples(st.sampled_from(["h", "error.reason", "contract-version"]), header_values),
    max_size=3,
).map(tuple)


@st.composite
def events(draw: st.DrawFn) -> Rec:
    kind = draw(st.sampled_from([model.UPSERT, model.DELETE, model.ADJUST]))
    pid = draw(pids)
    body: dict[str, Any] = {
        "event_id": str(draw(ids)),
        "event_type": kind,
        "occurred_at": draw(moments).isoformat(),
        "product_id": pid,
    }
    if kind == model.UPSERT:
        body["version"] = draw(versions)
        body["data"] = {"name": draw(st.sampled_from(["a", "b"])), "price": draw(prices)}
        quantity = draw(quantities)
        if quantity is not None:
            body["data"]["quantity"] = quantity
        body["data"]["description"] = draw(st.none() | st.just("d"))
    elif kind == model.DELETE:
        body["version"] = draw(versions)
        body["data"] = {}
    else:
        body["data"] = {"delta": draw(deltas)}
        if draw(st.booleans()):
            body["version"] = draw(versions)
    key = draw(st.sampled_from([str(pid).encode(), None, b"", str(pid + 1).encode()]))
    return Rec(key, json.dumps(body).encode(), draw(headers))


streams = st.lists(events() | st.builds(Rec, st.just(b"1"), st.binary(max_size=12)), max_size=40)


# 1000 streams by default (~10 s); MODEL_AGREEMENT_EXAMPLES=20000 for a deeper run.
# (scripts/mutation lowers both counts: every mutant reruns these tests.)
EXAMPLES = int(os.environ.get("MODEL_AGREEMENT_EXAMPLES", "1000"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=streams,
    limit=st.sampled_from([model.DEFAULT_MAX_RECORD_BYTES, 200, 260]),
    cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=6),
)
def test_model_and_service_agree_on_generated_streams(
    stream: list[Rec], limit: int, cuts: list[int]
) -> None:
    """In one batch and split into batches anywhere: only stock.adjusted ids are claimed, so
    a repeated upsert or delete is stale wherever the batches end, never a duplicate."""
    assert_agree(stream, limit)
    assert_agree(stream, limit, [cut for cut in cuts if cut <= len(stream)])


def test_model_and_service_agree_on_the_fault_suites_labelled_streams() -> None:
    for seed in (101, 202, 303):
        spec = LabelledSpec(events=4000, products=40, seed=seed, max_record_bytes=4096)
        records = generate_records(spec)
        model.expect(records, 4096)  # raises if a label and the model disagree
        assert_agree(records, 4096)
        assert_agree(records, 4096, range(250, len(records), 250))


def test_model_and_service_agree_on_the_hostile_flood() -> None:
    count = int(os.environ.get("MODEL_AGREEMENT_FLOOD", "1500"))
    assert_agree([Rec(key, value) for key, value in bad_inputs.collect(count)])
