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
    """The process stood still inside the batch's transaction for most of the time the group
    waits for a silent member (it was frozen: SIGSTOP, a stopped VM, a long pause): its
    partitions may have been given to another member meanwhile, so it is rolled back, not
    committed, and run again once the consumer knows what it owns."""
