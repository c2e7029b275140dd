"""Which dead letters to replay (`dead-letters replay` options): pure, no I/O.

Kept free of Kafka imports: the command line builds these options on every invocation.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from service.core.domain import Reason

if TYPE_CHECKING:
    from service.core.letters import Letter

OffsetsOf = Literal["original", "dlq"]
# What a replay does with a letter it reads: publish it; leave it (not selected); name it and
# leave it (selected by offsets but dead-lettered from another input topic, or cut to fit).
Verdict = Literal["replay", "not selected", "other topic", "cut"]


class SelectionError(ValueError):
    """The selection is missing or contradictory; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a refused replay left letters unconfirmed in one DLQ partition: its letters
    from `first` to `last` (inclusive; `last` is the last one that run read) are read again."""

    partition: int  # of the DLQ topic
    first: int
    last: int

    def option(self) -> str:
        return f"{self.partition}:{self.first}-{self.last}"


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
    # Set by a resume: only these DLQ positions are read (the other criteria still hold).
    resume: tuple[Resume, ...] = ()

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
        if not self.everything and not narrowed and self.resume:
            raise SelectionError(
                "--resume goes on with a refused replay's selection: give it with that run's "
                "options, as the refused replay printed them (e.g. --reason R or --all)"
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
        self._check_resume()

    def _check_resume(self) -> None:
        partitions = [point.partition for point in self.resume]
        if len(set(partitions)) != len(partitions):
            raise SelectionError(
                "--resume names a DLQ partition twice; give each partition once, as the "
                "refused replay printed them"
            )
        for point in self.resume:
            if point.first > point.last:
                raise SelectionError(
                    f"--resume {point.option()}: the first offset is after the last; "
                    "copy the --resume options the refused replay printed"
                )

    def verdict(self, letter: Letter, input_topic: str) -> Verdict:
        """What a replay to `input_topic` (KAFKA_TOPIC) does with `letter`."""
        if not self._holds(letter):
            return "not selected"
        # Offsets are positions of KAFKA_TOPIC's records (--offsets dlq: letters of them): the
        # same numbers on a former input topic name other records, which a replay would
        # publish into KAFKA_TOPIC.
        if self.partition is not None and letter.original_topic != input_topic:
            return "other topic"
        if letter.cut is not None:
            return "cut"
        return "replay"

    def _holds(self, letter: Letter) -> bool:
        if self.resume and not any(
            p.partition == letter.partition and p.first <= letter.offset <= p.last
            for p in self.resume
        ):
            return False
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

    def options(self) -> list[str]:
        """The command-line options that give this selection (a resume prints them)."""
        argv: list[str] = []
        for reason in sorted(self.reasons):
            argv += ["--reason", reason]
        if self.partition is not None:
            argv += ["--offsets", self.offsets_of, "--partition", str(self.partition)]
        if self.from_offset is not None:
            argv += ["--from-offset", str(self.from_offset)]
        if self.to_offset is not None:
            argv += ["--to-offset", str(self.to_offset)]
        if self.since is not None:
            argv += ["--since", self.since.isoformat()]
        if self.until is not None:
            argv += ["--until", self.until.isoformat()]
        if self.everything:
            argv.append("--all")
        for point in self.resume:
            argv += ["--resume", point.option()]
        return argv


def resume_points(
    ranges: Mapping[int, tuple[int, int]],
    read_to: Mapping[int, int],
    unconfirmed: Iterable[tuple[int, int]],
) -> tuple[Resume, ...]:
    """Where a refused replay must go on, per DLQ partition in partition order: from its
    first letter not confirmed, or from where it stopped reading, whichever is earlier;
    partitions with neither are done and left out.

    `ranges`: what the run was to read ([start, stop) per partition, `read_ranges`);
    `read_to`: per partition, the offset after the last letter it read; `unconfirmed`: the
    (partition, offset) of each letter sent but not confirmed."""
    first: dict[int, int] = {}
    for partition, offset in unconfirmed:
        first[partition] = min(offset, first.get(partition, offset))
    points = []
    for partition, (start, stop) in sorted(ranges.items()):
        candidates = [first[partition]] if partition in first else []
        unread = read_to.get(partition, start)
        if unread < stop:
            candidates.append(unread)
        if candidates:
            points.append(Resume(partition, min(candidates), stop - 1))
    return tuple(points)


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
    resume = {point.partition: point for point in selection.resume}
    ranges: dict[int, tuple[int, int]] = {}
    for partition, end in ends.items():
        start, stop = starts.get(partition, 0), end
        if resume:
            point = resume.get(partition)
            if point is None:
                continue
            start, stop = max(start, point.first), min(stop, point.last + 1)
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


RESUME = re.compile(r"(\d+):(\d+)-(\d+)")


def _resume(text: str) -> Resume:
    found = RESUME.fullmatch(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a resume position; copy the --resume P:FIRST-LAST options the "
            "refused replay printed"
        )
    partition, first, last = (int(group) for group in found.groups())
    return Resume(partition, first, last)


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
        "--partition",
        type=_offset,
        metavar="P",
        help="partition of the offsets below (selects only letters dead-lettered from "
        "KAFKA_TOPIC: another topic's offsets name other records)",
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
        "--resume",
        action="append",
        default=[],
        type=_resume,
        metavar="P:FIRST-LAST",
        help="go on after a refused replay: read only these DLQ positions (repeated per DLQ "
        "partition; the refused replay prints the whole command, selection included)",
    )
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
        resume=tuple(args.resume),
    )
