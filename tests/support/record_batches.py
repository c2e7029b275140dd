"""Raw Kafka record batches (format v2) as a producer that takes header keys as bytes
(librdkafka, some Go clients) can send them; aiokafka's producer cannot."""

from __future__ import annotations

import gzip

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c

BAD_KEY = b"\xff\xfe\x00"  # a header key that is not UTF-8
BAD_KEY_PLACEHOLDER = "QQQ"  # header names written as this become BAD_KEY
HEADER_SIZE = 61  # where a v2 batch's records start


def batch(
    base_offset: int,
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
) -> bytes:
    """A v2 batch of (key, value, headers); header names "QQQ" become BAD_KEY, and the CRC
    is made valid again."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 16,
    )
    for delta, (key, value, headers) in enumerate(records):
        builder.append(delta, timestamp=1000 + delta, key=key, value=value, headers=headers)
    data = bytearray(bytes(builder.build()).replace(BAD_KEY_PLACEHOLDER.encode(), BAD_KEY))
    data[0:8] = base_offset.to_bytes(8, "big")  # not covered by the CRC
    data[17:21] = calc_crc32c(bytes(data[21:])).to_bytes(4, "big")
    return bytes(data)


def gzipped(data: bytes) -> bytes:
    """The same batch with its records compressed by gzip."""
    out = bytearray(data[:HEADER_SIZE])
    out += gzip.compress(data[HEADER_SIZE:])
    out[8:12] = (len(out) - 12).to_bytes(4, "big")
    out[21:23] = (int.from_bytes(out[21:23], "big") | 1).to_bytes(2, "big")
    out[17:21] = calc_crc32c(bytes(out[21:])).to_bytes(4, "big")
    return bytes(out)
