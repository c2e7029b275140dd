"""The benchmark's peer streams, expectations and CPU accounting (bench/peers, bench/cpu.py)."""

from __future__ import annotations

import asyncio
import json
import sys
from decimal import Decimal
from pathlib import Path

from bench.cpu import CONSUMER, CpuAccount, Proc, backend_database, descendants, selectors
from bench.peers.connect import prepare, render
from bench.peers.install import HERE, Installed
from bench.peers.upserts import (
    CONNECT_SCHEMA,
    connect_envelope,
    contract_differences,
    last_write_wins,
    sentinels,
    upserts,
)
from bench.report import Result, side_by_side
from testbed.events import adjust, delete, record, upsert
from testbed.oracle import expected_outcome
from testbed.publish import split_by_partition

STREAM = [
    record(upsert(1, 1, name="one v1", price="1.00", quantity=5)),
    record(adjust(1, 2)),
    (b"1", b"{not json"),
    record(upsert(2, 1, name="two v1", price="2.50")),
    record(upsert(1, 3, name="one v3", price="3.00", quantity=7)),
    record(upsert(1, 2, name="one v2 (stale)", price="2.00")),
    record(delete(2, 2)),
    record(upsert(3, 1, name="bad", price="-1.00")),  # invalid: negative price
]


def test_the_peers_get_only_the_valid_upserts_in_order() -> None:
    kept = upserts(STREAM)
    assert [json.loads(value)["data"]["name"] for _, value in kept] == [
        "one v1",
        "two v1",
        "one v3",
        "one v2 (stale)",
    ]
    assert [key for key, _ in kept] == [b"1", b"2", b"1", b"1"]


def test_last_write_wins_keeps_the_last_row_even_when_it_is_stale() -> None:
    rows = last_write_wins(upserts(STREAM))
    assert rows[1].name == "one v2 (stale)" and rows[1].version == 2
    assert rows[1].quantity == 0  # no quantity in that upsert: a whole-row sink writes 0
    assert rows[2].price == Decimal("2.50") and rows[2].version == 1
    assert set(rows) == {1, 2}


def test_the_difference_from_the_contract_is_counted() -> None:
    kept = upserts(STREAM)
    note = contract_differences(last_write_wins(kept), expected_outcome(kept).products)
    assert "1 of 2 products end at an older version" in note


def test_the_connect_envelope_carries_the_event_unchanged_under_its_schema() -> None:
    kept = upserts(STREAM)
    wrapped = connect_envelope(kept)
    assert [key for key, _ in wrapped] == [key for key, _ in kept]
    for (_, value), (_, original) in zip(wrapped, kept, strict=True):
        document = json.loads(value)
        assert document["schema"] == CONNECT_SCHEMA
        assert document["payload"] == json.loads(original)


def test_sentinels_are_each_partitions_last_product() -> None:
    kept = upserts(STREAM)
    split = split_by_partition(kept, 6)
    found = sentinels(split)
    assert found == [int(records[-1][0]) for records in split if records]
    assert set(found) <= {1, 2}


def test_connect_properties_render_with_every_placeholder_filled() -> None:
    text = render(
        HERE / "connect" / "jdbc-sink.properties.template",
        {
            "NAME": "n",
            "TOPIC": "t",
            "PG_HOST": "127.0.0.1",
            "PG_PORT": "5432",
            "PG_DB": "d",
            "PG_USER": "u",
            "PG_PASSWORD": "p@ss",
            "BATCH_SIZE": "2000",
            "REDUCTION": "true",
            "UNNEST": "true",
        },
    )
    assert "connection.url=jdbc:postgresql://127.0.0.1:5432/d?stringtype=unspecified" in text
    assert "insert.mode=upsert" in text and "primary.key.mode=record_value" in text


def test_the_connect_batch_size_goes_to_the_sink_and_to_the_workers_polls(tmp_path: Path) -> None:
    postgres = {"host": "127.0.0.1", "port": "5432", "database": "d", "user": "u", "password": "p"}
    run, argv = prepare(
        Installed(tmp_path), "n-b5000", "t", "127.0.0.1:9092", postgres, tmp_path, 5000
    )

    assert run.group == "connect-n-b5000"
    assert argv[-2:] == [
        str(tmp_path / "worker.properties"),
        str(tmp_path / "jdbc-sink.properties"),
    ]
    assert "consumer.max.poll.records=5000\n" in (tmp_path / "worker.properties").read_text()
    assert "batch.size=5000\n" in (tmp_path / "jdbc-sink.properties").read_text()


def test_postgres_backends_are_told_apart_by_their_title() -> None:
    assert backend_database("postgres: 15/main: inventory bench_x 127.0.0.1(5123) idle") == (
        "bench_x"
    )
    assert backend_database("postgres: inventory bench_x [local] SELECT") == "bench_x"
    assert backend_database("postgres: 15/main: walwriter") is None
    assert backend_database("postgres: 15/main: autovacuum launcher") is None


def test_descendants_follow_the_process_tree() -> None:
    procs = {
        pid: Proc(pid, parent, 0.0, "x")
        for pid, parent in [(10, 1), (11, 10), (12, 11), (20, 1), (13, 10)]
    }
    assert descendants(procs, [10]) == {10, 11, 12, 13}
    assert descendants(procs, [99]) == set()


async def test_the_account_counts_a_childs_cpu_to_the_consumer() -> None:
    burn = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", f"{burn}\nimport time; time.sleep(30)"
    )
    try:
        account = CpuAccount(selectors([child.pid], None, "", 9092), interval=0.1)
        account.start()
        await asyncio.sleep(1.5)
        spent = await account.stop()
    finally:
        child.kill()
        await child.wait()
    # the burn started with the child, mostly after start(); interpreter start-up is extra
    assert 0.3 <= spent[CONSUMER] <= 1.5, spent


def test_side_by_side_gives_ratios_to_the_fastest_peer_and_to_consume_only() -> None:
    results = [
        Result("consume-only", 1000, 500, 0.01, stream="upserts"),
        Result("service", 1000, 500, 0.1, stream="upserts", cpu_s={"consumer": 0.5}),
        Result("quix", 1000, 500, 0.5, stream="upserts"),
        Result("connect", 1000, 500, 0.25, stream="upserts"),
    ]
    text = "\n".join(side_by_side(results))
    service = next(line for line in text.splitlines() if line.strip().startswith("service"))
    cells = service.split()
    # 5,000/s: 2.5x connect's 2,000/s, 0.1x consume-only's; 0.5 CPU-s / 500 events = 1 per 1,000
    assert cells[1:6] == ["[upserts]", "5,000", "2.50", "0.100", "1.000"], cells
    assert "fastest peer: connect [upserts] (2,000 events/s)" in text
