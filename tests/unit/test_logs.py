"""LOG_FORMAT=json: one JSON object per line, with the record's fields."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from service.logs import JsonFormatter, partition_fields, record_fields
from tests.support.write_path import SimpleRecord


def _line(message: str, *args: object, **kwargs: object) -> dict[str, object]:
    record = logging.getLogger("service.test").makeRecord(
        "service.test",
        logging.WARNING,
        __file__,
        1,
        message,
        args,
        None,
        **kwargs,  # type: ignore[arg-type]
    )
    text = JsonFormatter().format(record)
    assert "\n" not in text and text.isascii()
    parsed = json.loads(text)
    assert isinstance(parsed, dict)
    return parsed


def test_a_line_has_timestamp_level_logger_message_and_the_records_fields() -> None:
    record = SimpleRecord("events", 2, 41, b"k", b"v")
    line = _line("dead-lettered %s", "it", extra=record_fields(record) | {"reason": "invalid_json"})
    assert line["timestamp"].endswith("+00:00")  # type: ignore[union-attr]
    assert {k: line[k] for k in ("level", "logger", "message")} == {
        "level": "WARNING",
        "logger": "service.test",
        "message": "dead-lettered it",
    }
    assert (line["topic"], line["partition"], line["offset"], line["reason"]) == (
        "events",
        2,
        41,
        "invalid_json",
    )
    assert "args" not in line and "msg" not in line  # LogRecord internals stay out
    assert "color_message" not in _line("x", extra={"color_message": "\x1b[36mx\x1b[0m"})


def test_partition_fields_name_the_partition_and_an_optional_offset() -> None:
    assert partition_fields(("t", 1)) == {"topic": "t", "partition": 1}
    assert _line("x", extra=partition_fields(("t", 1), 7))["offset"] == 7


def test_awkward_content_still_gives_one_json_line() -> None:
    assert _line("value %s", b"\xff\x00\xfe")["message"] == "value b'\\xff\\x00\\xfe'"
    assert (
        _line("\udcff lone surrogate and \u00e9")["message"] == "\udcff lone surrogate and \u00e9"
    )
    assert "%d" in str(_line("bad format %d", "not a number")["message"])
    odd = _line("x", extra={"positions": {("t", 0): 5}, "raw": b"\x00"})
    assert odd["positions"] == "{('t', 0): 5}" and odd["raw"] == "b'\\x00'"


def test_an_exception_is_a_field_of_the_same_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed"
    assert "ValueError: boom" in line["exception"]


def test_json_mode_routes_library_loggers_warnings_and_crashes_through_json() -> None:
    program = """
import logging, warnings
from service.logs import configure_logging
configure_logging("INFO", "json")
import faststream
logging.getLogger("faststream").info("from faststream")
logging.getLogger("uvicorn.error").info("from uvicorn")
warnings.warn("a warning")
raise RuntimeError("a crash")
"""
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [line["message"] for line in lines[:2]] == ["from faststream", "from uvicorn"]
    assert "a warning" in lines[2]["message"]
    assert lines[3]["level"] == "CRITICAL" and "RuntimeError: a crash" in lines[3]["exception"]
    assert len(lines) == 4
