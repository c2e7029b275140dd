"""Logging: one line per record, to stderr, level from LOG_LEVEL, format from LOG_FORMAT.

`text` is for people: `time LEVEL logger: message`, with every control character of the line
escaped (`one_line`); `json` writes one JSON object per line (timestamp, level, logger,
message, then every field passed with `extra=`), for log pipelines. In both, the lines of
FastStream, uvicorn, Python warnings and a crash go through the same handler. Lines about a
Kafka record carry its `topic`, `partition` and `offset` (see `record_fields`).

Messages quote what producers sent (a validation message repeats the bad value, a key, a
header): a line break in one must never start a line that reads as another record.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from service.core.records import Record, TopicAndPartition

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that give their loggers handlers of their own (FastStream prints to stdout in
# colour, uvicorn configures its own when it starts): their lines go through ours.
LIBRARY_LOGGERS = ("faststream", "uvicorn", "uvicorn.error", "uvicorn.access")
# Attributes every LogRecord has: anything else on a record came from `extra=` (except
# uvicorn's `color_message`, the message again with terminal colour codes).
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",
}


def configure_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler()  # stderr
    json_lines = log_format.lower() == "json"
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    _route_everything_through_the_root_logger()


def _route_everything_through_the_root_logger() -> None:
    import faststream  # noqa: F401  (it adds its stdout handler on import: import it first)

    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught


def _log_uncaught(
    kind: type[BaseException], error: BaseException, traceback: TracebackType | None
) -> None:
    logging.getLogger("service").critical(
        "uncaught %s: %s", kind.__name__, error, exc_info=(kind, error, traceback)
    )


def failure_line(message: str, log_format: str, exit_code: int, details: Sequence[str] = ()) -> str:
    """What a command prints last when it fails: `error: <problem>; <fix>` (after `details`,
    one line each), or with LOG_FORMAT=json one JSON log record holding all of it, so that a
    log pipeline reads a failed start like any other line."""
    if log_format.lower() != "json":
        return "\n".join([*(one_line(line) for line in details), f"error: {one_line(message)}"])
    record = logging.LogRecord("service", logging.ERROR, __file__, 0, message, (), None)
    record.exit_code = exit_code
    if details:
        record.problems = list(details)
    return JsonFormatter().format(record)


def record_fields(record: Record) -> dict[str, Any]:
    """`extra=` for a line about one record."""
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def partition_fields(tp: TopicAndPartition, offset: int | None = None) -> dict[str, Any]:
    """`extra=` for a line about one partition (and an offset in it)."""
    fields: dict[str, Any] = {"topic": tp[0], "partition": tp[1]}
    if offset is not None:
        fields["offset"] = offset
    return fields


# What could end a line or rewrite it on a terminal: C0 and C1 controls (CR, LF, NEL, ESC,
# ...), DEL, Unicode's line and paragraph separators, and lone surrogates (bytes that were not
# UTF-8, kept by surrogateescape).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
BRIEF_CHARS = 300  # enough for a driver's first line; the traceback has the rest


def one_line(text: str) -> str:
    """`text` with every character that could break or rewrite a log line escaped as Python
    writes it in a literal (`\\n`, `\\x1b`, `\\u2028`); anything else is kept as it is."""
    return _UNSAFE.sub(_escaped, text)


def brief(error: BaseException) -> str:
    """The error's type and the first line of its message (at most BRIEF_CHARS of it), for a
    line that names a failure without its traceback; the type is not repeated when the
    message already names it (aiokafka's errors do)."""
    name = type(error).__name__
    lines = str(error).strip().splitlines()
    if not lines:
        return name
    first = lines[0][:BRIEF_CHARS]
    return first if name in first else f"{name}: {first}"


def _escaped(found: re.Match[str]) -> str:
    char = found.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message` (TEXT_FORMAT), always exactly one line, never raises.

    The whole line is escaped by `one_line`, a traceback or stack included (its line breaks
    become `\\n`): an exception's message quotes values from records as often as a log
    message does (a validation error, a value the database refused), so a traceback kept on
    lines of its own could forge a record as well, and one line per record keeps grep and
    log shippers whole."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        try:
            record.message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            record.message = f"{record.msg!r} % {record.args!r}"
        record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return one_line(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; never raises, and writes ASCII only (any byte is escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = f"{record.msg!r} % {record.args!r}"
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        try:
            return json.dumps(entry, default=str, ensure_ascii=True)
        except (TypeError, ValueError):  # a field with keys that are not strings, or a cycle
            return json.dumps(
                {key: _serializable(value) for key, value in entry.items()}, ensure_ascii=True
            )


def _serializable(value: Any) -> Any:
    try:
        json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)
    return json.loads(json.dumps(value, default=str))
