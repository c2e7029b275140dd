"""`python -m service validate`, run as an upstream's CI would: a subprocess with no settings,
no Kafka and no database, judged by its output lines and exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from service.core.decoding import Unusable, decode
from testbed.events import LabelledSpec, adjust, generate_records, upsert
from tests.support.write_path import SimpleRecord

ROOT = Path(__file__).resolve().parents[3]
GOOD = json.dumps(upsert(1, 1, price="24.90"))
PRICE = (
    'must be a decimal string of up to 10 digits and at most 2 decimals, e.g. "24.90" (no sign, '
    "exponent, spaces or _)"
)
NUMBER = 'must have at most 2 decimal places; send it as a decimal string, e.g. "24.90"'


def validate(
    tmp_path: Path, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """Run it from an empty directory (no .env) with no KAFKA_*/POSTGRES_* variables."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("KAFKA_", "POSTGRES_", "DATABASE_"))
    }
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "service", "validate", *args],
        cwd=tmp_path,
        env=env,
        input=stdin.decode("utf-8", "surrogateescape") if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result


def test_every_line_gets_the_services_verdict_and_any_invalid_line_exits_1(
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.jsonl"
    lines = [
        GOOD,
        "",
        json.dumps(upsert(2, 1, price="1_0")),
        json.dumps(adjust(3, 0)),
        "{not json",
        json.dumps(upsert(6, 1, price=24.9)),
        json.dumps(upsert(7, 1, price=24.999)),
    ]
    events.write_text("\n".join(lines) + "\n")

    result = validate(tmp_path, str(events))

    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "line 1: ok",
        f"line 3: invalid_event: product.upserted.data.price: {PRICE}",
        "line 4: invalid_event: stock.adjusted.data: Value error, delta must not be zero",
        "line 5: invalid_json: value: Invalid JSON: key must be a string at line 1 column 2",
        "line 6: ok",
        f"line 7: invalid_event: product.upserted.data.price: {NUMBER}",
    ]
    assert result.stderr == "6 records checked, 4 would be dead-lettered\n"


def test_a_file_of_valid_events_exits_0_and_stdin_works(tmp_path: Path) -> None:
    result = validate(tmp_path, "-", stdin=f"{GOOD}\r\n{json.dumps(adjust(1, -2))}".encode())
    assert (result.returncode, result.stdout) == (0, "line 1: ok\nline 2: ok\n"), result.stderr


def test_records_carry_a_key_and_headers(tmp_path: Path) -> None:
    records = [
        {"key": "1", "headers": {"contract-version": "1"}, "value": GOOD},
        {"key": "7", "value": json.loads(GOOD)},
        {"key": None, "headers": [["contract-version", "2"]], "value": "{}"},
        {"value": None},
    ]
    stdin = "\n".join(json.dumps(r) for r in records).encode()

    result = validate(tmp_path, "--records", "-", stdin=stdin)

    assert result.returncode == 1
    out = result.stdout.splitlines()
    assert out[0] == "line 1: ok"
    assert out[1].startswith("line 2: invalid_event: record key b'7' does not match product_id 1")
    assert out[2].startswith("line 3: unknown_contract_version: header contract-version='2' ")
    assert out[3].startswith("line 4: invalid_json: record has no value (tombstone)")


def test_a_line_that_is_not_a_record_or_a_file_that_cannot_be_read_exits_2(
    tmp_path: Path,
) -> None:
    stdin = f'{json.dumps({"value": GOOD})}\n[1]\n{{"value": "x", "partition": 3}}'.encode()
    result = validate(tmp_path, "--records", "-", stdin=stdin)
    assert result.returncode == 2
    assert result.stdout.splitlines() == [
        "line 1: ok",
        'line 2: not a record: expected an object with "value" (and "key", "headers" if any)',
        "line 3: not a record: unknown members ['partition']; a record has value, key, headers",
    ]

    missing = validate(tmp_path, "nowhere.jsonl")
    assert missing.returncode == 2
    assert missing.stderr == (
        "error: cannot read nowhere.jsonl: No such file or directory; check the path\n"
    )
    assert validate(tmp_path).returncode == 2  # no FILE: argparse's usage error


def test_the_record_size_limit_is_the_consumers_or_the_one_given(tmp_path: Path) -> None:
    result = validate(tmp_path, "--max-record-bytes", "100", "-", stdin=GOOD.encode())
    assert result.returncode == 1
    assert result.stdout.startswith(f"line 1: record_too_large: record is {len(GOOD)} bytes")


def test_its_verdicts_are_decodes_on_a_generated_stream(tmp_path: Path) -> None:
    """Every kind of bad record the fault suite makes, as --records lines (text headers only,
    UTF-8 values): each line's reason is what the consumer's decode gives that record."""
    spec = LabelledSpec(events=400, products=20, seed=5, bad_share=0.3, max_record_bytes=2048)
    lines, expected = [], []
    for index, rec in enumerate(generate_records(spec)):
        try:
            value = None if rec.value is None else rec.value.decode("utf-8")
            headers = [[n, None if v is None else v.decode("utf-8")] for n, v in rec.headers]
            key = None if rec.key is None else rec.key.decode("utf-8")
        except UnicodeDecodeError:
            continue
        lines.append(json.dumps({"key": key, "headers": headers, "value": value}))
        verdict = decode(SimpleRecord("t", 0, index, rec.key, rec.value, rec.headers), 2048)
        reason = verdict.reason.value if isinstance(verdict, Unusable) else "ok"
        expected.append(f"line {len(lines)}: {reason}")
    assert {e.rsplit(" ", 1)[1] for e in expected} >= {
        "ok",
        "invalid_json",
        "invalid_event",
        "record_too_large",
        "unknown_contract_version",
    }

    result = validate(
        tmp_path, "--records", "--max-record-bytes", "2048", "-", stdin="\n".join(lines).encode()
    )

    got = [line.split(":", 2) for line in result.stdout.splitlines()]
    assert [f"{n}:{r}".rstrip() for n, r, *_ in got] == expected
