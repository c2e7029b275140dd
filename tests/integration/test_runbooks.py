# ruff: noqa: E501 - the runbooks' command lines, verbatim (RUNBOOK_COMMANDS)
"""The commands of docs/runbooks/, run as an operator following a firing alert would: against
the real service process, Kafka and PostgreSQL put in the state the alert describes, from the
diagnosis to the command that confirms the fix. Each command line is written here exactly as
on its page (the pages' `run-by` blocks point here; the last test checks that they match)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config.settings import Settings
from service.kafka.topics import ensure_topics
from testbed.environment import settings_env
from testbed.events import StreamSpec, generate_stream
from testbed.publish import publish
from tests.conftest import make_settings
from tests.support.consumer import ConsumerProcess, wait_for_products
from tests.support.scrape import get, samples, wait_for_metric
from tests.support.services import PostgresEndpoint

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "docs" / "runbooks"

# The runbooks' commands, each line exactly as on its page (the pages' run-by blocks are checked
# against this file's text, so no line is split or escaped here).
RUNBOOK_COMMANDS = r"""
curl -s "$SINK_URL/health/ready"
curl -s -o /dev/null -w '%{http_code}\n' "$SINK_URL/health/ready"
curl -s "$SINK_URL/metrics" | grep -E '^inventory_sink_ready'
curl -s -o /dev/null -w '%{http_code}\n' "$SINK_URL/metrics"
curl -s "$SINK_URL/metrics" | grep '^inventory_sink_build_info'
curl -s "$SINK_URL/metrics" | grep -E '^inventory_sink_(partition_lag|seconds_since_progress)'
curl -s "$SINK_URL/metrics" | grep -E '^inventory_sink_batch_seconds_(sum|count)'
curl -s "$SINK_URL/metrics" | grep -E '^inventory_sink_(batches|batch_retries)_total'
curl -s "$SINK_URL/metrics" | grep '^inventory_sink_dead_letters_total'
curl -s "$SINK_URL/metrics" | grep '^inventory_sink_position_rollbacks_total'
psql "postgresql://$POSTGRES_USER:$POSTGRES_PASSWORD@$POSTGRES_HOST:$POSTGRES_PORT/$POSTGRES_DB" -c "SELECT pid, state, now() - xact_start AS open_for, left(query, 60) AS query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL ORDER BY xact_start"
python -m service lag
python -m service lag --wait 120
python -m service dead-letters --count
python -m service dead-letters --last 20
python -m service positions
python -m service positions reset --partition 0 --to log-start --dry-run
python -m service positions reset --partition 0 --to log-start
"""
(
    READY, READY_CODE, READY_METRICS, METRICS_CODE, BUILD_INFO, PROGRESS_METRICS, BATCH_SECONDS,
    RETRY_METRICS, DEAD_LETTER_METRICS, ROLLBACK_METRICS, LOCKS, LAG, LAG_WAIT,
    DEAD_LETTER_COUNT, DEAD_LETTERS, POSITIONS, RESET_DRY, RESET,
) = COMMAND_LINES = RUNBOOK_COMMANDS.strip().splitlines()  # fmt: skip
COMMANDS = set(COMMAND_LINES)


class Operator:
    """A shell with the service's settings (as in its container) and SINK_URL of a replica."""

    def __init__(self, settings: Settings, url: str = "") -> None:
        self.env = settings_env(settings)
        self.env["SINK_URL"] = url
        # `python` is this interpreter, with the service installed
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"

    def run(self, line: str, code: int = 0, codes: tuple[int, ...] = ()) -> str:
        """`line`'s output, once it has exited with `code` (or one of `codes`)."""
        assert line in COMMANDS, line
        result = subprocess.run(
            ["bash", "-c", line],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
        )
        output = result.stdout + result.stderr
        assert result.returncode in (codes or (code,)), (
            f"{line}\nexit {result.returncode}:\n{output}"
        )
        return result.stdout


@pytest.fixture
def start(pg: PostgresEndpoint, kafka: str, names: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    """Start the service with extra settings; returns (process, base URL, operator)."""
    started: list[ConsumerProcess] = []

    def run(**extra: object) -> tuple[ConsumerProcess, str, Operator]:
        settings = make_settings(pg, kafka, names, http_host="127.0.0.1", **extra)
        process = ConsumerProcess(settings, tmp_path, name=f"consumer{len(started)}")
        started.append(process)
        process.start()
        url = process.http_url()
        return process, url, Operator(settings, url)

    yield run
    for process in started:
        process.kill()


async def ready_code(url: str) -> int:
    return (await get(f"{url}/health/ready"))[0]


async def test_dead_letters_rising_and_metrics_absent(
    start: Any, engine: AsyncEngine, kafka: str, names: dict[str, str], pg: PostgresEndpoint
) -> None:
    await ensure_topics(make_settings(pg, kafka, names))
    good = generate_stream(StreamSpec(events=60, products=10, seed=3, bad_share=0))
    bad = [(b"7", b"not json")] * 12
    await publish(kafka, names["topic"], good + bad)
    consumer, url, operator = start()
    await wait_for_metric(
        url,
        "inventory_sink_dead_letters_total",
        lambda seen: seen.get('{reason="invalid_json"}') == 12.0,
        consumer,
    )
    await wait_for_products(engine, consumer, set(range(1, 11)))
    metrics = (await get(f"{url}/metrics"))[1]
    total = int(sum(samples(metrics, "inventory_sink_dead_letters_total").values()))

    assert operator.run(DEAD_LETTER_COUNT).strip() == str(total)
    letters = operator.run(DEAD_LETTERS).splitlines()
    assert letters[-1] == f"({total} dead letters in {names['dlq']})"
    assert len(letters) == min(total, 20) + 1, letters
    # topic[partition]@offset, then any key=value fields (key, event_id), then reason: message
    line = re.compile(rf"{re.escape(names['topic'])}\[\d\]@\d+ (?:\S+=\S* )*([a-z_]+): .+")
    reasons = [line.fullmatch(letter).group(1) for letter in letters[:-1]]  # type: ignore[union-attr]
    assert reasons.count("invalid_json") == 12, letters  # published last: the latest 12
    counted = samples(operator.run(DEAD_LETTER_METRICS), "inventory_sink_dead_letters_total")
    assert counted['{reason="invalid_json"}'] == 12.0 and sum(counted.values()) == total

    # The replica serves its metrics and says which release it is.
    assert operator.run(METRICS_CODE).strip() == "200"
    (build,) = samples(operator.run(BUILD_INFO), "inventory_sink_build_info")
    assert 'contract="1"' in build and 'version="' in build

    await wait_for_metric(url, "inventory_sink_ready", lambda s: s == {"": 1.0}, consumer)
    assert operator.run(READY_CODE).strip() == "200"


async def test_not_ready_lag_growing_and_a_stalled_partition_until_the_lock_goes(
    start: Any, engine: AsyncEngine, kafka: str, names: dict[str, str], pg: PostgresEndpoint
) -> None:
    await ensure_topics(make_settings(pg, kafka, names))
    stream = generate_stream(StreamSpec(events=300, products=20, seed=9))
    first, second = stream[:100], stream[100:]
    await publish(kafka, names["topic"], first)
    consumer, url, operator = start(stall_timeout_s=2.0, progress_check_interval_s=0.5)
    assert operator.run(LAG_WAIT).strip().endswith("caught up")  # the first part is applied
    await wait_for_metric(url, "inventory_sink_ready", lambda s: s == {"": 1.0}, consumer)

    # Someone holds the lock every batch needs to store its positions.
    holder = await asyncpg.connect(pg.url(driver="postgresql"))
    transaction = holder.transaction()
    await transaction.start()
    try:
        await holder.execute("LOCK TABLE consumer_offsets IN EXCLUSIVE MODE")
        await publish(kafka, names["topic"], second)
        await wait_for_metric(url, "inventory_sink_ready", lambda s: s == {"": 0.0}, consumer)

        answer = operator.run(READY)
        assert '"status": "unavailable"' in answer and "stalled with lag" in answer, answer
        ready = operator.run(READY_METRICS)
        assert "inventory_sink_ready 0.0" in ready.splitlines(), ready
        assert 'inventory_sink_ready_check{check="progress"} 0.0' in ready, ready
        assert operator.run(READY_CODE).strip() == "503"

        lag = operator.run(LAG, code=1)
        assert lag.strip().endswith("records not yet applied"), lag
        progress = operator.run(PROGRESS_METRICS)
        assert sum(samples(progress, "inventory_sink_partition_lag").values()) > 0, progress
        assert max(samples(progress, "inventory_sink_seconds_since_progress").values()) >= 2
        batches = samples(operator.run(BATCH_SECONDS), "inventory_sink_batch_seconds_count")
        assert batches[""] >= 1

        # The session holding the lock, idle in its transaction, named by its statement.
        locks = operator.run(LOCKS)
        assert "LOCK TABLE consumer_offsets IN EXCLUSIVE MODE" in locks, locks
        assert "idle in transaction" in locks, locks
    finally:
        await transaction.rollback()
        await holder.close()

    caught_up = operator.run(LAG_WAIT)
    assert caught_up.strip().endswith("caught up"), caught_up
    await wait_for_metric(url, "inventory_sink_ready", lambda s: s == {"": 1.0}, consumer)
    assert operator.run(READY_CODE).strip() == "200"


async def test_batch_retries_while_postgresql_refuses_connections(
    start: Any,
    kafka: str,
    names: dict[str, str],
    pg: PostgresEndpoint,
    pg_server: PostgresEndpoint,
) -> None:
    await ensure_topics(make_settings(pg, kafka, names))
    consumer, url, operator = start()
    await wait_for_metric(url, "inventory_sink_ready", lambda s: s == {"": 1.0}, consumer)

    admin = await asyncpg.connect(pg_server.url(driver="postgresql"))
    await admin.execute(f'ALTER DATABASE "{pg.database}" ALLOW_CONNECTIONS false')
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            pg.database,
        )
        await publish(kafka, names["topic"], generate_stream(StreamSpec(events=50, seed=4)))
        await wait_for_metric(
            url, "inventory_sink_batch_retries_total", lambda s: s.get("", 0) >= 2, consumer
        )
        answer = operator.run(READY)
        assert '"database": {"ok": false' in answer and "POSTGRES_HOST" in answer, answer
        counts = operator.run(RETRY_METRICS)
        assert samples(counts, "inventory_sink_batch_retries_total")[""] >= 2, counts
        assert samples(counts, "inventory_sink_batches_total") == {"": 0.0}, counts
    finally:
        await admin.execute(f'ALTER DATABASE "{pg.database}" ALLOW_CONNECTIONS true')
        await admin.close()

    assert operator.run(LAG_WAIT).strip().endswith("caught up")
    counts = operator.run(RETRY_METRICS)
    assert samples(counts, "inventory_sink_batches_total")[""] >= 1, counts


async def test_commits_lost_are_read_again_by_the_sink(
    start: Any, kafka: str, names: dict[str, str], pg: PostgresEndpoint
) -> None:
    await ensure_topics(make_settings(pg, kafka, names))
    await publish(kafka, names["topic"], generate_stream(StreamSpec(events=90, seed=6)))
    consumer, url, operator = start(progress_check_interval_s=0.5)
    assert operator.run(LAG_WAIT).strip().endswith("caught up")

    # PostgreSQL "loses" the last commits of partition 0 (as a failover to a lagging replica).
    connection = await asyncpg.connect(pg.url(driver="postgresql"))
    try:
        moved = await connection.fetchval(
            "UPDATE consumer_offsets SET next_offset = next_offset - 5 "
            "WHERE group_id = $1 AND topic = $2 AND partition = 0 AND next_offset >= 5 "
            "RETURNING next_offset",
            names["group"],
            names["topic"],
        )
    finally:
        await connection.close()
    assert moved is not None

    await wait_for_metric(
        url, "inventory_sink_position_rollbacks_total", lambda s: len(s) == 1, consumer
    )
    rollbacks = samples(operator.run(ROLLBACK_METRICS), "inventory_sink_position_rollbacks_total")
    (partition,) = rollbacks  # only partition 0 lost commits
    assert partition == f'{{partition="0",topic="{names["topic"]}"}}', rollbacks
    assert rollbacks[partition] >= 1, rollbacks
    lag = operator.run(LAG, codes=(0, 1))  # 1 until its records are applied again
    assert f"{names['topic']}[0]" in lag
    assert operator.run(LAG_WAIT).strip().endswith("caught up")
    consumer.wait_for_log("PostgreSQL holds positions behind those this consumer committed")


async def test_a_stopped_partition_is_reset_and_resumes(
    start: Any, engine: AsyncEngine, kafka: str, names: dict[str, str], pg: PostgresEndpoint
) -> None:
    await ensure_topics(make_settings(pg, kafka, names))
    await publish(kafka, names["topic"], generate_stream(StreamSpec(events=60, seed=8)))
    first, _, operator = start()
    assert operator.run(LAG_WAIT).strip().endswith("caught up")
    assert first.stop() == 0

    # The stored position of partition 0 lies past its log's end (the log was reset).
    connection = await asyncpg.connect(pg.url(driver="postgresql"))

    async def stored() -> int:
        value = await connection.fetchval(
            "SELECT next_offset FROM consumer_offsets "
            "WHERE group_id = $1 AND topic = $2 AND partition = 0",
            names["group"],
            names["topic"],
        )
        assert isinstance(value, int)
        return value

    try:
        await connection.execute(
            "UPDATE consumer_offsets SET next_offset = 1000 "
            "WHERE group_id = $1 AND topic = $2 AND partition = 0",
            names["group"],
            names["topic"],
        )
        consumer, url, operator = start(position_check_interval_s=1.0)
        stopped = f'{{partition="0",topic="{names["topic"]}"}}'
        await wait_for_metric(
            url, "inventory_sink_partition_stopped", lambda s: s.get(stopped) == 1.0, consumer
        )

        report = operator.run(POSITIONS, code=1)
        row = next(line.split() for line in report.splitlines() if line.split()[:1] == ["0"])
        assert row[1] == "1000" and row[-1] == "ahead-of-log", report
        assert operator.run(RESET_DRY) and await stored() == 1000  # a dry run changes nothing
        operator.run(RESET)
        assert await stored() == 0  # the log start

        await wait_for_metric(
            url, "inventory_sink_partition_stopped", lambda s: s.get(stopped) == 0.0, consumer
        )
        report = operator.run(POSITIONS)
        assert all(
            line.split()[-1] == "ok" for line in report.splitlines() if line.split()[0].isdigit()
        ), report
        assert operator.run(LAG_WAIT).strip().endswith("caught up")
    finally:
        await connection.close()


def test_every_command_of_the_runbooks_is_run_here() -> None:
    """Every line of a block marked `run-by: tests/integration/test_runbooks.py` is one of
    COMMANDS, and every command here is on a page (none is tested for nothing)."""
    block = re.compile(r"<!-- run-by: (\S+) -->\n```sh\n(.*?)```", re.S)
    shown: set[str] = set()
    for page in sorted(RUNBOOKS.glob("*.md")):
        for runner, commands in block.findall(page.read_text()):
            assert runner == "tests/integration/test_runbooks.py", page.name
            shown.update(line for line in commands.splitlines() if line.strip())
    assert shown - COMMANDS == set(), "run these here, as on their pages"
    assert COMMANDS - shown == set(), "no page shows these any more"
