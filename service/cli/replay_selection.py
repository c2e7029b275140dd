"""Which dead letters to replay (`dead-letters replay` options): pure, no I/O.

Kept free of Kafka imports: the command line builds these options on every invocation.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from service.core.domain import Reason

if TYPE_CHECKING:
    from service.core.letters import Letter

OffsetsOf = Literal["original", "dlq"]


class SelectionError(ValueError):
    """The selection is missing or contradictory; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters to replay: every given criterion must hold (`everything`: all)."""

    reasons: frozenset[str] = frozenset()
    offsets_of: OffsetsOf = "original"  # which positions partition/from/to refer to
    partition: int | None = None
    from_offset: int | None = None  # inclusive
    to_offset: int | None = None  # inclusive
    since: datetime | None = None  # inclusive, on the DLQ record's timestamp
    until: datetime | None = None  # exclusive
    everything: bool = False

    def __post_init__(self) -> None:
        narrowed = bool(self.reasons) or any(
            value is not None
            for value in (self.partition, self.from_offset, self.to_offset, self.since, self.until)
        )
        if self.everything and narrowed:
            raise SelectionError(
                "--all replays every dead letter and cannot be combined with --reason, "
                "--partition, --from-offset, --to-offset, --since or --until; drop one or the other"
            )
        if not self.everything and not narrowed:
            raise SelectionError(
                "choose which dead letters to replay: --reason REASON, --partition P "
                "[--from-offset A] [--to-offset B] [--offsets dlq], --since/--until TIME, "
                "or --all for every one; add --dry-run to list them first"
            )
        if (self.from_offset is not None or self.to_offset is not None) and self.partition is None:
            raise SelectionError(
                "offsets are per partition: give --partition with --from-offset/--to-offset"
            )
        if (
            self.from_offset is not None
            and self.to_offset is not None
            and self.from_offset > self.to_offset
        ):
            raise SelectionError(
                f"--from-offset {self.from_offset} is after --to-offset {self.to_offset}; "
                "the range is inclusive at both ends, so give the lower offset first"
            )
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise SelectionError(
                f"--since {self.since.isoformat()} is not before --until "
                f"{self.until.isoformat()}; the range includes --since and excludes --until"
            )

    def matches(self, letter: Letter) -> bool:
        if self.reasons and letter.reason not in self.reasons:
            return False
        if self.since is not None and letter.timestamp < self.since:
            return False
        if self.until is not None and letter.timestamp >= self.until:
            return False
        if self.partition is None:
            return True
        partition: int | None
        offset: int | None
        if self.offsets_of == "dlq":
            partition, offset = letter.partition, letter.offset
        else:
            partition, offset = letter.original_partition, letter.original_offset
        if partition != self.partition or offset is None:
            return False
        if self.from_offset is not None and offset < self.from_offset:
            return False
        return self.to_offset is None or offset <= self.to_offset


def read_ranges(
    selection: Selection,
    starts: Mapping[int, int],
    ends: Mapping[int, int],
    since_offsets: Mapping[int, int | None] | None = None,
) -> dict[int, tuple[int, int]]:
    """Per DLQ partition, the offsets [start, stop) worth reading for `selection`.

    `starts`/`ends` are the partitions' log start and end offsets when the replay begins
    (so letters dead-lettered during the replay are never read); `since_offsets` the first
    offset at or after `selection.since` (None: no record that late). Empty ranges are left out.
    """
    ranges: dict[int, tuple[int, int]] = {}
    for partition, end in ends.items():
        start, stop = starts.get(partition, 0), end
        if selection.offsets_of == "dlq" and selection.partition is not None:
            if partition != selection.partition:
                continue
            if selection.from_offset is not None:
                start = max(start, selection.from_offset)
            if selection.to_offset is not None:
                stop = min(stop, selection.to_offset + 1)
        if since_offsets is not None:
            first = since_offsets.get(partition)
            start = max(start, first if first is not None else stop)
        if start < stop:
            ranges[partition] = (start, stop)
    return ranges


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (`2026-01-31T09:00:00+01:00`, `2026-01-31T08:00Z`, `2026-01-31`);
    without an offset it is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time; write e.g. 2026-01-31T09:00:00+00:00 or 2026-01-31"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _offset(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an offset (an integer >= 0)")
    return value


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `dead-letters replay`."""
    choose = parser.add_argument_group("selection (at least one; every given one must hold)")
    choose.add_argument(
        "--reason",
        action="append",
        default=[],
        choices=[reason.value for reason in Reason],
        metavar="REASON",
        help="the letter's error.reason, one of: "
        + ", ".join(reason.value for reason in Reason)
        + " (repeat for several)",
    )
    choose.add_argument(
        "--partition", type=_offset, metavar="P", help="partition of the offsets below"
    )
    choose.add_argument(
        "--from-offset", type=_offset, metavar="OFFSET", help="first offset (inclusive)"
    )
    choose.add_argument(
        "--to-offset", type=_offset, metavar="OFFSET", help="last offset (inclusive)"
    )
    choose.add_argument(
        "--offsets",
        choices=["original", "dlq"],
        default="original",
        help="whether --partition/--from-offset/--to-offset are the record's original position "
        "on KAFKA_TOPIC (default) or the letter's position on KAFKA_DLQ_TOPIC",
    )
    choose.add_argument(
        "--since",
        type=parse_time,
        metavar="TIME",
        help="dead-lettered at or after this ISO 8601 time",
    )
    choose.add_argument(
        "--until", type=parse_time, metavar="TIME", help="dead-lettered before this ISO 8601 time"
    )
    choose.add_argument("--all", action="store_true", help="every dead letter")
    parser.add_argument(
        "--dry-run", action="store_true", help="list what would be replayed; publish nothing"
    )


def selection_from_args(args: argparse.Namespace) -> Selection:
    """The selection the options describe; SelectionError if there is none or it conflicts."""
    return Selection(
        reasons=frozenset(args.reason),
        offsets_of=args.offsets,
        partition=args.partition,
        from_offset=args.from_offset,
        to_offset=args.to_offset,
        since=args.since,
        until=args.until,
        everything=args.all,
    )
