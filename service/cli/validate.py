"""`validate FILE|-`: check JSON-lines events offline with exactly the consumer's rules.

Each line is judged by service/core/decoding.py's `decode`, the function the consumer runs on
every record, so a line's verdict is the one the service would give: `line N: ok`, or the
dead letter's `error.reason` and `error.message`. No Kafka, no database, no settings.

Lines (blank ones are skipped):
- by default, each line is one event, the record's value byte for byte (as `publish --file`
  sends it; its key, the product_id, always matches);
- with `--records`, each line is a record: {"value": ..., "key": ..., "headers": ...}. `value`
  is the value's text as a JSON string (exact), or null (a tombstone), or a JSON object
  (sent re-encoded); `key` a string or null; `headers` an object {name: text or null} or a
  list of [name, text or null] pairs, in order.
Exit status: 0 every record would be used, 1 some would be dead-lettered, 2 the file cannot
be read or a line is not a record (`--records`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.cli.exit_codes import ExitCode
from service.core.decoding import DEFAULT_MAX_RECORD_BYTES, Unusable, decode

ALL_VALID, SOME_INVALID, CANNOT_READ = ExitCode.OK, ExitCode.ATTENTION, ExitCode.USAGE


@dataclass(frozen=True, slots=True)
class LineRecord:
    """One line as the record the consumer would read (what `decode` asks of a record)."""

    offset: int  # the line's number
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]] = field(default_factory=tuple)
    topic: str = "-"
    partition: int = 0


class NotARecord(ValueError):
    """A `--records` line that does not say a record."""


def add_validate(sub: Any) -> None:
    """Register the command (on `python -m service`'s subcommands)."""
    parser = sub.add_parser(
        "validate",
        help="check JSON-lines events offline with the service's rules (no Kafka, no database)",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", help="JSON lines to check, or - for stdin")
    parser.add_argument(
        "--records",
        action="store_true",
        help='each line is a record: {"value": ..., "key": ..., "headers": ...}',
    )
    parser.add_argument(
        "--max-record-bytes",
        type=int,
        default=DEFAULT_MAX_RECORD_BYTES,
        metavar="N",
        help=f"the consumer's MAX_RECORD_BYTES (default {DEFAULT_MAX_RECORD_BYTES})",
    )
    parser.set_defaults(func=validate_command, settings=None)


def validate_command(args: argparse.Namespace, settings: object = None) -> int:
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as error:
        print(f"error: cannot read {args.file}: {error.strerror}; check the path", file=sys.stderr)
        return CANNOT_READ
    status, checked, invalid = ALL_VALID, 0, 0
    for number, line in lines(data):
        try:
            record = read_record(number, line) if args.records else LineRecord(number, None, line)
        except NotARecord as error:
            print(f"line {number}: not a record: {error}")
            status = CANNOT_READ
            continue
        checked += 1
        verdict = decode(record, args.max_record_bytes)
        if isinstance(verdict, Unusable):
            invalid += 1
            status = max(status, SOME_INVALID)
            print(f"line {number}: {verdict.reason.value}: {verdict.message}")
        else:
            print(f"line {number}: ok")
    print(f"{checked} records checked, {invalid} would be dead-lettered", file=sys.stderr)
    return status


def lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(number, bytes) of each line that is not blank, without its line break."""
    for number, line in enumerate(data.split(b"\n"), start=1):
        line = line.removesuffix(b"\r")
        if line.strip():
            yield number, line


def read_record(number: int, line: bytes) -> LineRecord:
    try:
        document = json.loads(line)
    except (UnicodeDecodeError, ValueError) as error:
        raise NotARecord(f"not JSON ({error})") from None
    if not isinstance(document, dict) or "value" not in document:
        raise NotARecord('expected an object with "value" (and "key", "headers" if any)')
    unknown = set(document) - {"value", "key", "headers"}
    if unknown:
        raise NotARecord(f"unknown members {sorted(unknown)}; a record has value, key, headers")
    value = document["value"]
    if isinstance(value, str):
        raw: bytes | None = value.encode("utf-8", "surrogatepass")
    elif value is None:
        raw = None
    else:
        raw = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return LineRecord(number, _text(document.get("key"), "key"), raw, _headers(document))


def _text(value: Any, where: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise NotARecord(f"{where} must be a string or null")
    return value.encode("utf-8", "surrogatepass")


def _headers(document: dict[str, Any]) -> list[tuple[str, bytes | None]]:
    headers = document.get("headers") or []
    pairs = list(headers.items()) if isinstance(headers, dict) else headers
    if not isinstance(pairs, list):
        raise NotARecord("headers must be an object or a list of [name, value] pairs")
    out = []
    for pair in pairs:
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and isinstance(pair[0], str)):
            raise NotARecord("each header must be [name, value] with a string name")
        out.append((pair[0], _text(pair[1], f"header {pair[0]!r}")))
    return out
