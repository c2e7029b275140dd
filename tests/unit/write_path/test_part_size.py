"""How many records of a batch one transaction takes (service/write_path/part_size.py)."""

from __future__ import annotations

from service.write_path.part_size import PartSize


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_whole_batch_until_an_attempt_runs_out_of_time() -> None:
    parts = PartSize(clock=Clock())
    assert [parts.of(n) for n in (1, 2000, 5000)] == [1, 2000, 5000]
    assert parts.limit is None


def test_each_timeout_halves_the_part_down_to_one_record() -> None:
    parts = PartSize(clock=Clock())
    limits = []
    tried = 2000
    for _ in range(12):
        limits.append(parts.ran_out_of_time(tried))
        tried = parts.of(2000)
    assert limits == [1000, 500, 250, 125, 62, 31, 15, 7, 3, 1, 1, 1]
    assert parts.of(2000) == 1


def test_a_smaller_batch_than_the_limit_is_taken_whole() -> None:
    parts = PartSize(clock=Clock())
    parts.ran_out_of_time(1441)
    assert (parts.of(2000), parts.of(300)) == (720, 300)


def test_the_limit_doubles_after_each_quiet_interval_until_whole_batches_again() -> None:
    clock = Clock()
    parts = PartSize(regrow_s=60, clock=clock)
    parts.ran_out_of_time(2000)  # 1000
    parts.ran_out_of_time(1000)  # 500
    clock.now = 59.9
    assert parts.of(5000) == 500
    clock.now = 60.0
    assert parts.of(5000) == 1000
    clock.now = 150.0  # one more interval (to 120 s), not two
    assert parts.of(5000) == 2000
    clock.now = 60.0 * 12  # 500 doubled 11 times: 1,024,000, more than any batch
    assert parts.of(5000) == 5000
    assert parts.limit is None


def test_a_small_batch_does_not_lift_the_limit_for_the_next_big_one() -> None:
    clock = Clock()
    parts = PartSize(regrow_s=60, clock=clock)
    parts.ran_out_of_time(500)  # 250
    clock.now = 60.0
    assert parts.of(300) == 300  # within the regrown limit (500)
    assert parts.of(2000) == 500


def test_a_timeout_while_regrowing_starts_the_interval_again() -> None:
    clock = Clock()
    parts = PartSize(regrow_s=60, clock=clock)
    parts.ran_out_of_time(800)  # 400
    clock.now = 61.0
    assert parts.of(2000) == 800
    parts.ran_out_of_time(800)  # 400 again, at 61 s
    clock.now = 120.0
    assert parts.of(2000) == 400
    clock.now = 121.0
    assert parts.of(2000) == 800
