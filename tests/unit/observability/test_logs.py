"""Log lines: LOG_FORMAT=json (one JSON object each) and text (one escaped line each)."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from typing import Any

import pytest

from service.observability.logs import (
    BRIEF_CHARS,
    JsonFormatter,
    TextFormatter,
    brief,
    one_line,
    partition_fields,
    record_fields,
)
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
from service.observability.logs import configure_logging
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


# The documented text format: `time LEVEL logger: message`, one line.
TEXT_LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: [^\n]*"
)
FORGED = "x\n2026-01-01 00:00:00,000 CRITICAL service.pipeline: FORGED"


def _text(message: str, *args: object, exc_info: Any = None) -> str:
    record = logging.getLogger("service.test").makeRecord(
        "service.test", logging.WARNING, __file__, 1, message, args, exc_info
    )
    return TextFormatter().format(record)


def test_a_text_line_cannot_be_broken_by_what_a_record_says() -> None:
    line = _text("dead-lettered t[0]@1 as invalid_event: %s", FORGED)
    assert TEXT_LINE.fullmatch(line), line
    assert line.endswith(
        r"invalid_event: x\n2026-01-01 00:00:00,000 CRITICAL service.pipeline: FORGED"
    )
    assert len(line.splitlines()) == 1


@pytest.mark.parametrize("code", [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, 0xDCFF])
def test_every_control_character_is_escaped(code: int) -> None:
    line = _text("value %s", f"a{chr(code)}b")
    assert TEXT_LINE.fullmatch(line), repr(line)
    assert len(line.splitlines()) == 1 and line.isprintable(), repr(line)
    escaped = {0x09: r"\t", 0x0A: r"\n", 0x0D: r"\r"}.get(code) or (
        f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    )
    assert line.endswith(f"value a{escaped}b")


def test_printable_text_is_kept_as_it_is() -> None:
    text = "é ü — 价格 \\n 'quoted' b'\\xff' 100%"
    assert one_line(text) == text
    assert _text("%s", text).endswith(f": {text}")


def test_a_traceback_is_escaped_into_its_line_too() -> None:
    try:
        raise ValueError(FORGED)
    except ValueError:
        line = _text("failed", exc_info=sys.exc_info())
    assert TEXT_LINE.fullmatch(line), line
    assert r"failed\nTraceback (most recent call last):\n" in line
    assert r"ValueError: x\n2026-01-01 00:00:00,000 CRITICAL" in line


def test_a_bad_format_string_still_gives_one_line() -> None:
    line = _text("bad format %d\n", "not a number")
    assert TEXT_LINE.fullmatch(line), line
    assert "bad format %d\\n" in line


def test_text_mode_routes_library_loggers_warnings_and_crashes_through_one_line_each() -> None:
    program = f"""
import logging, warnings
from service.observability.logs import configure_logging
configure_logging("INFO", "text")
import faststream
logging.getLogger("faststream").info("from faststream")
logging.getLogger("uvicorn.error").info("from uvicorn")
warnings.warn("a warning")
raise RuntimeError({FORGED!r})
"""
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert all(TEXT_LINE.fullmatch(line) for line in lines), result.stderr
    assert [line.split(" ", 3)[3] for line in lines[:2]] == [
        "faststream: from faststream",
        "uvicorn.error: from uvicorn",
    ]
    assert " WARNING py.warnings: " in lines[2] and "a warning" in lines[2]
    assert " CRITICAL service: uncaught RuntimeError: x\\n2026-01-01" in lines[3]
    assert len(lines) == 4


def test_brief_names_the_type_and_the_first_line_once() -> None:
    assert brief(ValueError("bad value\nsecond line")) == "ValueError: bad value"
    assert brief(TimeoutError()) == "TimeoutError"

    # aiokafka's messages start with their own class name: not repeated.
    class KafkaConnectionError(Exception):
        pass

    error = KafkaConnectionError("KafkaConnectionError: Unable to bootstrap")
    assert brief(error) == "KafkaConnectionError: Unable to bootstrap"
    assert brief(OSError("x" * 1000)) == "OSError: " + "x" * BRIEF_CHARS


def test_a_failure_is_one_error_line_or_one_json_record() -> None:
    from service.observability.logs import failure_line

    assert failure_line("Kafka down\nforged; fix it", "text", 3) == (
        "error: Kafka down\\nforged; fix it"
    )
    assert failure_line(
        "2 wrong", "text", 2, ["configuration error: A", "configuration error: B"]
    ) == ("configuration error: A\nconfiguration error: B\nerror: 2 wrong")
    record = json.loads(failure_line("2 wrong", "json", 2, ["A", "B"]))
    assert (record["level"], record["message"], record["exit_code"], record["problems"]) == (
        "ERROR",
        "2 wrong",
        2,
        ["A", "B"],
    )
