"""Which dead letters a replay selects, and what a replayed record carries (pure)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

from service.cli.main import build_parser
from service.cli.replay_selection import (
    Resume,
    Selection,
    SelectionError,
    parse_time,
    read_ranges,
    resume_points,
    selection_from_args,
)
from service.core.domain import Reason
from service.core.letters import DeadLetter, Letter
from tests.support.write_path import SimpleRecord

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def letter(
    reason: Reason = Reason.UNKNOWN_PRODUCT,
    *,
    partition: int = 0,
    offset: int = 10,
    original: tuple[int, int] = (2, 100),
    at: datetime = T0,
    headers: tuple[tuple[str, bytes], ...] = (),
    topic: str = "events",
) -> Letter:
    """A DLQ record exactly as the sink writes it, read back."""
    source = SimpleRecord(topic, original[0], original[1], b"7", b"{}", headers)
    dead = DeadLetter(source, reason, "product 7 does not exist")
    record = SimpleRecord("events.dlq", partition, offset, b"7", b"{}", tuple(dead.headers()))
    return Letter.of(_Timed(record, int(at.timestamp() * 1000)))


def selects(selection: Selection, read: Letter) -> bool:
    """Whether a replay to the input topic `events` publishes `read`."""
    return selection.verdict(read, "events") == "replay"


class _Timed:
    def __init__(self, record: SimpleRecord, timestamp: int) -> None:
        self.partition, self.offset, self.timestamp = record.partition, record.offset, timestamp
        self.key, self.value, self.headers = record.key, record.value, record.headers


def test_a_letter_reads_the_sinks_headers() -> None:
    read = letter(Reason.INSUFFICIENT_STOCK, partition=1, offset=4, original=(3, 55))
    assert (read.reason, read.original_topic, read.original_partition, read.original_offset) == (
        "insufficient_stock",
        "events",
        3,
        55,
    )
    assert (read.partition, read.offset, read.timestamp) == (1, 4, T0)
    assert read.message == "product 7 does not exist"


def test_replay_headers_are_the_original_ones_then_replayed_from() -> None:
    original = (("trace", b"\xff\x00"), ("x", b"1"), ("trace", b"second"))
    read = letter(headers=original, partition=2, offset=9)
    assert read.replay_headers("events.dlq") == [*original, ("replayed.from", b"events.dlq/2/9")]


def test_replay_headers_keep_originals_named_like_the_sinks_but_drop_an_earlier_replay_mark() -> (
    None
):
    """The original headers come back exactly, even one named like the sink's own; a replayed
    record dead-lettered again carries `replayed.from`, and replaying that letter names only
    the newest letter."""
    original = (("replayed.from", b"events.dlq/0/1"), ("error.reason", b"forged"), ("k", b"v"))
    read = letter(headers=original, offset=30)
    assert read.replay_headers("events.dlq") == [
        ("error.reason", b"forged"),
        ("k", b"v"),
        ("replayed.from", b"events.dlq/0/30"),
    ]


def test_a_record_without_sink_headers_is_still_a_letter() -> None:
    record = _Timed(SimpleRecord("d", 0, 1, None, b"x", (("error.reason", b"\xff"),)), 0)
    read = Letter.of(record)
    assert (read.reason, read.original_topic, read.original_offset) == ("\ufffd", None, None)
    assert "no original.* headers" in read.describe("d")


def test_no_selection_is_refused_with_the_options_named() -> None:
    with pytest.raises(SelectionError, match=r"--reason.*--all.*--dry-run"):
        Selection()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"everything": True, "reasons": frozenset({"unknown_product"})}, "cannot be combined"),
        ({"from_offset": 3}, "give --partition"),
        ({"partition": 0, "from_offset": 5, "to_offset": 4}, "lower offset first"),
        ({"since": T0, "until": T0}, "not before --until"),
    ],
)
def test_contradictory_selections_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SelectionError, match=message):
        Selection(**kwargs)  # type: ignore[arg-type]


def test_reasons_select_any_of_them() -> None:
    selection = Selection(reasons=frozenset({"unknown_product", "unstorable"}))
    assert selects(selection, letter(Reason.UNKNOWN_PRODUCT))
    assert selects(selection, letter(Reason.UNSTORABLE))
    assert not selects(selection, letter(Reason.INVALID_JSON))


def test_all_selects_everything() -> None:
    assert selects(Selection(everything=True), letter(Reason.INVALID_JSON))


def test_original_offset_range_is_inclusive_and_per_partition() -> None:
    selection = Selection(partition=2, from_offset=100, to_offset=102)
    assert [selects(selection, letter(original=(2, o))) for o in (99, 100, 102, 103)] == [
        False,
        True,
        True,
        False,
    ]
    assert not selects(selection, letter(original=(1, 100)))
    assert selects(Selection(partition=2), letter(original=(2, 0)))
    assert selects(Selection(partition=2, to_offset=5), letter(original=(2, 5)))


def test_dlq_offset_range_uses_the_letters_own_position() -> None:
    selection = Selection(offsets_of="dlq", partition=1, from_offset=10, to_offset=10)
    assert selects(selection, letter(partition=1, offset=10, original=(0, 999)))
    assert not selects(selection, letter(partition=0, offset=10, original=(1, 10)))


def test_time_range_includes_since_and_excludes_until() -> None:
    selection = Selection(since=T0, until=T0 + timedelta(hours=1))
    moments = [T0 - timedelta(seconds=1), T0, T0 + timedelta(minutes=59), T0 + timedelta(hours=1)]
    assert [selects(selection, letter(at=m)) for m in moments] == [False, True, True, False]


def test_criteria_are_combined_with_and() -> None:
    selection = Selection(reasons=frozenset({"unknown_product"}), since=T0)
    assert selects(selection, letter(Reason.UNKNOWN_PRODUCT, at=T0))
    assert not selects(selection, letter(Reason.INVALID_JSON, at=T0))
    assert not selects(selection, letter(Reason.UNKNOWN_PRODUCT, at=T0 - timedelta(days=1)))


def test_read_ranges_stop_at_the_end_offsets_seen_at_start() -> None:
    ranges = read_ranges(Selection(everything=True), {0: 5, 1: 0, 2: 7}, {0: 9, 1: 3, 2: 7})
    assert ranges == {0: (5, 9), 1: (0, 3)}  # partition 2 is empty


def test_read_ranges_of_a_dlq_offset_range_read_only_that_slice() -> None:
    selection = Selection(offsets_of="dlq", partition=1, from_offset=4, to_offset=6)
    assert read_ranges(selection, {0: 0, 1: 5}, {0: 50, 1: 50}) == {1: (5, 7)}
    original = Selection(partition=1, from_offset=4, to_offset=6)  # original offsets: read all
    assert read_ranges(original, {0: 0, 1: 5}, {0: 50, 1: 50}) == {0: (0, 50), 1: (5, 50)}


def test_read_ranges_start_at_the_first_letter_since() -> None:
    ranges = read_ranges(Selection(since=T0), {0: 0, 1: 0}, {0: 10, 1: 10}, {0: 4, 1: None})
    assert ranges == {0: (4, 10)}  # partition 1 has nothing that late


def test_times_are_iso_8601_and_naive_ones_are_utc() -> None:
    assert parse_time("2026-03-01T13:00:00+01:00") == T0
    assert parse_time("2026-03-01T12:00Z") == T0
    assert parse_time("2026-03-01T12:00:00") == T0
    assert parse_time("2026-03-01") == T0 - timedelta(hours=12)
    with pytest.raises(argparse.ArgumentTypeError, match="ISO 8601"):
        parse_time("yesterday")


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["dead-letters", "replay", *argv])


def test_the_command_line_builds_the_selection() -> None:
    args = _args("--reason", "unknown_product", "--reason", "unstorable", "--since", "2026-03-01")
    assert selection_from_args(args) == Selection(
        reasons=frozenset({"unknown_product", "unstorable"}), since=T0 - timedelta(hours=12)
    )
    args = _args("--offsets", "dlq", "--partition", "2", "--from-offset", "7", "--dry-run")
    assert args.dry_run
    assert selection_from_args(args) == Selection(offsets_of="dlq", partition=2, from_offset=7)


def test_the_command_line_refuses_unknown_reasons_and_negative_offsets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (["--reason", "nope"], ["--partition", "-1"]):
        with pytest.raises(SystemExit) as exit_:
            _args(*argv)
        assert exit_.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_dead_letters_without_an_action_still_lists_them() -> None:
    args = build_parser().parse_args(["dead-letters", "--count"])
    assert (args.func.__name__, args.count, args.action) == ("_dead_letters", True, None)
    assert _args("--all").func.__name__ == "_replay_dead_letters"


def test_a_cut_letter_says_what_was_cut_and_its_original_headers_come_back() -> None:
    record = SimpleRecord("events", 2, 9, b"7", bytes(5_000_000), (("trace", b"t"),))
    form = DeadLetter(record, Reason.RECORD_TOO_LARGE, "too large").forms(1 << 20)[0]
    assert form is not None and form.cut == ("value",)
    published = SimpleRecord("events.dlq", 0, 30, form.key, form.value, form.headers)
    read = Letter.of(_Timed(published, 0))
    assert (read.cut, read.reason, read.original_offset) == ("value", "record_too_large", 9)
    assert "record_too_large (cut: value): too large" in read.describe("events.dlq")
    assert read.replay_headers("events.dlq") == [
        ("trace", b"t"),
        ("replayed.from", b"events.dlq/0/30"),
    ]
    plain = Letter.of(_Timed(SimpleRecord("d", 0, 1, b"7", b"x", record.headers), 0))
    assert plain.cut is None


def test_offsets_select_only_letters_of_the_input_topic() -> None:
    """The same partition and offset on a former input topic is another record: offset
    selections name it apart, so the replay can say how many it skipped and why."""
    former = letter(original=(2, 100), topic="events.v0")
    for selection in (
        Selection(partition=2, from_offset=100, to_offset=100),
        Selection(offsets_of="dlq", partition=0, from_offset=10, to_offset=10),
    ):
        assert selection.verdict(letter(original=(2, 100)), "events") == "replay"
        assert selection.verdict(former, "events") == "other topic"
    # Other criteria do not name a position: they select letters of any original topic.
    assert Selection(reasons=frozenset({"unknown_product"})).verdict(former, "events") == "replay"
    assert Selection(partition=1).verdict(former, "events") == "not selected"


def test_a_cut_letter_that_is_selected_is_named_not_replayed() -> None:
    record = SimpleRecord("events", 2, 9, b"7", bytes(5_000_000), ())
    form = DeadLetter(record, Reason.RECORD_TOO_LARGE, "too large").forms(1 << 20)[0]
    assert form is not None
    read = Letter.of(_Timed(SimpleRecord("d", 0, 3, form.key, form.value, form.headers), 0))
    assert Selection(everything=True).verdict(read, "events") == "cut"
    assert Selection(reasons=frozenset({"invalid_json"})).verdict(read, "events") == "not selected"


def test_resume_points_start_at_each_partitions_first_unconfirmed_or_unread_letter() -> None:
    ranges = {0: (0, 50), 1: (10, 40), 2: (0, 30), 3: (5, 9)}
    read_to = {0: 50, 1: 25, 3: 9}  # partition 2 not reached at all
    unconfirmed = [(0, 44), (0, 12), (1, 20), (0, 30)]
    assert resume_points(ranges, read_to, unconfirmed) == (
        Resume(0, 12, 49),  # read to its end: from its first unconfirmed letter
        Resume(1, 20, 39),  # unconfirmed before where reading stopped
        Resume(2, 0, 29),  # never read: all of it
    )  # partition 3: read and confirmed, done
    assert resume_points({1: (10, 40)}, {1: 25}, []) == (Resume(1, 25, 39),)


def test_a_resume_reads_only_its_positions_and_keeps_the_other_criteria() -> None:
    selection = Selection(
        reasons=frozenset({"unknown_product"}), resume=(Resume(0, 12, 49), Resume(2, 0, 29))
    )
    ranges = read_ranges(selection, {0: 0, 1: 0, 2: 3}, {0: 60, 1: 60, 2: 60})
    assert ranges == {0: (12, 50), 2: (3, 30)}
    assert selects(selection, letter(partition=0, offset=12))
    assert not selects(selection, letter(partition=0, offset=11))
    assert not selects(selection, letter(partition=0, offset=50))
    assert not selects(selection, letter(partition=1, offset=20))
    assert not selects(selection, letter(Reason.INVALID_JSON, partition=2, offset=3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resume": (Resume(0, 1, 2),)}, "give it with that run's options"),
        ({"everything": True, "resume": (Resume(0, 1, 2), Resume(0, 5, 6))}, "partition twice"),
        ({"everything": True, "resume": (Resume(0, 3, 2),)}, "first offset is after the last"),
    ],
)
def test_bad_resumes_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SelectionError, match=message):
        Selection(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "selection",
    [
        Selection(everything=True, resume=(Resume(0, 15, 99), Resume(2, 0, 7))),
        Selection(
            reasons=frozenset({"unknown_product", "unstorable"}),
            offsets_of="dlq",
            partition=1,
            from_offset=3,
            to_offset=9,
            resume=(Resume(1, 5, 9),),
        ),
        Selection(partition=2, from_offset=4, since=T0, until=T0 + timedelta(days=1)),
    ],
)
def test_a_selections_options_give_it_back(selection: Selection) -> None:
    """A refused replay prints its selection as options: they must select the same."""
    assert selection_from_args(_args(*selection.options())) == selection


def test_resume_options_are_parsed_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    args = _args("--all", "--resume", "0:15-99", "--resume", "2:0-7")
    assert selection_from_args(args).resume == (Resume(0, 15, 99), Resume(2, 0, 7))
    with pytest.raises(SystemExit):
        _args("--all", "--resume", "0@15")
    assert "copy the --resume P:FIRST-LAST options" in capsys.readouterr().err
