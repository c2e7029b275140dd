"""A stand-in for aiokafka's consumer: what the handler asks of it, recorded in order."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import TopicPartition

from service.core.records import TopicAndPartition


class FakeConsumer:
    """Owns `assigned`; records seeks, pauses, commits, log start look-ups and stop in
    `events`, optionally shared with other fakes so a test can assert the order of
    everything. The log of each partition starts at `log_starts` (0 if not given) and ends
    at `log_ends` as last fetched (unknown if not given)."""

    def __init__(
        self,
        assigned: Iterable[TopicAndPartition] = (),
        events: list[object] | None = None,
        log_starts: dict[TopicAndPartition, int] | None = None,
        log_ends: dict[TopicAndPartition, int] | None = None,
    ) -> None:
        self.assigned = {TopicPartition(t, p) for t, p in assigned}
        self.events: list[object] = [] if events is None else events
        self.commits: list[dict[TopicAndPartition, int]] = []
        self.fail_commits = 0  # how many of the next commits raise
        self.log_starts = dict(log_starts or {})
        self.log_ends = dict(log_ends or {})

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def revoke(self, topic: str, partition: int) -> None:
        self.assigned.discard(TopicPartition(topic, partition))

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.events.append(("seek", (partition.topic, partition.partition), offset))

    def pause(self, *partitions: TopicPartition) -> None:
        self.events.append(("pause", sorted((tp.topic, tp.partition) for tp in partitions)))

    def highwater(self, partition: TopicPartition) -> int | None:
        # aiokafka asserts the same: a partition revoked meanwhile has no fetch state.
        assert partition in self.assigned, "Partition is not assigned"
        return self.log_ends.get((partition.topic, partition.partition))

    async def beginning_offsets(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """A round trip to the broker in aiokafka."""
        self.events.append(("beginning_offsets", [(tp.topic, tp.partition) for tp in partitions]))
        return {tp: self.log_starts.get((tp.topic, tp.partition), 0) for tp in partitions}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise RuntimeError("CommitFailedError: the group is rebalancing")
        plain = {(tp.topic, tp.partition): offset for tp, offset in offsets.items()}
        self.commits.append(plain)
        self.events.append(("kafka commit", plain))

    async def stop(self) -> None:
        """aiokafka's stop: the consumer leaves its group."""
        self.events.append("consumer stopped, left the group")
