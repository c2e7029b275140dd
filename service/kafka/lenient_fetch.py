"""Let the consumer unpack records whose header keys are not UTF-8.

A Kafka header key is bytes on the wire. aiokafka decodes each one as UTF-8 while it unpacks
a fetch, inside `getmany()`, before FastStream or the sink see the batch; a key that is not
UTF-8 raises there, again on every refetch, and its partition stops for good. Java and Python
producers always send UTF-8 keys, but clients that take keys as raw bytes (librdkafka, some
Go clients) can send anything, and the broker accepts it.

`install()` wraps the record sets aiokafka's fetcher reads. Batches are still unpacked by
aiokafka's own (C) reader; only a batch whose unpacking raises `UnicodeDecodeError` is read
again here, from the records after the last one already handed out, with each header key
decoded losslessly (`surrogateescape`: the invalid bytes become lone surrogates, and
`key.encode("utf-8", "surrogateescape")` gives the original bytes back). The record then
reaches the write path like any other: applied if it is a valid event, else dead-lettered.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from typing import Any

from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import _DefaultRecordBatchPy, _DefaultRecordPy
from aiokafka.record.util import decode_varint

log = logging.getLogger("service.lenient_fetch")

_LOG_OVERHEAD = 12  # base offset (int64) + batch length (int32): every batch starts so
_MAGIC_AT = 16  # base offset, length, partition leader epoch; then the magic byte
_LENGTH = struct.Struct(">i")
_original_memory_records = fetcher.MemoryRecords


def install() -> None:
    """Make every consumer of this process read record sets leniently (idempotent)."""
    fetcher.MemoryRecords = LenientMemoryRecords


class LenientMemoryRecords:
    """aiokafka's MemoryRecords (the fetcher's view of one partition's fetched bytes), with
    each batch's own bytes kept so that a batch aiokafka cannot unpack can be read again."""

    def __init__(self, bytes_data: bytes) -> None:
        self._data = bytes_data
        self._records = _original_memory_records(bytes_data)
        self._pos = 0

    def size_in_bytes(self) -> int:
        return int(self._records.size_in_bytes())

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        if batch is None:
            return None
        start = self._pos
        (length,) = _LENGTH.unpack_from(self._data, start + 8)
        self._pos = start + _LOG_OVERHEAD + length
        if self._data[start + _MAGIC_AT] != 2:  # legacy formats carry no headers
            return batch
        return LenientBatch(batch, self._data[start : self._pos])


class LenientBatch:
    """One v2 record batch: aiokafka's reader, and ours where it fails on a header key."""

    def __init__(self, batch: Any, raw: bytes) -> None:
        self._batch = batch
        self._raw = raw

    def __getattr__(self, name: str) -> Any:  # base_offset, producer_id, validate_crc, ...
        return getattr(self._batch, name)

    def __next__(self) -> Any:  # the fetcher reads a control batch's record so
        return next(self._batch)

    def __iter__(self) -> Iterator[Any]:
        last = -1
        try:
            for record in self._batch:
                last = record.offset
                yield record
        except UnicodeDecodeError as error:
            log.warning(
                "a record batch at offset %d has a header key that is not UTF-8 (%s); reading "
                "it with the invalid bytes kept as surrogate escapes",
                self._batch.base_offset,
                error,
                extra={"offset": self._batch.base_offset},
            )
            yield from (record for record in read_leniently(self._raw) if record.offset > last)


def read_leniently(raw: bytes) -> Iterator[_DefaultRecordPy]:
    """The records of one v2 batch, header keys decoded with `surrogateescape`.

    aiokafka's pure-Python batch reads the batch header and decompresses; the records are
    read here, field by field as the v2 format lays them out (KIP-82 headers included).
    """
    batch = _DefaultRecordBatchPy(raw)
    batch._maybe_uncompress()
    buffer, pos = batch._buffer, batch._pos
    log_append = batch.timestamp_type == batch.LOG_APPEND_TIME
    for _ in range(batch._num_records):
        length, pos = decode_varint(buffer, pos)
        start = pos
        _, pos = decode_varint(buffer, pos)  # attributes: unused in v2
        timestamp_delta, pos = decode_varint(buffer, pos)
        offset_delta, pos = decode_varint(buffer, pos)
        key, pos = _nullable_bytes(buffer, pos)
        value, pos = _nullable_bytes(buffer, pos)
        count, pos = decode_varint(buffer, pos)
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(count):
            name, pos = _nullable_bytes(buffer, pos)
            header_value, pos = _nullable_bytes(buffer, pos)
            if name is None:
                raise CorruptRecordException("a header key is null")
            headers.append((name.decode("utf-8", "surrogateescape"), header_value))
        if pos - start != length:
            raise CorruptRecordException(
                f"record size {length} does not match its fields ({pos - start} bytes)"
            )
        timestamp = batch.max_timestamp if log_append else batch.first_timestamp + timestamp_delta
        yield _DefaultRecordPy(
            batch.base_offset + offset_delta, timestamp, batch.timestamp_type, key, value, headers
        )


def _nullable_bytes(buffer: bytearray, pos: int) -> tuple[bytes | None, int]:
    size, pos = decode_varint(buffer, pos)
    if size < 0:
        return None, pos
    return bytes(buffer[pos : pos + size]), pos + size
