"""Failures of a batch that are not the data's fault, and what the write path does with them."""

from __future__ import annotations


class UnstorableRow(ValueError):
    """A value of the batch cannot be put into a statement at all (the database never saw
    it): like a refusal by the database, retrying cannot help."""


class Conflict(Exception):
    """Another transaction changed a row this one read before writing it (a product in two
    partitions written at once, after the partition count changed): run the batch again."""


class PartitionStopped(Exception):
    """A partition of the batch was stopped while it was written (its dead letter cannot be
    published in any form): run the batch again, which now holds that partition back."""


class OwnershipLapsed(Exception):
    """The batch's transaction lasted longer than the group waits for a silent member (the
    process was frozen, or the database or the dead-letter topic stalled it): its partitions
    may have been given to another member meanwhile, so it is rolled back, not committed, and
    run again once the consumer knows what it owns."""
